"""Procedurally labelled perception questions on photos.

One generator serves two purposes:

* **nano visual instruction pretraining** (:func:`pretrain`) on views of the *train*
  photos, turning a random-init nano Qwen2.5-VL into a nano instruct model that reads
  images, reads multiple-choice options and answers with a letter;
* the **offline generalization suite** (later: views of the held-out photos, with
  task families the pretraining never saw).

Every question is multiple choice with shuffled options and a one-letter answer, in
the same layout as Jigsaw-R1's pair questions ("Select the correct answer from the
following N choices: (A) …"). No task is a jigsaw or seam-order question: the
jigsaw prompt, its position indexes and permuted patches never appear, so the nano
model's jigsaw accuracy starts near chance. The tasks do teach generic visual
features that jigsaw solving can build on, as a real VLM's pretraining does:
whether two halves come from one photo, which way up a photo is, relations between
drawn shapes, brightness, tint, colour and counting.
"""

from __future__ import annotations

import dataclasses
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance

from jrl_core import answers
from jrl_core.images import Photo, load_photos, render_view, sample_views, view_crop
from jrl_core.modes import get_mode
from jrl_core.rows import chat_prompt, make_row


@dataclass(frozen=True)
class PerceptionItem:
    """One labelled question: ``image`` (PIL RGB), ``question`` text, ``choices`` in
    display order, ``answer`` letter (A, B, …), ``task`` name."""

    image: Image.Image
    question: str
    choices: tuple[str, ...]
    answer: str
    task: str

    @property
    def gold(self) -> str:
        """The text of the correct choice (``choices`` at the ``answer`` letter)."""
        return self.choices[string.ascii_uppercase.index(self.answer)]

    def prompt_text(self, mode: str = "non_thinking") -> str:
        """Question + lettered options + the thinking mode's letter instruction (Jigsaw-R1's
        non-thinking one by default; ``"thinking"`` asks for ``<think>…</think><answer>…</answer>``)."""
        opts = "\n".join(f"({string.ascii_uppercase[i]}) {c}" for i, c in enumerate(self.choices))
        return (
            f"{self.question}\n\nSelect the correct answer from the following {len(self.choices)} choices:\n\n"
            f"{opts}" + get_mode(mode).suffix("letter")
        )

    def row(self, mode: str = "non_thinking", *, image_id: str = "", **extra):
        """This item as a :class:`jrl_core.rows.Row` (letter answer, no grid; ``question_type``
        ``"perception"``) with ``task``, ``n_choices`` and ``random`` (1/n_choices) columns."""
        return make_row(image=self.image, text=self.prompt_text(mode), solution=self.answer, answer_type="letter",
                        mode=mode, question_type="perception", image_id=image_id, task=self.task,
                        n_choices=len(self.choices), random=answers.random_rate("letter", n_options=len(self.choices)),
                        **extra)

    def target(self, mode: str = "non_thinking", seed: int = 0) -> str:
        """The assistant turn the nano model is pretrained to produce: the bare letter, or for
        thinking modes a templated chain (:func:`think_chain`) in the mode's tag layout."""
        m = get_mode(mode)
        if not m.think:
            return self.answer
        return f"<think>{think_chain(self, random.Random(f'chain:{seed}'))}</think><answer>{self.answer}</answer>"


# --- templated reasoning chains (the nano model's only source of "thinking" text) -------------------
# Real VLMs bring reasoning habits from language pretraining; a nano model has none, so its
# pretraining shows it short chains built from these templates. They carry the cue words the
# reasoning analysis counts (Jigsaw-R1 App. H.1: "recheck", "reexamine", "work backwards"; the
# four behaviours of Gandhi et al. 2025), each with a fixed probability, so a nano run's
# keyword frequencies start from a known base rate (RQ4). Chains always end with the gold letter.
CHAIN_OPENINGS = ("Let me look at the image.", "First, I look at each part of the image, then compare them.",
                  "The question asks about the image.")
CHAIN_PATTERNS = {  # behaviour -> (probability, phrases)
    "verification": (0.3, ("Let me check this again.", "Let me verify the option.")),
    "backtracking": (0.15, ("Let me recheck the image.", "Let me reexamine the choices.")),
    "subgoal_setting": (0.2, ("Step by step: first the top, then the bottom.",)),
    "backward_chaining": (0.1, ("I can work backwards from the choices.",)),
}


def think_chain(item: PerceptionItem, rng: random.Random) -> str:
    """A short templated reasoning chain for ``item`` that names the gold option and ends with
    "So the answer is (X)." — 60–250 characters. Deterministic for ``rng``'s seed."""
    parts = [rng.choice(CHAIN_OPENINGS)]
    for _, (p, phrases) in CHAIN_PATTERNS.items():
        if rng.random() < p:
            parts.append(rng.choice(phrases))
    parts.append(f"Option ({item.answer}) says: {item.gold}.")
    parts.append(f"So the answer is ({item.answer}).")
    return " ".join(parts)


def _mc(image, question, correct: str, wrong: Sequence[str], task: str, rng: random.Random) -> PerceptionItem:
    choices = [correct, *wrong]
    rng.shuffle(choices)
    return PerceptionItem(image, question, tuple(choices), string.ascii_uppercase[choices.index(correct)], task)


# --- task generators: (view, others, rng) -> PerceptionItem -----------------------------------------
# ``others`` = item i's :class:`_SecondImages`: [0] a view of a different photo, [1] another random crop
# of the same photo, [2] / [3] the same crop moved down/up / sideways; each rendered on first use.

