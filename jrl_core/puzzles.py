"""Grid jigsaw puzzles, their questions and prompts (protocol §1-3; Jigsaw-R1 §3, App. A, App. I).

A puzzle is an RGB image cut into an m×n grid whose patches are shuffled (:func:`make_grid_puzzle`).
A question about it (protocol §2) is

* ``"full"``: the whole permutation as an m×n grid of indices (forward or backward);
* ``"pair"``: multiple choice, the relative position of two patches in the original image;
* ``"single"``: the position index of one patch (forward) or of the patch for one position (backward);
* ``"multiple"``: multiple choice among ``n_c`` candidate grids, one of them right;
* ``"box"``: the patch-swap variant (Jigsaw-R1 App. A.2, :func:`make_box_puzzle`): one equal-size
  patch per region, the patches deranged; answer the pixel box ``x1,y1,x2,y2`` where the patch now in
  region k came from (scored by IoU).

A dataset row (:func:`make_row`) bundles the shuffled image, the prompt in TRL's conversational form
(or a plain string for base models), the solution string that ``jrl_core.rewards`` scores and the
thinking mode (``jrl_core.modes``) the prompt was written for.

Conventions (protocol §1):

* positions are 1-based and row-major: ``p = row·n + col + 1`` (1 = top-left, m·n = bottom-right);
* ``forward[x-1] = y``: the patch now at position x belongs at original position y;
  ``backward[y-1] = x`` is the inverse permutation;
* the image is cropped from the bottom/right so that ``height % m == 0`` and ``width % n == 0``;
* the shuffle is uniform over all (m·n)! permutations, identity included (as in the reference's
  ``random.shuffle``; this is what makes the random-guess rows 1/(m·n)!).

Determinism: everything random about one item (the m/n swap, the shuffle, the pair positions, the
choice order) is drawn from one ``random.Random(seed)`` in a fixed order, so a seed gives the same
puzzle, question and prompt byte for byte on every process and machine. Python's ``hash()`` is
never used.

Input images: anything PIL opens. Non-RGB modes (grayscale, RGBA, palette, 16-bit, float) and
EXIF-rotated photos go through ``jrl_core.images.to_rgb`` (white background for transparency, /257 for
16-bit, EXIF orientation applied); an image giving patches under :data:`MIN_PATCH_PX` px per side
raises a ``ValueError`` naming its size and the fix.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from jrl_core import answers
from jrl_core.images import Photo, to_rgb
from jrl_core.modes import MODES, ThinkingMode, get_mode
from jrl_core.rows import make_row as new_row

__all__ = [
    "ANSWER_TYPE",
    "BASE_PREAMBLE",
    "BOX_PATCH_RATIO",
    "IMPLEMENTED_QUESTION_TYPES",
    "MASK_INFO",
    "MAX_CHOICES",
    "MIN_PATCH_PX",
    "PAIR_RELATIONS",
    "QUESTION_TYPES",
    "BoxPuzzle",
    "GridPuzzle",
    "PuzzleSpec",
    "build_prompt_text",
    "build_rows",
    "grid_text",
    "item_seed",
    "make_box_puzzle",
    "make_grid_puzzle",
    "make_row",
    "pair_choices",
    "pair_relation",
    "question_text",
    "random_baseline",
    "reassemble",
    "reassemble_box",
]

#: Every question type of protocol §2 and the answer type it is scored as.
ANSWER_TYPE: dict[str, str] = {
    "full": "grid",
    "pair": "letter",
    "single": "digit",
    "multiple": "letter",
    "box": "box",
}
QUESTION_TYPES = tuple(ANSWER_TYPE)
#: The question types this module builds (all of protocol §2).
IMPLEMENTED_QUESTION_TYPES = QUESTION_TYPES
#: Smallest patch (grid) or region (box) side in pixels accepted by :func:`make_grid_puzzle`.
MIN_PATCH_PX = 2
#: Most choices a lettered question can have: one per capital letter A-Z.
MAX_CHOICES = 26
#: Default number of candidate grids of a ``"multiple"`` question (reference default).
DEFAULT_N_C = 4
#: Side of a box-question patch as a share of its region's side (App. A.2 uses equal-size patches
#: smaller than the regions; the reference's exact share is not published, 0.5 is the workbook's).
BOX_PATCH_RATIO = 0.5

#: The eight pair relations of protocol §2, in the published order; ``{k}``/``{l}`` are current positions.
PAIR_RELATIONS: tuple[str, ...] = (
    "{k} is directly to the left of {l}",
    "{k} is directly to the right of {l}",
    "{k} is directly above {l}",
    "{k} is directly below {l}",
    "{k} is on the upper left of {l}",
    "{k} is on the upper right of {l}",
    "{k} is on the lower left of {l}",
    "{k} is on the lower right of {l}",
)
MASK_INFO = " To increase the task difficulty, the borders of each patch have been masked out."
#: Box questions open with one of these two sentences (reference ``generate_box_jigsaw_prompt``).
BOX_INFO = "The input image is divided into {m}x{n} regions."
BOX_MASK_INFO = "The input image is divided into {m}x{n} regions and the borders of each region have been masked out."
#: Prefix of the plain-string prompt for base (non-instruct) models (protocol §3).
BASE_PREAMBLE = (
    "A conversation between User and Assistant. The user asks a question about the image, "
    "and the Assistant solves it.\n\nUser: "
)


@dataclass(frozen=True)
class PuzzleSpec:
    """What kind of puzzle and question to make (protocol §1-2).

    Attributes:
        m: grid rows (≥ 1). Default 2 (the paper's 2x1 training size).
        n: grid columns (≥ 1); m·n ≥ 2.
        question_type: ``"full"``, ``"pair"``, ``"single"``, ``"multiple"`` or ``"box"`` (protocol §2).
            Default ``"pair"`` (Jigsaw-R1's main setting).
        think: thinking prompt and ``<think>/<answer>`` format (True) or direct answer (False). With
            ``mode`` given it is set from the mode (``mode.think``).
        forward: ground truth as the forward permutation (the paper's only mode) or the backward one
            (code-only option; full, single and multiple questions; pair and box are forward-only).
        shuffle_mn: swap m and n with probability 0.5 per item (paper §5 RQ1: 2x1 becomes 1x2).
        n_c: number of choices. Pair questions fix it (2 when m == 1 or n == 1, else 8); give None or
            that number. Multiple: the number of candidate grids, default 4, at most 26 (letters A-Z)
            and at most (m·n)! (distinct grids). Must be None for full, single and box.
        mask_ratio: share of each patch side blacked out at its borders, in [0, 0.5); 0 = off
            (the paper's setting).
        mode: a thinking-mode name (``jrl_core.modes.MODES``: ``"thinking"``, ``"non_thinking"``,
            ``"cls_rl_thinking"``, ``"no_thinking_rl"``, ``"think_after_answer"``,
            ``"adaptive_thinking"``); None (default) = ``"thinking"`` if ``think`` else ``"non_thinking"``.

    Raises:
        ValueError: a field out of range; the message names the field and the fix.
    """

    m: int = 2
    n: int = 1
    question_type: str = "pair"
    think: bool = False
    forward: bool = True
    shuffle_mn: bool = False
    n_c: int | None = None
    mask_ratio: float = 0.0
    mode: str | None = None

    def __post_init__(self) -> None:
        for name in ("m", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PuzzleSpec.{name} must be an int >= 1, got {value!r}.")
        if self.m * self.n < 2:
            raise ValueError(f"PuzzleSpec: m*n must be >= 2 (got {self.m}x{self.n}); use e.g. m=2, n=1.")
        if self.question_type not in QUESTION_TYPES:
            raise ValueError(
                f"PuzzleSpec.question_type {self.question_type!r} is unknown; use one of "
                f"{', '.join(IMPLEMENTED_QUESTION_TYPES)}."
            )
        for name in ("think", "forward", "shuffle_mn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PuzzleSpec.{name} must be True or False, got {getattr(self, name)!r}.")
        if self.mode is not None:
            thinking_mode = get_mode(self.mode) if isinstance(self.mode, str) else None
            if thinking_mode is None:
                raise ValueError(
                    f"PuzzleSpec.mode must be None or a mode name ({', '.join(MODES)}), got {self.mode!r}."
                )
            if self.think and not thinking_mode.think:
                raise ValueError(
                    f"PuzzleSpec: think=True contradicts mode={self.mode!r} (an untagged mode); "
                    "drop think=True, the mode decides."
                )
            object.__setattr__(self, "think", thinking_mode.think)
        if self.question_type in ("pair", "box") and not self.forward:
            raise ValueError(
                f"PuzzleSpec: {self.question_type} questions are forward-only (as in the reference); set forward=True."
            )
        if self.n_c is not None:
            if isinstance(self.n_c, bool) or not isinstance(self.n_c, int) or self.n_c < 2:
                raise ValueError(f"PuzzleSpec.n_c must be None or an int >= 2, got {self.n_c!r}.")
            if self.question_type == "pair" and self.n_c != _pair_n_c(self.m, self.n):
                raise ValueError(
                    f"PuzzleSpec.n_c={self.n_c} does not fit a {self.m}x{self.n} pair question, which has "
                    f"{_pair_n_c(self.m, self.n)} choices; leave n_c=None."
                )
            if self.question_type in ("full", "single", "box"):
                raise ValueError(
                    f"PuzzleSpec.n_c={self.n_c} has no meaning for {self.question_type} questions; leave n_c=None."
                )
        if self.question_type == "multiple":
            n_c = self.choices
            if n_c > MAX_CHOICES:
                raise ValueError(
                    f"PuzzleSpec.n_c={n_c}: a multiple question is answered with one letter A-Z, so at most "
                    f"{MAX_CHOICES} candidates; lower n_c."
                )
            if n_c > math.factorial(self.m * self.n):
                raise ValueError(
                    f"PuzzleSpec.n_c={n_c}: a {self.m}x{self.n} grid has only {math.factorial(self.m * self.n)} "
                    "distinct arrangements, fewer than the candidates asked for; lower n_c or use a larger grid."
                )
        if not isinstance(self.mask_ratio, (int, float)) or not 0.0 <= self.mask_ratio < 0.5:
            raise ValueError(f"PuzzleSpec.mask_ratio must be in [0, 0.5), got {self.mask_ratio!r}; 0 turns masking off.")

    @property
    def answer_type(self) -> str:
        """``"grid"`` full, ``"letter"`` pair/multiple, ``"digit"`` single, ``"box"`` box (:data:`ANSWER_TYPE`)."""
        return ANSWER_TYPE[self.question_type]

    @property
    def thinking_mode(self) -> ThinkingMode:
        """The :class:`~jrl_core.modes.ThinkingMode` of the prompt: ``mode``, else from ``think``."""
        return get_mode(self.mode if self.mode is not None else self.think)

    @property
    def choices(self) -> int:
        """Number of choices for lettered questions (pair: 2 or 8; multiple: ``n_c`` or 4); 0 otherwise."""
        if self.question_type == "pair":
            return _pair_n_c(self.m, self.n)
        if self.question_type == "multiple":
            return DEFAULT_N_C if self.n_c is None else self.n_c
        return 0


@dataclass
class GridPuzzle:
    """A shuffled grid puzzle and its ground truth (protocol §1).

    Attributes:
        image: the shuffled RGB image, the size of ``original`` (W×H px).
        m, n: grid rows and columns.
        forward: length m·n, 1-based; ``forward[x-1] = y``: the patch now at x belongs at y.
        backward: the inverse; ``backward[y-1] = x``.
        original: the cropped (unshuffled, unmasked) RGB image; W % n == 0 and H % m == 0.
    """

    image: Image.Image
    m: int
    n: int
    forward: list[int]
    backward: list[int]
    original: Image.Image = field(repr=False)

    @property
    def patch_size(self) -> tuple[int, int]:
        """(width, height) of one patch in pixels."""
        return self.original.width // self.n, self.original.height // self.m


def _pair_n_c(m: int, n: int) -> int:
    return 2 if m == 1 or n == 1 else 8


def _patch_box(p: int, n: int, pw: int, ph: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of 1-based row-major position p."""
    row, col = divmod(p - 1, n)
    return col * pw, row * ph, (col + 1) * pw, (row + 1) * ph


def _mask_borders(image: Image.Image, m: int, n: int, ratio: float) -> Image.Image:
    """Black out patch borders: outer borders ``int(side·ratio)`` px, inner ones half that each side."""
    arr = np.array(image)
    ph, pw = image.height // m, image.width // n
    dy, dx = int(ph * ratio), int(pw * ratio)
    for i in range(m):
        for j in range(n):
            top, left = i * ph, j * pw
            t = dy if i == 0 else dy // 2
            b = dy if i == m - 1 else dy // 2
            lft = dx if j == 0 else dx // 2
            r = dx if j == n - 1 else dx // 2
            arr[top : top + t, left : left + pw] = 0
            arr[top + ph - b : top + ph, left : left + pw] = 0
            arr[top : top + ph, left : left + lft] = 0
            arr[top : top + ph, left + pw - r : left + pw] = 0
    return Image.fromarray(arr)


def _exif_rotated(image: Image.Image) -> bool:
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # a broken EXIF block: leave the pixels as stored
        return False


def _as_rgb(image: Image.Image, m: int, n: int) -> Image.Image:
    """Validate and convert the input image (documented in the module docstring)."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, got {type(image).__name__}; open it with PIL.Image.open.")
    if image.mode != "RGB" or _exif_rotated(image):
        image = to_rgb(image)
    pw, ph = image.width // n, image.height // m
    if pw < MIN_PATCH_PX or ph < MIN_PATCH_PX:
        raise ValueError(
            f"image of {image.width}x{image.height} px is too small for a {m}x{n} grid: patches need at least "
            f"{MIN_PATCH_PX} px per side (width >= {MIN_PATCH_PX * n}, height >= {MIN_PATCH_PX * m}); "
            "use a larger image (e.g. sample_views(size=...)) or a smaller grid."
        )
    return image


def _shuffle_image(
    image: Image.Image, m: int, n: int, rng: random.Random, mask_ratio: float, *, keep_original: bool = True
) -> GridPuzzle:
    """Shuffle with one PIL crop + paste per patch, reading patches straight from the source (the
    bottom/right remainder is never touched), so no cropped copy is made unless ``keep_original``."""
    image = _as_rgb(image, m, n)
    pw, ph = image.width // n, image.height // m
    forward = list(range(1, m * n + 1))
    rng.shuffle(forward)
    backward = [0] * (m * n)
    shuffled = Image.new("RGB", (pw * n, ph * m))
    for x, y in enumerate(forward, start=1):
        backward[y - 1] = x
        shuffled.paste(image.crop(_patch_box(y, n, pw, ph)), _patch_box(x, n, pw, ph)[:2])
    if mask_ratio > 0:
        shuffled = _mask_borders(shuffled, m, n, mask_ratio)
    original = image.crop((0, 0, pw * n, ph * m)) if keep_original else image
    return GridPuzzle(image=shuffled, m=m, n=n, forward=forward, backward=backward, original=original)


def make_grid_puzzle(image: Image.Image, m: int, n: int, *, seed: int | str, mask_ratio: float = 0.0) -> GridPuzzle:
    """Crop, cut and shuffle an image into an m×n grid puzzle (protocol §1; reference ``crop_image``,
    ``create_grid_jigsaw_image``).

    Args:
        image: a PIL image (W×H px); non-RGB images are converted with ``images.to_rgb``.
        m, n: grid rows and columns, m·n ≥ 2.
        seed: int or str; the permutation is ``random.Random(seed).shuffle`` of 1..m·n.
        mask_ratio: border masking of the shuffled image, in [0, 0.5) (protocol §1); 0 = off.

    Returns:
        A :class:`GridPuzzle`; ``original`` is ``image`` cropped to ``(W - W % n) × (H - H % m)`` px.

    Raises:
        ValueError: m·n < 2, or the image gives patches smaller than 2 px per side (names the fix).
    """
    PuzzleSpec(m=m, n=n, question_type="full", mask_ratio=mask_ratio)  # validates m, n and mask_ratio
    return _shuffle_image(image, m, n, random.Random(seed), mask_ratio)


def reassemble(puzzle: GridPuzzle) -> Image.Image:
    """Put the patches of ``puzzle.image`` back using ``forward``.

    Returns:
        An RGB image the size of ``puzzle.original``, equal to it pixel for pixel when the puzzle is
        unmasked (masking blacks out borders by position, so it does not invert).
    """
    pw, ph = puzzle.patch_size
    out = Image.new("RGB", puzzle.image.size)
    for x, y in enumerate(puzzle.forward, start=1):
        out.paste(puzzle.image.crop(_patch_box(x, puzzle.n, pw, ph)), _patch_box(y, puzzle.n, pw, ph)[:2])
    return out


@dataclass
class BoxPuzzle:
    """A patch-swap puzzle (Jigsaw-R1 App. A.2; protocol §2 "box").

    The image is divided into m×n regions (cropped like a grid puzzle); one patch of the same size is
    placed at a random spot in each region; the patches are deranged (every patch moves).

    Attributes:
        image: the RGB image with the patches swapped (and region borders masked if asked).
        m, n: region rows and columns.
        forward: length m·n, 1-based, no fixed point: the patch now in region i came from region
            ``forward[i-1]``.
        boxes: per region (1-based order), the patch's pixel box ``(x1, y1, x2, y2)``, continuous
            coordinates (x2 = x1 + patch width).
        original: the cropped unshuffled RGB image.
    """

    image: Image.Image
    m: int
    n: int
    forward: list[int]
    boxes: list[tuple[int, int, int, int]]
    original: Image.Image = field(repr=False)

    def answer_box(self, k: int) -> tuple[int, int, int, int]:
        """The original box of the patch now in region k: ``boxes[forward[k-1] - 1]``."""
        return self.boxes[self.forward[k - 1] - 1]


def _derangement(size: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of 1..size without fixed points (rejection sampling; size ≥ 2)."""
    while True:
        perm = list(range(1, size + 1))
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm, start=1)):
            return perm


def _box_puzzle(image: Image.Image, m: int, n: int, rng: random.Random, mask_ratio: float) -> BoxPuzzle:
    image = _as_rgb(image, m, n)
    rw, rh = image.width // n, image.height // m
    original = image.crop((0, 0, rw * n, rh * m))
    pw, ph = max(1, int(rw * BOX_PATCH_RATIO)), max(1, int(rh * BOX_PATCH_RATIO))
    boxes = []
    for p in range(1, m * n + 1):
        left, top = _patch_box(p, n, rw, rh)[:2]
        x, y = left + rng.randint(0, rw - pw), top + rng.randint(0, rh - ph)
        boxes.append((x, y, x + pw, y + ph))
    forward = _derangement(m * n, rng)
    swapped = original.copy()
    for i, j in enumerate(forward, start=1):
        swapped.paste(original.crop(boxes[j - 1]), boxes[i - 1][:2])
    if mask_ratio > 0:
        swapped = _mask_borders(swapped, m, n, mask_ratio)
    return BoxPuzzle(image=swapped, m=m, n=n, forward=forward, boxes=boxes, original=original)


def make_box_puzzle(image: Image.Image, m: int, n: int, *, seed: int | str, mask_ratio: float = 0.0) -> BoxPuzzle:
    """Cut an image into m×n regions and swap one equal-size patch per region (Jigsaw-R1 App. A.2).

    Draws from ``random.Random(seed)``: each region's patch offset (``randint`` for x then y, regions
    in row-major order), then the derangement (``shuffle`` repeated until no patch stays).

    Args:
        image: a PIL image; converted like :func:`make_grid_puzzle`.
        m, n: region rows and columns, m·n ≥ 2.
        seed: int or str.
        mask_ratio: region-border masking in [0, 0.5); 0 = off.

    Returns:
        A :class:`BoxPuzzle`; patches are ``BOX_PATCH_RATIO`` of the region side (at least 1 px).

    Raises:
        ValueError: m·n < 2, or regions smaller than 2 px per side.
    """
    PuzzleSpec(m=m, n=n, question_type="box", mask_ratio=mask_ratio)
    return _box_puzzle(image, m, n, random.Random(seed), mask_ratio)


def reassemble_box(puzzle: BoxPuzzle) -> Image.Image:
    """Put every swapped patch back in its original box; equals ``puzzle.original`` pixel for pixel
    when unmasked."""
    out = puzzle.image.copy()
    for i, j in enumerate(puzzle.forward, start=1):
        out.paste(puzzle.image.crop(puzzle.boxes[i - 1]), puzzle.boxes[j - 1][:2])
    return out


def grid_text(values: list[int] | range, m: int, n: int) -> str:
    """m lines of n space-separated ints, row-major (reference ``generate_jigsaw_string``).

    Example: ``grid_text([2, 1, 4, 3], 2, 2) == "2 1\\n4 3"``.

    Raises:
        ValueError: ``len(values) != m*n``.
    """
    values = list(values)
    if len(values) != m * n:
        raise ValueError(f"grid_text needs m*n = {m * n} values, got {len(values)}.")
    return "\n".join(" ".join(str(v) for v in values[r * n : (r + 1) * n]) for r in range(m))


def pair_relation(forward: list[int], n: int, k: int, l: int) -> str:  # noqa: E741 - the protocol's name
    """The true relation of the patches now at k and l, in the ORIGINAL image (protocol §2).

    Args:
        forward: the forward permutation (1-based).
        n: grid columns.
        k, l: two distinct current positions (1-based).

    Returns:
        One of :data:`PAIR_RELATIONS` filled with k and l, e.g. ``"2 is directly above 1"``.

    Raises:
        ValueError: k == l or out of range.
    """
    if k == l or not (1 <= k <= len(forward) and 1 <= l <= len(forward)):
        raise ValueError(f"pair positions must be distinct and in 1..{len(forward)}, got k={k}, l={l}.")
    k_row, k_col = divmod(forward[k - 1] - 1, n)
    l_row, l_col = divmod(forward[l - 1] - 1, n)
    vertical = (k_row > l_row) - (k_row < l_row)  # -1: k above l
    horizontal = (k_col > l_col) - (k_col < l_col)  # -1: k left of l
    index = {
        (0, -1): 0, (0, 1): 1, (-1, 0): 2, (1, 0): 3,
        (-1, -1): 4, (-1, 1): 5, (1, -1): 6, (1, 1): 7,
    }[(vertical, horizontal)]
    return PAIR_RELATIONS[index].format(k=k, l=l)


def pair_choices(m: int, n: int, k: int, l: int) -> list[str]:  # noqa: E741
    """The unshuffled choices for a pair question: 2 when m == 1 (left/right), 2 when n == 1
    (above/below), else all 8 (protocol §2)."""
    if m == 1:
        templates = PAIR_RELATIONS[:2]
    elif n == 1:
        templates = PAIR_RELATIONS[2:4]
    else:
        templates = PAIR_RELATIONS
    return [t.format(k=k, l=l) for t in templates]


def _ends(m: int, n: int) -> tuple[str, str]:
    if m == 1:
        return "left", "right"
    if n == 1:
        return "top", "bottom"
    return "top-left", "bottom-right"


def _lettered(choices: list[str], *, block: bool) -> str:
    """``"(A) c"`` one per line, or (``block``) ``"(A)\\n<grid>"`` blocks separated by blank lines."""
    if block:
        return "\n\n".join(f"({string.ascii_uppercase[i]})\n{c}" for i, c in enumerate(choices))
    return "\n".join(f"({string.ascii_uppercase[i]}) {c}" for i, c in enumerate(choices))


_FULL_FORWARD = (
    "For each patch, determine its correct position index in the original image. "
    'If a patch currently at position X should belong at position Y, place "Y" at position X.'
)
_FULL_BACKWARD = (
    "For each position, determine which patch should belong there. "
    'If a patch currently at position X should belong at position Y, place "X" at position Y.'
)


def question_text(
    m: int,
    n: int,
    question_type: str = "full",
    *,
    forward: bool = True,
    masked: bool = False,
    k: int | None = None,
    l: int | None = None,  # noqa: E741
    choices: list[str] | None = None,
) -> str:
    """The question part of the prompt, byte for byte as published (protocol §3; reference
    ``generate_grid_jigsaw_prompt`` and ``generate_box_jigsaw_prompt``).

    Args:
        m, n: grid rows and columns.
        question_type: one of :data:`QUESTION_TYPES`.
        forward: full/single/multiple: forward ("place Y at position X") or backward wording.
        masked: add the masking sentence.
        k, l: pair: the two current positions asked about; single: k, the position asked about;
            box: k, the region asked about.
        choices: pair: the relation strings in display order, listed as ``"(A) …"`` one per line;
            multiple: the candidate grid texts in display order, listed as ``"(A)\n<grid>"`` separated
            by blank lines.

    Returns:
        The question text (no trailing newline).

    Raises:
        ValueError: unknown question type, or a missing k/l/choices.
    """
    first, last = _ends(m, n)
    ascending = grid_text(range(1, m * n + 1), m, n)
    if question_type == "box":
        if k is None:
            raise ValueError("a box question needs k, the region asked about.")
        info = (BOX_MASK_INFO if masked else BOX_INFO).format(m=m, n=n)
        return (
            f"{info} Consider a {m}x{n} grid, where each number represents a region index ranging from 1 ({first}) "
            f"to {m * n} ({last}):\n\n```\n{ascending}\n```\n\n"
            "Some patches of equal size have been randomly swapped from their original positions, resulting in an "
            f"unnatural appearance. Your task is to find the original location of the patch that currently belongs "
            f"in region {k}."
        )
    text = (
        f"The input image is divided into {m}x{n} patches that have been randomly permuted from their original "
        f"positions. Your task is to solve this {m}x{n} jigsaw puzzle and reconstruct the original image."
        f"{MASK_INFO if masked else ''}\n\n"
        f"Consider a {m}x{n} grid, where each number represents a position index ranging from 1 ({first}) to "
        f"{m * n} ({last}):\n\n```\n{ascending}\n```\n\n"
    )
    if question_type == "full":
        return text + (_FULL_FORWARD if forward else _FULL_BACKWARD)
    if question_type == "pair":
        if k is None or l is None or not choices:
            raise ValueError("a pair question needs k, l and the choices list.")
        return text + (
            f"For patches currently at positions {k} and {l}, determine their relative position in the original "
            f"image.\n\nSelect the correct answer from the following {len(choices)} choices:\n\n"
            f"{_lettered(choices, block=False)}"
        )
    if question_type == "single":
        if k is None:
            raise ValueError("a single question needs k, the position asked about.")
        if forward:
            return text + f"For the patch currently at position {k}, determine its correct position index in the original image."
        return text + f"Determine which patch belongs at position {k} in the original image."
    if question_type == "multiple":
        if not choices:
            raise ValueError("a multiple question needs the choices list (candidate grid texts).")
        return text + (
            f"{_FULL_FORWARD if forward else _FULL_BACKWARD}\n\nSelect the correct answer from the following "
            f"{len(choices)} choices:\n\n{_lettered(choices, block=True)}"
        )
    raise ValueError(
        f"question_text: question_type {question_type!r} is unknown; use one of {', '.join(QUESTION_TYPES)}."
    )


def build_prompt_text(
    question: str,
    spec: PuzzleSpec,
    *,
    m: int | None = None,
    n: int | None = None,
    instruct: bool = True,
    mode: str | None = None,
) -> str:
    """Question + the thinking mode's suffix (for Jigsaw-R1's modes ``"\n\n"`` + instruction + format
    line), protocol §3; reference ``generate_instruction``.

    Args:
        question: from :func:`question_text`.
        spec: gives the answer type and the mode (``spec.thinking_mode``).
        m, n: the grid size actually shown (after ``shuffle_mn``); default ``spec.m``, ``spec.n``.
        instruct: True → the text for a chat template; False → the base-model plain string
            ``BASE_PREAMBLE + question + suffix + "\n\nAssistant: "`` + the mode's
            ``assistant_prefix`` (``"<think>"`` for Jigsaw-R1 and CLS-RL thinking).
        mode: a ``jrl_core.modes.MODES`` key overriding the spec's mode.

    Returns:
        The prompt text.

    Raises:
        ValueError: unknown mode.
    """
    m = spec.m if m is None else m
    n = spec.n if n is None else n
    thinking_mode = spec.thinking_mode if mode is None else get_mode(mode)
    text = question + thinking_mode.suffix(spec.answer_type, m, n)
    if instruct:
        return text
    return BASE_PREAMBLE + text + "\n\nAssistant: " + thinking_mode.assistant_prefix


def _place_correct(choices: list[str], truth: str, rng: random.Random) -> tuple[list[str], str]:
    """Shuffle the choices, move the true one to a uniformly drawn letter; returns (choices, letter)."""
    rng.shuffle(choices)
    pos = rng.randrange(len(choices))
    idx = choices.index(truth)
    choices[idx], choices[pos] = choices[pos], choices[idx]
    return choices, string.ascii_uppercase[pos]


def _candidate_grids(truth: str, m: int, n: int, n_c: int, rng: random.Random) -> tuple[list[str], str]:
    """``n_c`` distinct candidate grids, the true one at a uniformly drawn letter; distractors are
    uniformly random permutations, redrawn while they repeat a grid already listed (or the truth)."""
    pos = rng.randrange(n_c)
    seen = {truth}
    choices = []
    for i in range(n_c):
        if i == pos:
            choices.append(truth)
            continue
        while True:
            perm = list(range(1, m * n + 1))
            rng.shuffle(perm)
            grid = grid_text(perm, m, n)
            if grid not in seen:
                break
        seen.add(grid)
        choices.append(grid)
    return choices, string.ascii_uppercase[pos]


def make_row(
    image: Image.Image,
    spec: PuzzleSpec,
    *,
    seed: int | str,
    image_id: str = "",
    instruct: bool = True,
) -> dict:
    """One dataset row: a puzzle, its question and the solution (protocol §1-3).

    Draws from ``random.Random(seed)`` in this order: the m/n swap (only if ``spec.shuffle_mn``),
    the puzzle (grid: the patch shuffle; box: the patch offsets and the derangement), then the
    question's own draws:

    * pair: ``k, l = rng.sample(1..m·n, 2)`` (two distinct current positions in random order, as the
      reference does), the choice shuffle, the letter of the correct choice (uniform over n_c);
    * single: ``k = rng.randint(1, m·n)``;
    * multiple: the letter of the correct grid, then the distractor permutations in letter order;
    * box: ``k = rng.randint(1, m·n)``.

    Args:
        image: PIL image (converted to RGB if needed, see the module docstring).
        spec: the :class:`PuzzleSpec`.
        seed: int or str; the same seed gives the same row byte for byte on any process/machine.
        image_id: kept in the row for provenance.
        instruct: conversational prompt (instruct models) or plain string (base models).

    Returns:
        A :class:`jrl_core.rows.Row`: ``image`` (PIL, shuffled), ``prompt`` (``rows.chat_prompt(TEXT)``, or
        TEXT for base models), ``solution`` (str), ``answer_type``, ``m``, ``n`` (after shuffle_mn),
        ``question_type``, ``image_id``, ``mode`` (the thinking mode: the row's only thinking setting),
        ``seed``, ``forward``. Solutions: full → the m×n
        grid text of the forward/backward permutation; pair/multiple → a letter; single → the
        position index as digits; box → ``"x1,y1,x2,y2"`` pixel ints. TRL's GRPOTrainer fills the
        ``{"type": "image"}`` slot from the ``image`` column.

    Raises:
        ValueError: image too small for the grid (see :func:`make_grid_puzzle`).
    """
    rng = random.Random(seed)
    m, n = spec.m, spec.n
    if spec.shuffle_mn and rng.random() < 0.5:
        m, n = n, m
    masked = spec.mask_ratio > 0
    qt = spec.question_type
    if qt == "box":
        box = _box_puzzle(image, m, n, rng, spec.mask_ratio)
        shuffled = box.image
        k = rng.randint(1, m * n)
        solution = ",".join(str(v) for v in box.answer_box(k))
        question = question_text(m, n, "box", masked=masked, k=k)
    else:
        puzzle = _shuffle_image(image, m, n, rng, spec.mask_ratio, keep_original=False)
        shuffled = puzzle.image
        truth = puzzle.forward if spec.forward else puzzle.backward
        if qt == "full":
            solution = grid_text(truth, m, n)
            question = question_text(m, n, "full", forward=spec.forward, masked=masked)
        elif qt == "pair":
            k, l = rng.sample(range(1, m * n + 1), 2)  # noqa: E741
            choices, solution = _place_correct(pair_choices(m, n, k, l), pair_relation(puzzle.forward, n, k, l), rng)
            question = question_text(m, n, "pair", masked=masked, k=k, l=l, choices=choices)
        elif qt == "single":
            k = rng.randint(1, m * n)
            solution = str(truth[k - 1])
            question = question_text(m, n, "single", forward=spec.forward, masked=masked, k=k)
        else:  # multiple (PuzzleSpec rejects unknown types)
            choices, solution = _candidate_grids(grid_text(truth, m, n), m, n, spec.choices, rng)
            question = question_text(m, n, "multiple", forward=spec.forward, masked=masked, choices=choices)
    text = build_prompt_text(question, spec, m=m, n=n, instruct=instruct)
    return new_row(image=shuffled, text=text, solution=solution, answer_type=spec.answer_type,
                   mode=spec.thinking_mode.name, question_type=qt, image_id=image_id, m=m, n=n,
                   instruct=instruct, seed=seed, forward=spec.forward)


def item_seed(seed: int | str, i: int) -> int:
    """Per-item seed derived from a dataset seed and an item index: the first 7 bytes of
    ``sha256(f"{seed}:{i}")`` as an int in [0, 2**56) (fits an int64 Arrow column)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:7], "big")


def build_rows(
    images: list[Photo],
    spec: PuzzleSpec,
    *,
    n_items: int,
    seed: int | str,
    instruct: bool = True,
) -> list[dict]:
    """``n_items`` rows; item i uses ``images[i % len(images)]`` and seed ``item_seed(seed, i)``.

    Natural balance (no rebalancing is done): the correct letter is uniform over the n_c letters;
    for 1×n / m×1 pairs the two relations are equally likely (k, l in random order); for 2×2 pairs
    the 12 ordered (k, l) pairs give left/right/above/below 1/6 each and each diagonal 1/12. Full
    puzzles are uniform over the (m·n)! permutations, so a 2x1 puzzle is unshuffled half the time.

    Args:
        images: non-empty list of photos (e.g. ``sample_views`` output).
        spec: the :class:`PuzzleSpec`.
        n_items: number of rows (≥ 0).
        seed: dataset seed.
        instruct: see :func:`make_row`.

    Returns:
        A list of :func:`make_row` dicts, ``image_id`` from the photo.

    Raises:
        ValueError: empty ``images`` or negative ``n_items``.
    """
    if not images:
        raise ValueError("build_rows needs at least one photo; load some with jrl_core.images.load_photos().")
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}.")
    rows = []
    for i in range(n_items):
        photo = images[i % len(images)]
        rows.append(make_row(photo.image, spec, seed=item_seed(seed, i), image_id=photo.image_id, instruct=instruct))
    return rows


def random_baseline(question_type: str, m: int, n: int, n_c: int | None = None) -> float:
    """Expected accuracy of a uniform random guess (protocol §5, last line; paper_spec §1.3,
    Tables 1 and 7 "Random" rows; full questions scored by exact match).

    Args:
        question_type: ``"pair"`` (1/2 when m == 1 or n == 1, else 1/8), ``"full"`` (1/(m·n)!),
            ``"single"`` (1/(m·n)) or ``"multiple"`` (1/n_c, n_c default 4).
        m, n: grid size.
        n_c: number of candidates for ``"multiple"``.

    Returns:
        A probability in (0, 1]; e.g. pair 2x2 → 0.125, full 3x1 → 1/6.

    Raises:
        ValueError: ``"box"`` (continuous answer: no finite guess rate) or an unknown type.

    Note: "multiple" assumes the Jigsaw-R1 default n_c = 4 when n_c is None. The rate itself is the
    answer type's (``jrl_core.answers.AnswerType.random_rate``): here the question type only says how
    many answers are possible.
    """
    options = {"pair": _pair_n_c(m, n), "single": m * n, "multiple": DEFAULT_N_C if n_c is None else n_c, "full": None}
    if question_type not in options:
        raise ValueError(
            f"random_baseline: no random-guess rate for question_type {question_type!r}; "
            "use 'pair', 'full', 'single' or 'multiple'."
        )
    return answers.random_rate(ANSWER_TYPE[question_type], m, n, n_options=options[question_type])
