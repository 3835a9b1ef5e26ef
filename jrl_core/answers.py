"""Answer types: how an answer is read, checked, scored, asked for and guessed (protocol §2-5).

One registry (:data:`ANSWERS`) for the five answer types of the three papers. A question
(``jrl_core.puzzles``, ``jrl_core.downstream``) says which answer type it expects; a thinking mode
(``jrl_core.modes``) says where in the output the answer sits; an :class:`AnswerType` says

* how the value is read from the answer content (:meth:`AnswerType.parse`, protocol §4);
* when the whole text is nothing but one value (:meth:`AnswerType.is_bare`: the non-thinking format
  rule of protocol §5, and the strict variant of the thinking one);
* how a ground truth is read (:meth:`AnswerType.truth`) and how a prediction is scored against it
  (:meth:`AnswerType.score`; grid has the variants fraction, binary and connections);
* the format line of the prompt (:meth:`AnswerType.format_line`, protocol §3);
* the completion budget without thinking (:meth:`AnswerType.max_new_tokens`);
* the accuracy of a uniform random guess (:meth:`AnswerType.random_rate`, protocol §5, last line).

Adding an answer type is one entry in :data:`ANSWERS`; the rewards, the prompts, the evaluation and
the analysis read everything from it. This module imports nothing from ``jrl_core``.

======  =============================  ==============================  =======  ======================
type    value read (protocol §4)       accuracy (protocol §5)          cap      random guess
======  =============================  ==============================  =======  ======================
grid    m·n indices in [1, m·n]        share of positions (fraction)   4mn + 4  1/(m·n)! (exact match)
letter  the LAST capital letter A-Z    exact, case-insensitive         4        1/options
digit   the first run of ASCII digits  numeric equality                8        1/values (NaN: open)
box     the first int, int, int, int   IoU with the gt box             32       NaN (continuous)
point   the first int, int, int, int   predicted centre in the gt box  32       gt box / image area
======  =============================  ==============================  =======  ======================

Every parser runs in time linear in the text (no regex with nested or adjacent unbounded
repetition), so a megabyte of adversarial output is read in milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "ACCURACY_VARIANTS",
    "ANSWERS",
    "ANSWER_TYPES",
    "GRID_SCORES",
    "MAX_DIGITS",
    "AnswerType",
    "box_iou",
    "format_line",
    "get",
    "max_new_tokens",
    "parse_box",
    "parse_digit",
    "parse_grid",
    "parse_letter",
    "point_in_box",
    "random_rate",
    "score_grid",
]

#: Longest digit run read as a number; longer runs are invalid answers (no index or pixel is that big;
#: Python also refuses int() on > 4,300 digits).
MAX_DIGITS = 18
#: Accuracy variants of a grid answer (protocol §5; paper App. B.1; reference ``score_jigsaw_connections``).
GRID_SCORES = ("fraction", "binary", "connections")

_CAPITAL_RE = re.compile(r"[A-Z]")
_DIGITS_RE = re.compile(r"[0-9]+")
# The lookbehind makes a match start only at the first digit of a run, so each run is tried once and
# the scan is linear (without it, '1' * 80,000 took 51 s); the first match is the same as without it.
_BOX_RE = re.compile(r"(?<![0-9])([0-9]+),\s*([0-9]+),\s*([0-9]+),\s*([0-9]+)")


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _to_int(digits: str) -> int | None:
    return int(digits) if len(digits) <= MAX_DIGITS else None


# ---------------------------------------------------------------- parsers (protocol §4)


def parse_grid(text: str, m: int, n: int) -> list[int] | None:
    """Parse an m×n grid of position indices (protocol §4; reference ``process_jigsaw_string``).

    Backticks, commas, semicolons and newlines become spaces; the tokens are split on whitespace;
    every token must be ASCII digits giving an int in [1, m·n]. Duplicates are not rejected (as in
    the reference; the accuracy already penalises them).

    Returns:
        The m·n ints in row-major order, or None if a token is not a valid index or the count is not
        m·n.
    """
    for char in "`,;\n":
        text = text.replace(char, " ")
    tokens = text.split()
    size = m * n
    if len(tokens) != size:
        return None
    values = []
    for token in tokens:
        if len(token) > MAX_DIGITS or not _DIGITS_RE.fullmatch(token):
            return None
        value = int(token)
        if not 1 <= value <= size:
            return None
        values.append(value)
    return values


def parse_letter(text: str) -> str | None:
    """The LAST capital letter A-Z in ``text`` (protocol §4: the reference reverses the string and
    takes the first [A-Z]), or None if there is none."""
    match = _CAPITAL_RE.search(text[::-1])
    return match.group(0) if match else None


def parse_digit(text: str) -> int | None:
    """The first run of ASCII digits as an int (protocol §4), or None (also when that run has more
    than :data:`MAX_DIGITS` digits)."""
    match = _DIGITS_RE.search(text)
    return _to_int(match.group(0)) if match else None


def parse_box(text: str) -> list[float] | None:
    """The first ``int, int, int, int`` (x1, y1, x2, y2 in pixels; protocol §4), or None (also when a
    number has more than :data:`MAX_DIGITS` digits)."""
    match = _BOX_RE.search(text)
    if not match or any(len(g) > MAX_DIGITS for g in match.groups()):
        return None
    return [float(g) for g in match.groups()]


# ---------------------------------------------------------------- scorers (protocol §5)


def _grid_connections(pred: list[int], gt: list[int], m: int, n: int, forward: bool) -> float:
    """Share of the 2mn−m−n truly adjacent patch pairs the prediction also places adjacent, in the
    same direction. Both grids are read as the layout they describe: forward ``g[x-1] = y`` (patch at
    x goes to y); backward ``g[y-1] = x`` (patch x goes to y)."""
    total = 2 * m * n - m - n
    if total <= 0:
        return 0.0
    size = m * n
    if forward:  # where each current patch goes, per grid
        true_dest, pred_dest = gt, pred
        patches = range(1, size + 1)
        pairs = []
        for a in patches:
            for b in patches:
                ya, yb = true_dest[a - 1], true_dest[b - 1]
                if (yb == ya + 1 and (ya - 1) // n == (yb - 1) // n) or yb == ya + n:
                    pairs.append((a, b, yb - ya))
        correct = 0
        for a, b, step in pairs:
            pa, pb = pred_dest[a - 1], pred_dest[b - 1]
            if pb - pa == step and (step == n or (pa - 1) // n == (pb - 1) // n):
                correct += 1
        return correct / total
    # backward: the grids are reconstructions (original position y -> current patch x)
    true_pos = {x: y for y, x in enumerate(gt, start=1)}
    correct = 0
    for y in range(1, size + 1):
        row_end = y % n == 0
        neighbours = ([] if row_end else [(y + 1, 1)]) + ([(y + n, n)] if y + n <= size else [])
        for y2, step in neighbours:
            a, b = true_pos.get(pred[y - 1]), true_pos.get(pred[y2 - 1])
            if a is not None and b is not None and b - a == step and (step == n or (a - 1) // n == (b - 1) // n):
                correct += 1
    return correct / total


def score_grid(pred: list[int] | None, gt: list[int], m: int, n: int, variant: str = "fraction",
               forward: bool = True) -> float:
    """Grid accuracy (protocol §5; paper App. B.1).

    Args:
        pred: parsed prediction or None.
        gt: the ground-truth grid (m·n ints).
        m, n: grid size.
        variant: ``"fraction"`` (default: share of positions with pred == gt), ``"binary"`` (1 only for
            an exact match) or ``"connections"`` (share of the 2mn−m−n internal adjacencies kept).
        forward: how the grids are to be read (connections only).

    Returns:
        A float in [0, 1]; 0 when ``pred`` is None or its length is not m·n.

    Raises:
        ValueError: unknown variant.
    """
    if variant not in GRID_SCORES:
        raise ValueError(f"unknown grid score {variant!r}; use one of {', '.join(GRID_SCORES)}.")
    if pred is None or len(pred) != len(gt):
        return 0.0
    if variant == "binary":
        return float(pred == gt)
    if variant == "connections":
        return _grid_connections(pred, gt, m, n, forward)
    return sum(p == g for p, g in zip(pred, gt, strict=True)) / len(gt)


def _box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(pred: Sequence[float] | None, gt: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` pixel boxes (continuous coordinates; a box
    with x2 ≤ x1 or y2 ≤ y1 has area 0). Returns a float in [0, 1]; 0 for None or an empty union.
    (The reference uses an inclusive-pixel variant; the difference is below one pixel's share.)"""
    if pred is None:
        return 0.0
    inter = _box_area((max(pred[0], gt[0]), max(pred[1], gt[1]), min(pred[2], gt[2]), min(pred[3], gt[3])))
    union = _box_area(pred) + _box_area(gt) - inter
    if not union > 0 or not math.isfinite(union):
        return 0.0
    return min(1.0, max(0.0, inter / union))


