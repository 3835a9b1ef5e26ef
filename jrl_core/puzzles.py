"""Grid jigsaw puzzles, their questions and prompts (protocol §1-3; Jigsaw-R1 §3, App. A, App. I).

A puzzle is an RGB image cut into an m×n grid whose patches are shuffled (:func:`make_grid_puzzle`).
A question about it is either ``"full"`` (give the whole permutation as an m×n grid of indices) or
``"pair"`` (multiple choice: the relative position of two patches in the original image). A
dataset row (:func:`make_row`) bundles the shuffled image, the prompt in TRL's conversational form
and the solution string that ``jrl_core.rewards`` scores.

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
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from jrl_core.images import Photo, to_rgb
from jrl_core.modes import get_mode

__all__ = [
    "ANSWER_TYPE",
    "BASE_PREAMBLE",
    "IMPLEMENTED_QUESTION_TYPES",
    "MASK_INFO",
    "MIN_PATCH_PX",
    "PAIR_RELATIONS",
    "QUESTION_TYPES",
    "GridPuzzle",
    "PuzzleSpec",
    "build_prompt_text",
    "build_rows",
    "grid_text",
    "item_seed",
    "make_grid_puzzle",
    "make_row",
    "pair_choices",
    "pair_relation",
    "question_text",
    "random_baseline",
    "reassemble",
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
#: The question types this module builds today; the others are reserved names (protocol §2).
IMPLEMENTED_QUESTION_TYPES = ("full", "pair")
#: Smallest patch side in pixels accepted by :func:`make_grid_puzzle`.
MIN_PATCH_PX = 2

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
        question_type: ``"full"`` or ``"pair"`` (implemented); ``"single"``, ``"multiple"``, ``"box"``
            are reserved for later (protocol §2). Default ``"pair"`` (Jigsaw-R1's main setting).
        think: thinking prompt and ``<think>/<answer>`` format (True) or direct answer (False).
        forward: ground truth as the forward permutation (the paper's only mode) or the backward one
            (code-only option; full questions only).
        shuffle_mn: swap m and n with probability 0.5 per item (paper §5 RQ1: 2x1 becomes 1x2).
        n_c: number of choices. Pair questions fix it (2 when m == 1 or n == 1, else 8); give None or
            that number. Reserved for ``"multiple"`` (default 4 there).
        mask_ratio: share of each patch side blacked out at its borders, in [0, 0.5); 0 = off
            (the paper's setting).

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
        if self.question_type not in IMPLEMENTED_QUESTION_TYPES:
            raise ValueError(
                f"PuzzleSpec.question_type {self.question_type!r} is not implemented yet; use one of "
                f"{', '.join(IMPLEMENTED_QUESTION_TYPES)}."
            )
        for name in ("think", "forward", "shuffle_mn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PuzzleSpec.{name} must be True or False, got {getattr(self, name)!r}.")
        if self.question_type == "pair" and not self.forward:
            raise ValueError("PuzzleSpec: pair questions are forward-only (as in the reference); set forward=True.")
        if self.n_c is not None:
            if isinstance(self.n_c, bool) or not isinstance(self.n_c, int) or self.n_c < 2:
                raise ValueError(f"PuzzleSpec.n_c must be None or an int >= 2, got {self.n_c!r}.")
            if self.question_type == "pair" and self.n_c != _pair_n_c(self.m, self.n):
                raise ValueError(
                    f"PuzzleSpec.n_c={self.n_c} does not fit a {self.m}x{self.n} pair question, which has "
                    f"{_pair_n_c(self.m, self.n)} choices; leave n_c=None."
                )
        if not isinstance(self.mask_ratio, (int, float)) or not 0.0 <= self.mask_ratio < 0.5:
            raise ValueError(f"PuzzleSpec.mask_ratio must be in [0, 0.5), got {self.mask_ratio!r}; 0 turns masking off.")

    @property
    def answer_type(self) -> str:
        """``"grid"`` for full, ``"letter"`` for pair (see :data:`ANSWER_TYPE`)."""
        return ANSWER_TYPE[self.question_type]


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


def _shuffle_image(image: Image.Image, m: int, n: int, rng: random.Random, mask_ratio: float) -> GridPuzzle:
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, got {type(image).__name__}; open it with PIL.Image.open.")
    image = to_rgb(image) if image.mode != "RGB" else image
    pw, ph = image.width // n, image.height // m
    if pw < MIN_PATCH_PX or ph < MIN_PATCH_PX:
        raise ValueError(
            f"image of {image.width}x{image.height} px is too small for a {m}x{n} grid: patches need at least "
            f"{MIN_PATCH_PX} px per side (width >= {MIN_PATCH_PX * n}, height >= {MIN_PATCH_PX * m}); "
            "use a larger image (e.g. sample_views(size=...)) or a smaller grid."
        )
    original = image.crop((0, 0, pw * n, ph * m))
    forward = list(range(1, m * n + 1))
    rng.shuffle(forward)
    backward = [0] * (m * n)
    shuffled = Image.new("RGB", original.size)
    for x, y in enumerate(forward, start=1):
        backward[y - 1] = x
        shuffled.paste(original.crop(_patch_box(y, n, pw, ph)), _patch_box(x, n, pw, ph)[:2])
    if mask_ratio > 0:
        shuffled = _mask_borders(shuffled, m, n, mask_ratio)
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
    ``generate_grid_jigsaw_prompt``).

    Args:
        m, n: grid rows and columns.
        question_type: ``"full"`` or ``"pair"``.
        forward: full questions: forward ("place Y at position X") or backward wording.
        masked: add the masking sentence.
        k, l: pair: the two current positions asked about.
        choices: pair: the choice strings in display order; listed as ``"(A) …"`` one per line.

    Returns:
        The question text (no trailing newline).

    Raises:
        ValueError: unknown/unimplemented question type, or a pair question without k, l, choices.
    """
    if m == 1:
        first, last = "left", "right"
    elif n == 1:
        first, last = "top", "bottom"
    else:
        first, last = "top-left", "bottom-right"
    text = (
        f"The input image is divided into {m}x{n} patches that have been randomly permuted from their original "
        f"positions. Your task is to solve this {m}x{n} jigsaw puzzle and reconstruct the original image."
        f"{MASK_INFO if masked else ''}\n\n"
        f"Consider a {m}x{n} grid, where each number represents a position index ranging from 1 ({first}) to "
        f"{m * n} ({last}):\n\n```\n{grid_text(range(1, m * n + 1), m, n)}\n```\n\n"
    )
    if question_type == "full":
        if forward:
            return text + (
                "For each patch, determine its correct position index in the original image. "
                'If a patch currently at position X should belong at position Y, place "Y" at position X.'
            )
        return text + (
            "For each position, determine which patch should belong there. "
            'If a patch currently at position X should belong at position Y, place "X" at position Y.'
        )
    if question_type == "pair":
        if k is None or l is None or not choices:
            raise ValueError("a pair question needs k, l and the choices list.")
        listed = "\n".join(f"({string.ascii_uppercase[i]}) {c}" for i, c in enumerate(choices))
        return text + (
            f"For patches currently at positions {k} and {l}, determine their relative position in the original "
            f"image.\n\nSelect the correct answer from the following {len(choices)} choices:\n\n{listed}"
        )
    raise ValueError(
        f"question_text: question_type {question_type!r} is not implemented; use one of "
        f"{', '.join(IMPLEMENTED_QUESTION_TYPES)}."
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
    """Question + ``"\\n\\n"`` + thinking/non-thinking instruction + format line (protocol §3;
    reference ``generate_instruction``).

    Args:
        question: from :func:`question_text`.
        spec: gives the answer type and ``think``.
        m, n: the grid size actually shown (after ``shuffle_mn``); default ``spec.m``, ``spec.n``.
        instruct: True → the text for a chat template; False → the base-model plain string
            ``BASE_PREAMBLE + question + suffix + "\\n\\nAssistant: "`` (+ ``"<think>"`` when thinking).
        mode: a ``jrl_core.modes.MODES`` key overriding ``spec.think``.

    Returns:
        The prompt text.

    Raises:
        ValueError: unknown mode.
    """
    m = spec.m if m is None else m
    n = spec.n if n is None else n
    thinking_mode = get_mode(spec.think if mode is None else mode)
    text = question + thinking_mode.suffix(spec.answer_type, m, n)
    if instruct:
        return text
    return BASE_PREAMBLE + text + "\n\nAssistant: " + ("<think>" if thinking_mode.think else "")


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
    the patch shuffle, then for pair questions the positions ``k, l = rng.sample(1..m·n, 2)``
    (two distinct current positions in random order, as the reference does), the choice shuffle and
    the letter of the correct choice (uniform over the n_c letters).

    Args:
        image: RGB PIL image.
        spec: the :class:`PuzzleSpec`.
        seed: int or str; the same seed gives the same row byte for byte on any process/machine.
        image_id: kept in the row for provenance.
        instruct: conversational prompt (instruct models) or plain string (base models).

    Returns:
        ``{"image": PIL (shuffled), "prompt": [{"role": "user", "content": [{"type": "image"},
        {"type": "text", "text": TEXT}]}] (or TEXT for base models), "solution": str (a letter for
        pair; the m×n grid text of the forward/backward permutation for full), "answer_type":
        "letter" | "grid", "m": int, "n": int (after shuffle_mn), "think": bool, "question_type": str,
        "image_id": str, "seed": int | str}``. TRL's GRPOTrainer fills the ``{"type": "image"}`` slot
        from the ``image`` column.

    Raises:
        ValueError: image too small for the grid (see :func:`make_grid_puzzle`).
    """
    rng = random.Random(seed)
    m, n = spec.m, spec.n
    if spec.shuffle_mn and rng.random() < 0.5:
        m, n = n, m
    puzzle = _shuffle_image(image, m, n, rng, spec.mask_ratio)
    if spec.question_type == "full":
        truth = puzzle.forward if spec.forward else puzzle.backward
        solution = grid_text(truth, m, n)
        question = question_text(m, n, "full", forward=spec.forward, masked=spec.mask_ratio > 0)
    else:  # pair (PuzzleSpec rejects the rest)
        k, l = rng.sample(range(1, m * n + 1), 2)  # noqa: E741
        choices = pair_choices(m, n, k, l)
        truth_text = pair_relation(puzzle.forward, n, k, l)
        rng.shuffle(choices)
        pos = rng.randrange(len(choices))
        idx = choices.index(truth_text)
        choices[idx], choices[pos] = choices[pos], choices[idx]
        solution = string.ascii_uppercase[pos]
        question = question_text(m, n, "pair", masked=spec.mask_ratio > 0, k=k, l=l, choices=choices)
    text = build_prompt_text(question, spec, m=m, n=n, instruct=instruct)
    prompt = (
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}] if instruct else text
    )
    return {
        "image": puzzle.image,
        "prompt": prompt,
        "solution": solution,
        "answer_type": spec.answer_type,
        "m": m,
        "n": n,
        "think": spec.think,
        "question_type": spec.question_type,
        "image_id": image_id,
        "seed": seed,
    }


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
    """
    if question_type == "pair":
        return 1 / _pair_n_c(m, n)
    if question_type == "full":
        return 1 / math.factorial(m * n)
    if question_type == "single":
        return 1 / (m * n)
    if question_type == "multiple":
        return 1 / (4 if n_c is None else n_c)
    raise ValueError(
        f"random_baseline: no random-guess rate for question_type {question_type!r}; "
        "use 'pair', 'full', 'single' or 'multiple'."
    )