def _half_boxes(size: tuple[int, int], axis: str) -> tuple[tuple, tuple]:
    """PIL boxes of the (top, bottom) halves for ``axis="v"``, (left, right) for ``"h"``."""
    w, h = size
    if axis == "v":
        return (0, 0, w, h // 2), (0, h // 2, w, h)
    return (0, 0, w // 2, h), (w // 2, 0, w, h)


def _maybe_replace_half(view, axis: str, rng: random.Random, source: Callable[[], Image.Image], *,
                        low_draw_picks_first: bool = True) -> tuple[bool, Image.Image]:
    """``(kept, image)``: with probability 1/2 a copy of ``view`` (``kept=True``); otherwise one of
    its halves along ``axis`` (a second draw picks which) replaced by the same box of ``source()``
    (called after both draws, so a source may draw from ``rng`` too). The draw order is part of
    the items' determinism: keep it."""
    kept = rng.random() < 0.5
    img = view.copy()
    if not kept:
        first, second = _half_boxes(img.size, axis)
        box = first if (rng.random() < 0.5) == low_draw_picks_first else second
        img.paste(source().crop(box), box[:2])
    return kept, img


def _halves_same_photo(axis: str):
    a, b = ("top", "bottom") if axis == "v" else ("left", "right")

    def gen(view: Image.Image, other: tuple[Image.Image, Image.Image], rng: random.Random) -> PerceptionItem:
        same, img = _maybe_replace_half(view, axis, rng, lambda: other[0])
        q = f"Do the {a} half and the {b} half of the image come from the same photo?"
        return _mc(img, q, "yes" if same else "no", ["no" if same else "yes"], f"same_photo_{axis}", rng)

    return gen


def _upside_down(view, other, rng):
    flipped = rng.random() < 0.5
    img = view.transpose(Image.Transpose.ROTATE_180) if flipped else view
    return _mc(img, "Is this photo upside down?", "yes" if flipped else "no", ["no" if flipped else "yes"],
               "upside_down", rng)


def _lit_and_dimmed(view, axis: str, rng: random.Random) -> tuple[str, str, Image.Image]:
    """``(lit, dim, image)``: a copy of ``view`` with one half along ``axis`` (a random draw: "top"/"bottom" for
    ``"v"``, "left"/"right" for ``"h"``) brightened ×1.5–2.0 and the other dimmed ×0.4–0.7. The draw order is
    part of the items' determinism (the shipped base's pretraining items): keep it."""
    a, b = ("top", "bottom") if axis == "v" else ("left", "right")
    boxes = dict(zip((a, b), _half_boxes(view.size, axis), strict=True))
    lit = rng.choice([a, b])
    dim = b if lit == a else a
    img = view.copy()
    for half, (low, high) in ((lit, (1.5, 2.0)), (dim, (0.4, 0.7))):
        region = img.crop(boxes[half])
        img.paste(ImageEnhance.Brightness(region).enhance(rng.uniform(low, high)), boxes[half][:2])
    return lit, dim, img


def _brighter_half(axis: str):
    a, b = ("top", "bottom") if axis == "v" else ("left", "right")

    def gen(view, other, rng):
        lit, dim, img = _lit_and_dimmed(view, axis, rng)
        return _mc(img, "Which half of the image is brighter?", f"the {lit} half", [f"the {dim} half"],
                   f"brighter_{axis}", rng)

    return gen


COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 60, 230), "yellow": (240, 220, 20)}
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _quadrant_tint(view, other, rng):
    w, h = view.size
    q = rng.randrange(4)
    box = ((q % 2) * w // 2, (q // 2) * h // 2, (q % 2 + 1) * w // 2, (q // 2 + 1) * h // 2)
    img = view.copy()
    tint = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), COLOURS["red"])
    img.paste(Image.blend(img.crop(box), tint, 0.45), box[:2])
    wrong = [x for i, x in enumerate(QUADRANTS) if i != q]
    return _mc(img, "Which part of the image is tinted red?", QUADRANTS[q], wrong, "quadrant_tint", rng)


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: int, cy: int, r: int, fill) -> None:
    if kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=(0, 0, 0))
    else:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=(0, 0, 0))