def point_in_box(pred: Sequence[float] | None, gt: Sequence[float]) -> float:
    """1.0 if the centre of the predicted box lies in the gt box (borders included), else 0.0
    (ScreenSpot's "point" scoring; paper_spec §1.4)."""
    if pred is None:
        return 0.0
    x, y = (pred[0] + pred[2]) / 2, (pred[1] + pred[3]) / 2
    return float(gt[0] <= x <= gt[2] and gt[1] <= y <= gt[3])


# ---------------------------------------------------------------- the registry

Parser = Callable[[str, Any, Any], Any]
"""``(text, m, n) -> value or None``; m and n are ints for a sized type, else ignored."""
Scorer = Callable[[Any, Any, Any, Any, bool], float]
"""``(pred, truth, m, n, forward) -> float in [0, 1]``; ``pred`` may be None (scores 0)."""
Guess = Callable[..., float]
"""``(m=, n=, n_options=, solution=, image_size=) -> probability in [0, 1] or NaN``."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one registered object per type
class AnswerType:
    """How one kind of answer is read, checked, scored, asked for and guessed (protocol §2-5).

    Attributes:
        name: registry key, e.g. ``"letter"``.
        parser: ``(content, m, n) -> value | None``: the value in an answer content (protocol §4).
        bare: ``(text, m, n) -> bool``: the text is exactly one value, nothing around it (protocol §5,
            non-thinking format).
        truth_parser: ``(solution, m, n) -> value``: a ground truth as the scorers compare it; raises
            ``ValueError`` for a malformed one.
        scorers: accuracy scorers ``(pred, truth, m, n, forward) -> [0, 1]`` by variant name; the first
            is the default.
        line: the format line of the prompt (``{m}``, ``{n}`` filled for a sized type).
        budget: ``(m, n) -> int``: completion tokens without thinking (the value, separators and line
            breaks, with room to spare).
        guess: the random-guess accuracy (see :meth:`random_rate`).
        sized: whether m and n (grid rows, columns) are needed to read the answer.
        choice: whether the answer picks one of lettered options (letter centring and the A-share
            apply).
        score_unparsed: whether the accuracy compares the whole answer content when the parser finds
            no value (the reference's ``extract_answer`` falls back to it; only a letter can then
            match: a bare ``"b"`` equals ``"B"`` case-insensitively).
        source: where the rules come from.
    """

    name: str
    parser: Parser
    bare: Callable[[str, Any, Any], bool]
    truth_parser: Parser
    scorers: Mapping[str, Scorer]
    line: str
    budget: Callable[[Any, Any], int]
    guess: Guess
    sized: bool = False
    choice: bool = False
    score_unparsed: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if not self.scorers:
            raise ValueError(f"AnswerType {self.name!r} needs at least one scorer.")
        object.__setattr__(self, "scorers", MappingProxyType(dict(self.scorers)))

    def size(self, m: Any, n: Any) -> tuple[int | None, int | None]:
        """``(int(m), int(n))`` for a sized type, ``(None, None)`` otherwise.

        Raises:
            ValueError: a sized type without m or n.
        """
        if not self.sized:
            return None, None
        if _missing(m) or _missing(n):
            raise ValueError(f"a {self.name} answer needs the grid size: pass m and n (rows, columns).")
        return int(m), int(n)

    def parse(self, content: str, m: Any = None, n: Any = None) -> Any:
        """The value in an answer content (protocol §4), or None when there is none; never raises on
        any text. Raises ``ValueError`` only for a sized type without m and n."""
        return self.parser(content, *self.size(m, n))

    def is_bare(self, text: str, m: Any = None, n: Any = None) -> bool:
        """Whether ``text`` is exactly one value (letter: one capital letter; digit: only digits; grid:
        m·n valid indices; box/point: four integers) — the non-thinking format rule (protocol §5)."""
        return self.bare(text, *self.size(m, n))

    def read(self, content: str, m: Any = None, n: Any = None) -> Any:
        """The prediction the accuracy compares: :meth:`parse`, or the content itself when that finds
        nothing and :attr:`score_unparsed` is set (reference ``extract_answer``)."""
        value = self.parse(content, m, n)
        return content if value is None and self.score_unparsed else value

    def truth(self, solution: Any, m: Any = None, n: Any = None) -> Any:
        """A ground truth in the form the scorers compare (grid: list of ints; letter: str; digit: int;
        box/point: four floats). Raises ``ValueError`` for a malformed one."""
        return self.truth_parser(solution, *self.size(m, n))

    def score(self, pred: Any, truth: Any, m: Any = None, n: Any = None, *, variant: str | None = None,
              forward: bool = True) -> float:
        """Accuracy of a prediction (:meth:`read`) against a truth (:meth:`truth`), in [0, 1]
        (protocol §5).

        Args:
            variant: a scorer name; None is the default (the first). A variant of another type
                (e.g. ``"binary"`` for a letter) is this type's default.
            forward: how grids are read (connections only).

        Raises:
            ValueError: a variant no answer type knows.
        """
        scorer = self.scorer(variant)
        return float(scorer(pred, truth, *self.size(m, n), forward))

    def scorer(self, variant: str | None = None) -> Scorer:
        """The scorer of ``variant`` (see :meth:`score`). Raises ``ValueError`` for an unknown one."""
        if variant is None or (variant not in self.scorers and variant in ACCURACY_VARIANTS):
            return next(iter(self.scorers.values()))
        if variant not in self.scorers:
            raise ValueError(f"unknown accuracy variant {variant!r}; use one of {', '.join(ACCURACY_VARIANTS)}.")
        return self.scorers[variant]

    def format_line(self, m: Any = None, n: Any = None) -> str:
        """The published format line (protocol §3; Jigsaw-R1 App. I / code ``generate_instruction``),
        e.g. ``"The final answer should be a single letter."`` (no trailing newline)."""
        rows, cols = self.size(m, n)
        return self.line.format(m=rows, n=cols)

    def max_new_tokens(self, m: Any = None, n: Any = None) -> int:
        """Completion cap without thinking, in tokens (with thinking the caller's cap applies; paper:
        512)."""
        return int(self.budget(*self.size(m, n)))

    def random_rate(self, m: Any = None, n: Any = None, *, n_options: int | None = None,
                    solution: Any = None, image_size: tuple[int, int] | None = None) -> float:
        """Expected accuracy of a uniform random guess (protocol §5, last line; Jigsaw-R1 Tables 1 and
        7 "Random" rows).

        Args:
            m, n: grid size (grid: 1/(m·n)!, the exact-match rate of the tables).
            n_options: how many answers are possible (letter: the options offered; digit: the values a
                question allows, e.g. m·n positions); None: open.
            solution: the ground-truth box in pixels (point).
            image_size: ``(width, height)`` of the image in pixels (point).

        Returns:
            A probability in [0, 1], or NaN when undefined (continuous boxes, open counts, fewer than
            two options).
        """
        if self.sized:
            m, n = self.size(m, n)
        return float(self.guess(m=m, n=n, n_options=n_options, solution=solution, image_size=image_size))


# ------------------------------------------------------------- per-type rules


def _letter_bare(text: str, m: Any, n: Any) -> bool:
    return len(text) == 1 and "A" <= text <= "Z"


def _digit_bare(text: str, m: Any, n: Any) -> bool:
    return 0 < len(text) <= MAX_DIGITS and _DIGITS_RE.fullmatch(text) is not None


def _grid_truth(solution: Any, m: int, n: int) -> list[int]:
    gt = list(solution) if isinstance(solution, (list, tuple)) else parse_grid(str(solution), m, n)
    if gt is None or len(gt) != m * n:
        raise ValueError(f"ground-truth grid {solution!r} is not {m}x{n} valid indices.")
    return gt


def _digit_truth(solution: Any, m: Any, n: Any) -> int:
    text = str(solution).strip()
    if not _digit_bare(text, m, n):
        raise ValueError(f"ground-truth digit {solution!r} is not a non-negative integer.")
    return int(text)


def _box_truth(solution: Any, m: Any, n: Any) -> list[float]:
    if isinstance(solution, str):
        box = parse_box(solution)
        if box is None:
            raise ValueError(f"ground-truth box {solution!r} is not 'x1,y1,x2,y2' integers.")
        return box
    try:
        box = [float(v) for v in solution]
    except (TypeError, ValueError):
        box = []
    if len(box) != 4:
        raise ValueError(f"ground-truth box {solution!r} must have four numbers x1, y1, x2, y2.")
    return box


def _letter_exact(pred: Any, truth: str, m: Any, n: Any, forward: bool) -> float:
    return float(pred is not None and str(pred).lower() == truth.lower())


def _digit_exact(pred: Any, truth: int, m: Any, n: Any, forward: bool) -> float:
    return float(pred is not None and pred == truth)


def _grid_scorer(variant: str) -> Scorer:
    def scorer(pred: Any, truth: list[int], m: int, n: int, forward: bool) -> float:
        return score_grid(pred, truth, m, n, variant, forward)

    scorer.__name__ = f"grid_{variant}"
    return scorer


def _one_in(n_options: int | None, **_: Any) -> float:
    return 1.0 / n_options if n_options is not None and n_options >= 2 else math.nan


def _grid_guess(m: int, n: int, **_: Any) -> float:
    return 1.0 / math.factorial(m * n)


def _no_guess(**_: Any) -> float:
    return math.nan


def _click_guess(solution: Any = None, image_size: tuple[int, int] | None = None, **_: Any) -> float:
    """A uniformly random click: the share of the image inside the gt box."""
    if solution is None or image_size is None:
        return math.nan
    box = _box_truth(solution, None, None)
    width, height = image_size
    area = width * height
    inside = max(0.0, min(box[2], width) - max(box[0], 0.0)) * max(0.0, min(box[3], height) - max(box[1], 0.0))
    return inside / area if area else math.nan


_BOX_LINE = "The final answer should be bounding box coordinates, formatted as integers and separated by comma."

#: Every answer type, by name. Add an answer type here and nowhere else.
ANSWERS: Mapping[str, AnswerType] = MappingProxyType({
    "grid": AnswerType(
        name="grid",
        parser=parse_grid,
        bare=lambda text, m, n: parse_grid(text, m, n) is not None,
        truth_parser=_grid_truth,
        scorers={variant: _grid_scorer(variant) for variant in GRID_SCORES},
        line="The final answer should be the position indexes arranged in a {m}x{n} grid.",
        budget=lambda m, n: 4 * m * n + 4,
        guess=_grid_guess,
        sized=True,
        source="protocol §4-5; Jigsaw-R1 App. B.1, code process_jigsaw_string / score_jigsaw_*",
    ),
    "letter": AnswerType(
        name="letter",
        parser=lambda text, m, n: parse_letter(text),
        bare=_letter_bare,
        truth_parser=lambda solution, m, n: str(solution).strip(),
        scorers={"exact": _letter_exact},
        line="The final answer should be a single letter.",
        budget=lambda m, n: 4,
        guess=_one_in,
        choice=True,
        score_unparsed=True,
        source="protocol §4-5; Jigsaw-R1 code extract_answer (reversed [A-Z]) / accuracy_reward_helper",
    ),
    "digit": AnswerType(
        name="digit",
        parser=lambda text, m, n: parse_digit(text),
        bare=_digit_bare,
        truth_parser=_digit_truth,
        scorers={"exact": _digit_exact},
        line="The final answer should be a single number.",
        budget=lambda m, n: 8,
        guess=_one_in,
        source="protocol §4-5; Jigsaw-R1 code extract_answer (\\d+)",
    ),
    "box": AnswerType(
        name="box",
        parser=lambda text, m, n: parse_box(text),
        bare=lambda text, m, n: parse_box(text) is not None,
        truth_parser=_box_truth,
        scorers={"iou": lambda pred, truth, m, n, forward: box_iou(pred, truth)},
        line=_BOX_LINE,
        budget=lambda m, n: 32,
        guess=_no_guess,
        source="protocol §4-5; Jigsaw-R1 App. A.2, code score_boxes",
    ),
    "point": AnswerType(
        name="point",
        parser=lambda text, m, n: parse_box(text),
        bare=lambda text, m, n: parse_box(text) is not None,
        truth_parser=_box_truth,
        scorers={"centre_in_box": lambda pred, truth, m, n, forward: point_in_box(pred, truth)},
        line=_BOX_LINE,
        budget=lambda m, n: 32,
        guess=_click_guess,
        source="protocol §5; paper_spec §1.4 (ScreenSpot); Jigsaw-R1 code score_points",
    ),
})
#: The answer types of protocol §2/§5, in registry order.
ANSWER_TYPES: tuple[str, ...] = tuple(ANSWERS)
#: Every accuracy variant name of any answer type (a type without a variant scores it by its default).
ACCURACY_VARIANTS: tuple[str, ...] = tuple(dict.fromkeys(v for t in ANSWERS.values() for v in t.scorers))


def get(name: str | AnswerType) -> AnswerType:
    """Look up an answer type by name (an :class:`AnswerType` is returned as is).

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if isinstance(name, AnswerType):
        return name
    try:
        return ANSWERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown answer_type {name!r}; use one of {', '.join(ANSWER_TYPES)} "
            "(or register a new AnswerType in jrl_core.answers.ANSWERS)."
        ) from None


def format_line(answer_type: str, m: int | None = None, n: int | None = None) -> str:
    """The published format line for an answer type (protocol §3; Jigsaw-R1 App. I / code
    ``generate_instruction``), e.g. ``"The final answer should be a single letter."``.

    Raises:
        ValueError: unknown answer type, or ``"grid"`` without m and n.
    """
    return get(answer_type).format_line(m, n)


def max_new_tokens(answer_type: str, m: int | None = None, n: int | None = None) -> int:
    """Completion cap without thinking, in tokens: grid ``4·m·n + 4``, letter 4, digit 8, box and
    point 32 (the value, separators and line breaks with room to spare; with thinking the caller's cap,
    paper 512, applies).

    Raises:
        ValueError: unknown answer type, or ``"grid"`` without m and n.
    """
    return get(answer_type).max_new_tokens(m, n)


def random_rate(answer_type: str, m: int | None = None, n: int | None = None, **question: Any) -> float:
    """Random-guess accuracy of one question (see :meth:`AnswerType.random_rate`; keywords
    ``n_options``, ``solution``, ``image_size``); NaN when undefined.

    Raises:
        ValueError: unknown answer type, or ``"grid"`` without m and n.
    """
    return get(answer_type).random_rate(m, n, **question)