def _shape_relation(view, other, rng):
    w, h = view.size
    r = max(4, w // 12)
    rel = rng.choice(["above", "below", "left", "right"])
    c1 = (rng.randint(r + 1, w - r - 1), rng.randint(r + 1, h - r - 1))
    gap = rng.randint(3 * r, max(3 * r, min(w, h) // 2))
    dx, dy = {"above": (0, gap), "below": (0, -gap), "left": (gap, 0), "right": (-gap, 0)}[rel]
    c2 = (min(max(c1[0] + dx, r + 1), w - r - 1), min(max(c1[1] + dy, r + 1), h - r - 1))
    if abs(c2[0] - c1[0]) + abs(c2[1] - c1[1]) < 2 * r:  # clipped into overlap: move the first shape
        c1 = (w - c1[0], h - c1[1])
        c2 = (min(max(c1[0] + dx, r + 1), w - r - 1), min(max(c1[1] + dy, r + 1), h - r - 1))
        rel = ("above" if c1[1] < c2[1] else "below") if dx == 0 else ("left" if c1[0] < c2[0] else "right")
    img = view.copy()
    d = ImageDraw.Draw(img)
    _draw_shape(d, "square", *c1, r, COLOURS["red"])
    _draw_shape(d, "circle", *c2, r, COLOURS["blue"])
    phr = {"above": "directly above", "below": "directly below", "left": "directly to the left of",
           "right": "directly to the right of"}
    pair = ("above", "below") if rel in ("above", "below") else ("left", "right")
    wrong = [x for x in pair if x != rel]
    if rng.random() < 0.5:  # sometimes the other axis too, four choices
        wrong += [x for x in phr if x not in pair]
    sent = {k: f"the red square is {v} the blue circle" for k, v in phr.items()}
    return _mc(img, "Where is the red square relative to the blue circle?", sent[rel],
               [sent[x] for x in wrong], "shape_relation", rng)


def _shape_colour(view, other, rng):
    w, h = view.size
    r = max(6, w // 8)
    name = rng.choice(list(COLOURS))
    img = view.copy()
    _draw_shape(ImageDraw.Draw(img), rng.choice(["square", "circle"]), rng.randint(r, w - r),
                rng.randint(r, h - r), r, COLOURS[name])
    return _mc(img, "What colour is the shape drawn on the image?", name, [c for c in COLOURS if c != name],
               "shape_colour", rng)


def _count_shapes(view, other, rng):
    w, h = view.size
    r = max(4, w // 16)
    k = rng.randint(1, 4)
    img = view.copy()
    d = ImageDraw.Draw(img)
    cells = rng.sample(range(16), k)  # a 4x4 lattice keeps shapes apart
    for c in cells:
        cx = (c % 4) * w // 4 + w // 8
        cy = (c // 4) * h // 4 + h // 8
        _draw_shape(d, "circle", cx, cy, r, COLOURS["yellow"])
    return _mc(img, "How many yellow circles are drawn on the image?", str(k),
               [str(x) for x in range(1, 5) if x != k], "count_shapes", rng)


GRID_SIZES = ((2, 1), (1, 2), (3, 1), (1, 3), (2, 2))


def _grid_relation(view, other, rng):
    """Reading the grid layout that jigsaw prompts spell out, with nothing shuffled: which
    relation do grid positions k and l have *in the grid*? The answer follows from the
    text alone (a real VLM knows this from language pretraining); no patch is permuted and
    nothing is asked about an original image, so this is not a jigsaw question."""
    from jrl_core.puzzles import grid_text, pair_choices, pair_relation

    m, n = rng.choice(GRID_SIZES)
    first, last = ("left", "right") if m == 1 else ("top", "bottom") if n == 1 else ("top-left", "bottom-right")
    k, l = rng.sample(range(1, m * n + 1), 2)  # noqa: E741
    truth = pair_relation(list(range(1, m * n + 1)), n, k, l)
    wrong = [c for c in pair_choices(m, n, k, l) if c != truth]
    q = (f"Consider a {m}x{n} grid, where each number represents a position index ranging from 1 ({first}) "
         f"to {m * n} ({last}):\n\n```\n{grid_text(range(1, m * n + 1), m, n)}\n```\n\n"
         f"For positions {k} and {l} of this grid, determine their relative position in the grid.")
    return _mc(view, q, truth, wrong, "grid_relation", rng)


def _brighter_relation(axis: str, *, layout: bool = False):
    """The relation phrases of jigsaw pair questions bound to image evidence: one half of the
    image is brightened and the other dimmed (as in ``brighter_v/h``); the brighter half is
    labelled k and the darker l, and the question asks where k is relative to l. The answer is
    set by the image alone, so each phrase and each letter is right half of the time. Nothing
    is cut, moved or exchanged, so this is not a jigsaw, seam-order or swap question.

    ``layout=True`` (tasks ``brighter_grid_v/h``) puts the jigsaw pair prompts' layout around the question: the
    image is said to be divided into 2x1 (or 1x2) halves and the grid block of position indices is spelled out, so
    that a prompt laid out like a jigsaw pair question is one the base has answered with a letter (a candidate base
    at 210 px wrote a letter for 0.3% of the 2x1 jigsaw prompts, session 17). Nothing is asked about an original
    image either way."""
    from jrl_core.puzzles import PAIR_RELATIONS, grid_text

    a, b = ("top", "bottom") if axis == "v" else ("left", "right")
    m, n = (2, 1) if axis == "v" else (1, 2)
    first, after = (PAIR_RELATIONS[2], PAIR_RELATIONS[3]) if axis == "v" else (PAIR_RELATIONS[0], PAIR_RELATIONS[1])
    task = f"brighter_{'grid' if layout else 'relation'}_{axis}"

    def gen(view, other, rng):
        lit, dim, img = _lit_and_dimmed(view, axis, rng)
        k, l = rng.sample((1, 2), 2)  # noqa: E741
        truth, wrong = (first, after) if lit == a else (after, first)
        if layout:
            q = (f"The input image is divided into {m}x{n} halves: one half was brightened and the other dimmed.\n\n"
                 f"Consider a {m}x{n} grid, where each number represents a position index ranging from 1 ({a}) to "
                 f"2 ({b}):\n\n```\n{grid_text(range(1, 3), m, n)}\n```\n\n"
                 f"Call the brighter half {k} and the darker half {l}. ")
        else:
            q = f"Call the brighter half of the image {k} and the darker half {l}. "
        q += f"Determine the relative position of {k} and {l} in the image."
        return _mc(img, q, truth.format(k=k, l=l), [wrong.format(k=k, l=l)], task, rng)

    return gen


def _halves_adjacent(axis: str):
    """Do the two halves show adjacent parts of one photo? Negatives replace one half by a
    different photo or by *another crop of the same photo* (never by the view's own other
    half: nothing is permuted, so this is not a jigsaw question). Compares neighbouring
    regions, the kind of feature jigsaw solving needs."""
    a, b = ("top", "bottom") if axis == "v" else ("left", "right")

    def gen(view, other, rng):
        adjacent, img = _maybe_replace_half(view, axis, rng, lambda: other[rng.random() < 0.75])
        q = f"Do the {a} half and the {b} half of the image show adjacent parts of one photo?"
        return _mc(img, q, "yes" if adjacent else "no", ["no" if adjacent else "yes"], f"adjacent_{axis}", rng)

    return gen


def _continuity(axis: str):
    """Is the image one unbroken photo? Negatives replace one half (top or bottom for ``v``, left or
    right for ``h``) by the same half of *another crop of the same photo at the same scale and flip*,
    shifted along the axis (half of the time by 1/8 to 1/2 of the crop: "a strip was cut out or
    repeated"). Positives and negatives differ only in whether the content runs on across the seam.
    One half always stays where it was and nothing is exchanged or reordered, and the question asks
    nothing about order or positions, so this is not a jigsaw or seam-order question."""
    def gen(view, other, rng):
        unbroken, img = _maybe_replace_half(view, axis, rng, lambda: other[2 if axis == "v" else 3],
                                            low_draw_picks_first=False)
        return _mc(img, "Is this image one unbroken photo?", "yes" if unbroken else "no",
                   ["no" if unbroken else "yes"], f"continuity_{axis}", rng)

    return gen


def _shifted_view(photos: list[Photo], i: int, *, seed: int, size: int, axis: str) -> Image.Image:
    """For view i of ``sample_views(photos, k, seed=seed, size=size)``: another crop of the same photo
    with the same side and flip, moved along ``axis`` (``"v"``: down/up, ``"h"``: sideways); half of
    the time by 1/8 to 1/2 of the side, else anywhere at least 1/8 away. Falls back to the other axis,
    then to the view itself moved nowhere (never happens for photos larger than the crop)."""
    photo = photos[i % len(photos)]
    x0, y0, side, flip = view_crop(photo, seed=seed, i=i)  # view i's crop, moved below
    width, height = photo.image.size
    srng = random.Random(f"shift:{axis}:{seed}:{i}")
    lo = max(1, side // 8)
    x1, y1 = x0, y0
    for ax in (axis, "h" if axis == "v" else "v"):
        start, room = (y0, height - side) if ax == "v" else (x0, width - side)
        if srng.random() < 0.5:
            cands = [d for d in range(-side // 2, side // 2 + 1) if abs(d) >= lo and 0 <= start + d <= room]
        else:
            cands = [d for d in range(-start, room - start + 1) if abs(d) >= lo]
        if not cands:
            cands = [d for d in range(-start, room - start + 1) if d != 0]
        if cands:
            d = srng.choice(cands)
            x1, y1 = (x0, y0 + d) if ax == "v" else (x0 + d, y0)
            break
    return render_view(photo, x1, y1, side, flip, size)


class _SecondImages:
    """Item i's second images for two-image tasks, each rendered on first use (a render costs ~1.6 ms
    and most tasks need one or none): ``[0]`` view i of ``sample_views`` over the photos rotated by
    one (a different photo, seed + 7919), ``[1]`` another crop of the same photo (seed + 104729,
    ``min_crop=0.3``), ``[2]`` / ``[3]`` the same crop moved down/up / sideways (:func:`_shifted_view`).
    Indexable with an int or a bool."""

    def __init__(self, photos: list[Photo], i: int, seed: int, size: int):
        self.photos, self.i, self.seed, self.size = photos, i, seed, size
        self._cache: dict[int, Image.Image] = {}

    def _render(self, j: int) -> Image.Image:
        n, i = len(self.photos), self.i
        if j == 0:
            photo, seed, min_crop = self.photos[(i + 1) % n], self.seed + 7919, 0.5
        elif j == 1:
            photo, seed, min_crop = self.photos[i % n], self.seed + 104_729, 0.3
        elif j in (2, 3):
            return _shifted_view(self.photos, i, seed=self.seed, size=self.size, axis="v" if j == 2 else "h")
        else:
            raise IndexError(f"second image {j} does not exist (0-3)")
        x0, y0, side, flip = view_crop(photo, seed=seed, i=i, min_crop=min_crop)
        return render_view(photo, x0, y0, side, flip, self.size)

    def __getitem__(self, j) -> Image.Image:
        j = int(j)
        if j not in self._cache:
            self._cache[j] = self._render(j)
        return self._cache[j]


TASKS: dict[str, Callable[[Image.Image, Image.Image, random.Random], PerceptionItem]] = {
    "same_photo_v": _halves_same_photo("v"),
    "same_photo_h": _halves_same_photo("h"),
    "upside_down": _upside_down,
    "brighter_v": _brighter_half("v"),
    "brighter_h": _brighter_half("h"),
    "quadrant_tint": _quadrant_tint,
    "shape_relation": _shape_relation,
    "shape_colour": _shape_colour,
    "count_shapes": _count_shapes,
    "grid_relation": _grid_relation,
    "brighter_relation_v": _brighter_relation("v"),
    "brighter_relation_h": _brighter_relation("h"),
    "brighter_grid_v": _brighter_relation("v", layout=True),
    "brighter_grid_h": _brighter_relation("h", layout=True),
    "adjacent_v": _halves_adjacent("v"),
    "adjacent_h": _halves_adjacent("h"),
    "continuity_v": _continuity("v"),
    "continuity_h": _continuity("h"),
}
"""Task name -> generator. Each is a pure function of (view, other view, rng)."""

DEFAULT_TASKS = ("same_photo_v", "same_photo_h", "brighter_v", "brighter_h", "brighter_relation_v",
                 "brighter_relation_h", "continuity_v", "continuity_h")
"""Pretraining tasks of the nano model (the rest of :data:`TASKS` are held out for the generalization suite).

Recipe v10 replaced ``grid_relation`` by ``brighter_relation_v/h``: ``grid_relation`` is answered from the text
alone ("nothing is shuffled"), so a base pretrained on it answers 2x1 pair prompts "not swapped" from the text,
with P(A) 0.02 in one prompt variant; GRPO then never samples the other letter there and leaves that variant
answered by one letter (nano-v6: 77.5% over seeds 0-4). ``brighter_relation`` binds the same relation phrases
to image evidence, each phrase and letter right half of the time (README, sessions 9-10).

Measured (600 steps, batch 32, lr 1e-3, 64 held-out items per task): same_photo_v 0.77,
same_photo_h 0.77, brighter_v 0.92, brighter_h 1.00, grid_relation 0.64. Not learned at this
size and budget, hence not in the default: upside_down 0.55, shape_relation 0.34 (chance 0.375),
adjacent_v 0.52, adjacent_h 0.47 (chance 0.5)."""


def make_items(photos: list[Photo], k: int, *, seed: int, tasks: Sequence[str] = DEFAULT_TASKS,
               size: int, generators: dict | None = None, rng_prefix: str = "perception") -> list[PerceptionItem]:
    """``k`` labelled questions on random views of ``photos``, deterministic per ``seed``.

    Item i uses task ``tasks[i % len(tasks)]`` (balanced), a view of photo
    ``i % len(photos)`` and, for two-photo tasks, a view of a *different* photo and
    another crop of the same photo; its rng is seeded ``f"{rng_prefix}:{seed}:{i}"``.
    ``generators`` (default :data:`TASKS`) maps task names to generators, so other
    task families (``jrl_core.generalization``) reuse this recipe.
    Raises ``ValueError`` for an unknown task name (listing the known ones) or
    fewer than two photos.
    """
    generators = TASKS if generators is None else generators
    unknown = [t for t in tasks if t not in generators]
    if unknown:
        raise ValueError(f"unknown perception task(s) {unknown}; known: {sorted(generators)}")
    if len(photos) < 2:
        raise ValueError("perception items need at least two photos (two-photo tasks mix them).")
    views = sample_views(photos, k, seed=seed, size=size)
    items = []
    for i in range(k):
        rng = random.Random(f"{rng_prefix}:{seed}:{i}")
        other = _SecondImages(photos, i, seed, size)  # rendered only if the task asks for them
        items.append(generators[tasks[i % len(tasks)]](views[i].image, other, rng))
    return items


CORPUS_TASKS = ("same_photo_v", "same_photo_h", "brighter_v", "brighter_h", "grid_relation", "continuity_v",
                "continuity_h")
"""Tasks whose prompts train the nano tokenizer (:func:`corpus`): the pretraining tasks of recipes v6-v9, fixed
so that the tokenizer does not change when the pretraining tasks do (recipe v10 pretrains on
``brighter_relation_v/h`` instead of ``grid_relation``; its phrases are the jigsaw prompts' own, which the
tokenizer corpus holds anyway)."""


def corpus() -> list[str]:
    """Prompt texts of :data:`CORPUS_TASKS` in thinking and non-thinking form, and their targets (for the nano
    tokenizer, :func:`jrl_core.nano.tokenizer_corpus`)."""
    photos = [Photo("a", Image.new("RGB", (64, 64), (90, 90, 90))), Photo("b", Image.new("RGB", (64, 64)))]
    items = make_items(photos, 4 * len(TASKS), seed=0, size=56, tasks=CORPUS_TASKS)
    return ([it.prompt_text() for it in items] + [it.prompt_text("thinking") for it in items[:len(TASKS)]]
            + [it.target("thinking", seed=i) for i, it in enumerate(items)])


# --- pretraining -----------------------------------------------------------------------------------

_NOISE_EXCLUDED = re.compile(r"[0-9()]|(?<![A-Za-z])[A-Za-z](?![A-Za-z])")

NOISE_VOCABS = {
    "all": "every learned token",
    "words": "learned tokens without a digit, a parenthesis or a lone letter (no position index, size, choice "
             "label or answer letter)",
}
"""Vocabularies token noise draws from (:attr:`jrl_core.nano.NanoConfig.pretrain_token_noise_vocab`)."""


def noise_token_ids(tokenizer, kind: str = "all") -> list[int]:
    """Ids a run of token noise is drawn from: the learned tokens of ``tokenizer``'s vocabulary, without its
    special and added tokens (chat markers, image pads, ``<think>``/``<answer>`` tags). Sorted, so a seeded draw is
    the same on every machine.

    Args:
        tokenizer: the nano tokenizer.
        kind: one of :data:`NOISE_VOCABS`. ``"words"`` also leaves out every token whose text holds a digit, a
            parenthesis or a lone letter, so noise never blurs a question's position indices, sizes, choice labels
            or answer letters (session 23: the suspect behind candidate nano-v13's slow GRPO start).
    Raises:
        ValueError: an unknown ``kind``, or a vocabulary with no token left.
    """
    if kind not in NOISE_VOCABS:
        raise ValueError(f"noise vocabulary {kind!r} is unknown; use one of {sorted(NOISE_VOCABS)}.")
    added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    ids = sorted(i for i in tokenizer.get_vocab().values() if i not in added)
    if kind == "words":
        ids = [i for i in ids if not _NOISE_EXCLUDED.search(tokenizer.decode([i]))]
    if not ids:
        raise ValueError(f"the tokenizer has no learned token for noise vocabulary {kind!r}.")
    return ids


def insert_token_noise(question: str, tokenizer, rng: random.Random, *, vocab: Sequence[int] | None = None,
                       max_runs: int = 3, max_run: int = 4) -> str:
    """``question`` with 1 to ``max_runs`` runs of 1 to ``max_run`` random vocabulary tokens inserted at random
    token boundaries (a robustness augmentation for the nano instruction stage, not from the papers).

    Why (session 22, ``benchmarks/nano_prompt_tokens.py``): the nano tokenizer merges whole template phrases into
    single tokens, so a jigsaw prompt holds 4–11 tokens no pretraining item contains, and whether a base answers it
    with a bare letter turned on them (0–60% as rendered, 89–97% with the pair question's sentence in trained
    wording). Runs of random tokens in the pretraining questions teach that unfamiliar tokens do not change the
    answer or its format. Only the question is changed (the lettered options and the instruction stay as they are),
    and the tokens are drawn uniformly from the whole learned vocabulary, so no jigsaw question, answer or
    layout is taught.

    Args:
        question: the item's question text (:attr:`PerceptionItem.question`).
        tokenizer: the nano tokenizer (encodes the question, decodes the result).
        rng: the draw (seed it per item for a deterministic build).
        vocab: ids to draw from (default :func:`noise_token_ids`).
        max_runs, max_run: at least 1.
    Returns:
        The new question text (decoded from the question's tokens with the runs inserted).
    Raises:
        ValueError: ``max_runs`` or ``max_run`` below 1, or an empty ``vocab``.
    """
    if max_runs < 1 or max_run < 1:
        raise ValueError(f"max_runs={max_runs}, max_run={max_run}: both must be >= 1.")
    vocab = list(vocab) if vocab is not None else noise_token_ids(tokenizer)
    if not vocab:
        raise ValueError("vocab is empty: pass the tokenizer's learned token ids (noise_token_ids).")
    ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    for _ in range(rng.randint(1, max_runs)):
        at = rng.randint(0, len(ids))
        ids[at:at] = [rng.choice(vocab) for _ in range(rng.randint(1, max_run))]
    return tokenizer.decode(ids)


def encode_sft(processor, items: Sequence[PerceptionItem], modes: Sequence[str] | None = None,
               seeds: Sequence[int] | None = None, questions: Sequence[str] | None = None):
    """Tokenize items for supervised training on the assistant turn only.

    ``modes[i]`` (default ``"non_thinking"``) picks item i's prompt instruction and target
    (:meth:`PerceptionItem.target`: a letter, or a templated ``<think>`` chain + ``<answer>``);
    ``seeds[i]`` seeds its chain; ``questions[i]`` (default the item's own) replaces its question text in the
    prompt (:func:`insert_token_noise`). Returns the processor's batch (``input_ids``,
    ``attention_mask``, ``pixel_values``, ``image_grid_thw``) plus ``labels``: -100
    everywhere but the target's tokens and the closing ``<|im_end|>``. Left padding, so
    each row's target is its last tokens.
    """
    import torch

    tok = processor.tokenizer
    modes = list(modes or ["non_thinking"] * len(items))
    seeds = list(seeds or range(len(items)))
    texts, n_target = [], []
    questions = list(questions) if questions is not None else [it.question for it in items]
    for it, mode, sd, q in zip(items, modes, seeds, questions, strict=True):
        target = it.target(mode, seed=sd)
        prompt = it.prompt_text(mode)
        if q != it.question:
            prompt = q + prompt[len(it.question):]  # prompt_text starts with the question
        msgs = [*chat_prompt(prompt), {"role": "assistant", "content": target}]
        texts.append(processor.apply_chat_template(msgs, tokenize=False).rstrip("\n"))
        n_target.append(len(tok(target, add_special_tokens=False)["input_ids"]) + 1)  # + <|im_end|>
    batch = processor(text=texts, images=[it.image for it in items], return_tensors="pt", padding=True)
    labels = torch.full_like(batch["input_ids"], -100)
    width = batch["input_ids"].shape[1]
    for i, k in enumerate(n_target):
        labels[i, width - k:] = batch["input_ids"][i, width - k:]
    batch["labels"] = labels
    assert tok.convert_ids_to_tokens(int(batch["input_ids"][0, -1])) == "<|im_end|>"
    return batch


def letter_smoothed_loss(logits, batch, items: Sequence[PerceptionItem], tokenizer, smoothing: float):
    """Causal-LM cross-entropy over an :func:`encode_sft` batch's target tokens, with the answer letter's target
    smoothed over the item's option letters (a calibration regulariser for the nano instruction stage; label
    smoothing after Szegedy et al. 2016, here confined to the choice letters so no mass goes to other tokens).

    At each answer-letter position (the first target token of a bare-letter target, or the token after
    ``<answer>``), the target puts ``1 - smoothing`` on the gold letter and ``smoothing / (k - 1)`` on each of the
    item's other ``k - 1`` option letters; every other target token keeps its one-hot target. Why (session 23):
    a base trained to certainty on its perception questions answered some jigsaw prompt variants near-certainly
    wrong (candidate nano-v14: P(correct) 0.005 in one of eight answer cells at temperature 1), and GRPO never
    samples the other letter there, so that cell stays wrong in every seed.

    Args:
        logits: ``(batch, seq, vocab)`` model output for ``batch``.
        batch: :func:`encode_sft`'s batch (``input_ids``, ``labels``; -100 off the target).
        items: the batch's items, in order (their ``choices`` give each row's option letters).
        tokenizer: the nano tokenizer (letters and ``<answer>`` are single tokens).
        smoothing: in [0, 1); 0 gives the plain mean cross-entropy (the model's own loss).
    Returns:
        Scalar tensor: the mean over target tokens.
    Raises:
        ValueError: ``smoothing`` outside [0, 1), or ``items`` not matching the batch's rows.
    """
    import torch

    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing={smoothing}: expected a share in [0, 1).")
    labels, ids = batch["labels"], batch["input_ids"]
    if len(items) != labels.shape[0]:
        raise ValueError(f"{len(items)} items for a batch of {labels.shape[0]} rows: pass the items encode_sft got.")
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tgt, prev = labels[:, 1:], ids[:, :-1]
    valid = tgt != -100
    nll = -logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    if smoothing:
        answer_tag = tokenizer.convert_tokens_to_ids("<answer>")
        first = valid & ~torch.nn.functional.pad(valid[:, :-1], (1, 0), value=False)
        at_letter = valid & (first | (prev == answer_tag))
        for i, it in enumerate(items):
            letters = tokenizer.convert_tokens_to_ids(list(string.ascii_uppercase[:len(it.choices)]))
            gold = tokenizer.convert_tokens_to_ids(it.answer)
            others = [t for t in letters if t != gold]
            for j in torch.nonzero(at_letter[i] & (tgt[i] == gold)).flatten().tolist():
                spread = -logp[i, j, others].mean() if others else nll[i, j]
                nll[i, j] = (1 - smoothing) * nll[i, j] + smoothing * spread
    return nll[valid].mean()


def letter_accuracy(model, processor, items: Sequence[PerceptionItem], batch_size: int = 64) -> float:
    """Share of items whose greedy first answer token equals the gold letter."""
    import torch

    tok = processor.tokenizer
    correct = 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(items), batch_size):
            chunk = items[s:s + batch_size]
            texts = [processor.apply_chat_template(chat_prompt(it.prompt_text()), tokenize=False,
                                                   add_generation_prompt=True) for it in chunk]
            batch = processor(text=texts, images=[it.image for it in chunk], return_tensors="pt", padding=True)
            logits = model(**batch).logits[:, -1]
            pred = tok.convert_ids_to_tokens(logits.argmax(-1).tolist())
            correct += sum(p == it.answer for p, it in zip(pred, chunk, strict=False))
    return correct / max(1, len(items))


VISION_TASKS = ("continuity_v", "continuity_h", "same_photo_v", "continuity_v", "continuity_h", "same_photo_h")
"""Tasks of the nano vision-encoder stage (:func:`pretrain_vision`), the first pretraining stage;
continuity is listed twice, so it gets two thirds of the items.

Measured (vision encoder alone, 126 px views, 3x3 merging, 1,200 steps of 32, 14 training photos):
continuity_v alone reached 0.75 on held-out photos, and a linear probe on its pooled features
told swapped from unswapped 2x1 puzzles on held-out photos at 0.80; at 112 px with 2x2 merging
(the seam between patch rows) continuity_v stayed at chance with or without :func:`augment`.
Trained without augmentation on a label it could memorise (the swap label itself, a diagnostic
only), the encoder learned the 14 photos: train 0.80, held-out 0.42."""


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """A label-preserving random variant of a perception item's image for the vision stage.

    Left-right flip (p = 1/2), a random permutation of the RGB channels and colour inversion
    (p = 0.3). None of these moves content up or down, so every :data:`VISION_TASKS` label (and
    "upside down") keeps its meaning. With only 14 training photos, the encoder otherwise learns
    the photos instead of the question (measured on the swap label without augmentation, a
    diagnostic only: train 0.80, held-out 0.42).
    """
    from PIL import ImageOps

    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    bands = image.convert("RGB").split()
    image = Image.merge("RGB", [bands[i] for i in rng.sample(range(3), 3)])
    if rng.random() < 0.3:
        image = ImageOps.invert(image)
    return image


def _task_classes(items: Sequence[PerceptionItem]) -> dict[str, list[str]]:
    """Task -> sorted list of the distinct correct-choice texts seen in ``items`` (the vision
    stage's classes for that task)."""
    classes: dict[str, set[str]] = {}
    for it in items:
        classes.setdefault(it.task, set()).add(it.gold)
    return {t: sorted(c) for t, c in classes.items()}


def _fit(params: list, loss_at: Callable[[int], object], *, steps: int, lr: float, desc: str,
         progress: bool) -> list[dict]:
    """The optimisation loop both nano pretraining stages share: AdamW (weight decay 0.01) on
    ``params``, ``lr`` with a 5% linear warm-up then cosine decay to 0, gradient norm clipped at 1.
    ``loss_at(step)`` returns the step's scalar loss tensor. Returns the loss curve (an
    exponential moving average, every 25 steps and at the last step)."""
    import math

    import torch
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    curve, running = [], None
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        loss = loss_at(step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 25 == 0 or step == steps - 1:
            curve.append({"step": step, "loss": round(running, 4)})
            bar.set_postfix(loss=f"{running:.3f}")
    return curve


def pretrain_vision(model, processor, cfg, *, progress: bool = True) -> dict:
    """Stage 1 of the nano build: train the vision encoder alone on perception labels.

    Real VLMs start from a separately pretrained vision encoder (Qwen2.5-VL's ViT, CLIP in
    LLaVA) before visual instruction tuning; this is the nano counterpart. The encoder
    (``model.model.visual``, patch embedding to merger) is trained with a temporary linear head
    per task on its mean-pooled image tokens, cross-entropy on the correct choice's text
    (classes per task: :func:`_task_classes`). The head is discarded; nothing but the encoder
    changes. Items: a pool of ``cfg.vision_pretrain_pool`` items on the *train* photos
    (``cfg.vision_pretrain_tasks`` or :data:`VISION_TASKS`, generated once; a task listed twice
    gets twice the items) — a share ``cfg.vision_synthetic_share`` of them cut from
    ``cfg.vision_synthetic_pictures`` procedural pictures (:mod:`jrl_core.synthetic`) when that is > 0 —
    each drawn with a
    fresh :func:`augment`; AdamW, lr ``cfg.vision_pretrain_lr``, cosine decay, 5% warm-up.

    Returns a record: loss curve (every 25 steps) and held-out accuracy per task (the encoder's
    head, 128 items on the *test* photos, no augmentation).
    Raises ``ValueError`` when a task has only one class in the pool (nothing to learn).
    """
    import torch

    torch.manual_seed(cfg.seed)
    tasks = tuple(cfg.vision_pretrain_tasks or VISION_TASKS)
    visual = model.model.visual
    n_synthetic = round(cfg.vision_pretrain_pool * cfg.vision_synthetic_share) if cfg.vision_synthetic_pictures else 0
    pool = make_items(load_photos(cfg.photo_source, "train"), cfg.vision_pretrain_pool - n_synthetic,
                      seed=cfg.seed + 555, tasks=tasks, size=cfg.image_size)
    if n_synthetic:  # procedural pictures (jrl_core.synthetic): more scenes than 14 photos, same questions
        from jrl_core import synthetic

        pool += make_items(synthetic.pictures(cfg.vision_synthetic_pictures, seed=cfg.seed), n_synthetic,
                           seed=cfg.seed + 556, tasks=tasks, size=cfg.image_size)
    classes = _task_classes(pool)
    unique = tuple(dict.fromkeys(tasks))  # a task listed twice gets twice the items, one head
    flat = [(t, c) for t in unique for c in classes.get(t, [])]
    for t in unique:
        if len(classes.get(t, [])) < 2:
            raise ValueError(f"vision pretraining task {t!r} has fewer than two classes in its pool of "
                             f"{len(pool)} items; raise vision_pretrain_pool or drop the task.")
    index = {tc: i for i, tc in enumerate(flat)}
    head = torch.nn.Linear(model.config.text_config.hidden_size, len(flat))
    per_image = (cfg.image_size // (cfg.patch_size * cfg.merge_size)) ** 2
    task_cols = {t: torch.tensor([index[(t, c)] for c in classes[t]]) for t in unique}

    def logits_and_targets(items):
        enc = processor.image_processor(images=[it.image for it in items], return_tensors="pt")
        pooled = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
        z = head(pooled.view(len(items), per_image, -1).mean(1))
        rows, targets = [], []
        for i, it in enumerate(items):  # each item's logits over its own task's classes only
            rows.append(z[i, task_cols[it.task]])
            targets.append(classes[it.task].index(it.gold))
        return rows, targets

    def loss_at(step):
        rng = random.Random(f"vision:{cfg.seed}:{step}")
        batch = [dataclasses.replace(pool[j], image=augment(pool[j].image, rng))
                 for j in rng.sample(range(len(pool)), min(cfg.pretrain_batch, len(pool)))]
        rows, targets = logits_and_targets(batch)
        return sum(torch.nn.functional.cross_entropy(r[None], torch.tensor([y]))
                   for r, y in zip(rows, targets, strict=True)) / len(rows)

    visual.train()
    curve = _fit(list(visual.parameters()) + list(head.parameters()), loss_at, steps=cfg.vision_pretrain_steps,
                 lr=cfg.vision_pretrain_lr, desc="nano vision pretraining", progress=progress)
    visual.eval()
    held_out = {}
    test_photos = load_photos(cfg.photo_source, "test")
    with torch.no_grad():
        for t in unique:
            items = [it for it in make_items(test_photos, 128, seed=10_009, tasks=[t], size=cfg.image_size)
                     if it.gold in classes[t]]
            rows, targets = logits_and_targets(items)
            held_out[t] = sum(int(r.argmax()) == y for r, y in zip(rows, targets, strict=True)) / max(1, len(items))
    return {"loss_curve": curve, "held_out_accuracy": held_out, "tasks": list(unique), "pool": len(pool)}


def pretrain(model, processor, cfg, *, progress: bool = True) -> dict:
    """Visual instruction pretraining of a nano model on the training photos.

    AdamW (lr ``cfg.pretrain_lr``, cosine decay, 5% warm-up), ``cfg.pretrain_steps``
    steps of ``cfg.pretrain_batch`` fresh items each, cross-entropy on the answer
    letter. With ``cfg.freeze_vision`` the vision encoder (all but its merger, the
    projector into the language model) stays as :func:`pretrain_vision` left it, as in
    LLaVA-style instruction tuning; it is unfrozen again on return, also after an error.
    Returns a record: loss curve (every 25 steps) and held-out accuracy per task on 64 items
    of the *test* photos (chance: 1/2 or 1/4).
    """
    import torch

    torch.manual_seed(cfg.seed)
    tasks = cfg.pretrain_tasks or DEFAULT_TASKS
    train_photos = load_photos(cfg.photo_source, "train")
    visual = model.model.visual
    frozen = [p for n, p in visual.named_parameters() if not n.startswith("merger.")] if cfg.freeze_vision else []
    token_noise, smoothing = cfg.pretrain_token_noise, cfg.pretrain_letter_smoothing
    vocab = noise_token_ids(processor.tokenizer, cfg.pretrain_token_noise_vocab) if token_noise else None

    def loss_at(step):
        items = make_items(train_photos, cfg.pretrain_batch, seed=cfg.seed * 1_000_003 + step, tasks=tasks,
                           size=cfg.image_size)
        pick = random.Random(f"think:{cfg.seed}:{step}")
        modes = ["thinking" if pick.random() < cfg.pretrain_think_share else "non_thinking" for _ in items]
        questions = None  # the items' own
        if token_noise:
            noise = random.Random(f"noise:{cfg.seed}:{step}")
            questions = [insert_token_noise(it.question, processor.tokenizer, noise, vocab=vocab)
                         if noise.random() < token_noise else it.question for it in items]
        batch = encode_sft(processor, items, modes, seeds=[step * 1000 + i for i in range(len(items))],
                           questions=questions)
        if not smoothing:
            return model(**batch).loss
        labels = batch.pop("labels")
        logits = model(**batch).logits
        batch["labels"] = labels
        return letter_smoothed_loss(logits, batch, items, processor.tokenizer, smoothing)

    for p in frozen:
        p.requires_grad_(False)
    try:
        model.train()
        curve = _fit([p for p in model.parameters() if p.requires_grad], loss_at, steps=cfg.pretrain_steps,
                     lr=cfg.pretrain_lr, desc="nano pretraining", progress=progress)
    finally:
        for p in frozen:  # later training (SFT, GRPO) updates the whole model again
            p.requires_grad_(True)
    test_photos = load_photos(cfg.photo_source, "test")
    held_out = {}
    for t in tasks:
        items = make_items(test_photos, 64, seed=10_007, tasks=[t], size=cfg.image_size)
        held_out[t] = letter_accuracy(model, processor, items)
    model.eval()
    record = {"loss_curve": curve, "held_out_accuracy": held_out, "tasks": list(tasks),
              "think_share": cfg.pretrain_think_share}
    if token_noise:
        record["token_noise"] = token_noise
        record["token_noise_vocab"] = cfg.pretrain_token_noise_vocab
    if smoothing:
        record["letter_smoothing"] = smoothing
    if cfg.pretrain_think_share > 0:
        record["thinking_format"] = thinking_format_share(model, processor, test_photos, tasks, cfg.image_size)
    return record


def thinking_format_share(model, processor, photos, tasks, size: int, k: int = 16) -> dict:
    """Greedy thinking-mode completions on ``k`` held-out items: share in the
    ``<think>…</think><answer>…</answer>`` layout and share whose answer is right."""
    from jrl_core import rewards
    from jrl_core.evaluate import generate

    items = make_items(photos, k, seed=20_011, tasks=tasks, size=size)
    rows = [it.row("thinking") for it in items]
    outs = generate(model, processor, rows, max_new_tokens=96, progress=False)
    fmt = rewards.format_reward(outs, answer_type=["letter"] * k, m=[1] * k, n=[1] * k, think=[True] * k)
    acc = rewards.accuracy_reward(outs, solution=[it.answer for it in items], answer_type=["letter"] * k,
                                  m=[1] * k, n=[1] * k, think=[True] * k)
    return {"format": sum(fmt) / k, "accuracy": sum(acc) / k, "example": outs[0]}
