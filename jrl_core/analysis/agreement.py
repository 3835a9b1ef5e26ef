"""Think/answer consistency: does the answer stated in the reasoning agree with the ``<answer>``?
(Jigsaw-R1 Finding 3.3, Fig. 3 Left; Think-or-Not-Think §2.4, Fig. 2; protocol §8.)

The ``<answer>`` side is read exactly as the rewards read it (first ``<answer>`` block, then the answer
type's parser, ``jrl_core.answers``). The reasoning side is a different job — finding the conclusion
in free thinking text — done by rule (:func:`reasoning_answer`; the papers used an LLM). Every scan is
linear in the completion's length.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from jrl_core import answers
from jrl_core.analysis.frames import By, completion_texts, grouped_mean, missing
from jrl_core.modes import answer_block, tag_block
from jrl_core.puzzles import ANSWER_TYPE

__all__ = [
    "CONSISTENCY",
    "answer_tag_answer",
    "consistency",
    "consistency_summary",
    "consistency_table",
    "consistency_values",
    "reasoning_answer",
    "reasoning_text",
]

#: Values of :func:`consistency`.
CONSISTENCY = ("consistent", "inconsistent", "undetermined")

# "answer(s)" [is | would be | should be | must be | will be] [:|=]; each optional part carries its own
# leading whitespace, so a whitespace run is matched in one way only (linear; adjacent `\s*` made the
# old pattern polynomial in the run's length).
_ANSWER_PHRASE = (
    r"(?i:\banswers?)(?:\s*(?i:is|would\s+be|should\s+be|must\s+be|will\s+be)\b)?(?:\s*[:=])?"
)
_LETTER_PHRASE_RE = re.compile(
    _ANSWER_PHRASE + r"(?:\s*(?i:option|choice)(?=\s))?(?:\s*[(\[*]+)?\s*([A-Z])(?![A-Za-z0-9'’])")
_LETTER_PAREN_RE = re.compile(r"\(\s*([A-Z])\s*\)")
_LETTER_ALONE_RE = re.compile(r"(?<![A-Za-z0-9'’])([A-Z])(?![A-Za-z0-9'’])")
_CHOICE_LABEL_RE = re.compile(r"^[ \t>*\-]*\(\s*[A-Z]\s*\)", re.MULTILINE)
_DIGIT_PHRASE_RE = re.compile(
    _ANSWER_PHRASE + r"(?:\s*(?i:position|index|patch)(?=\s))?(?:\s*[(\[*]+)?\s*([0-9]+)(?![0-9A-Za-z])")
_NUMBER_RE = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?![A-Za-z0-9])")
_GRID_GAP_RE = re.compile(r"[\s,;`|\[\]()]*")
_BOX_ALL_RE = re.compile(r"(?<![0-9])[0-9]+,\s*[0-9]+,\s*[0-9]+,\s*[0-9]+")
_REASONING_TAGS = ("think", "reason")


def reasoning_text(text: str) -> str | None:
    """The reasoning block of a completion: the content of the first ``<think>…</think>`` (or
    ``<reason>…</reason>``, Think-After-Answer; whichever opens first); for base-model completions
    whose prompt ended with ``<think>`` (protocol §3), the text before a ``</think>`` that has no
    opening tag. None when there is no closed reasoning block (non-thinking outputs, truncated
    thinking)."""
    blocks = [(text.find(f"<{tag}>"), tag_block(text, tag)) for tag in _REASONING_TAGS]
    closed = [(start, block) for start, block in blocks if block is not None]
    if closed:
        return min(closed, key=lambda b: b[0])[1]
    end = text.find("</think>")
    if end >= 0 and "<think>" not in text[:end]:
        return text[:end]
    return None


def answer_tag_answer(text: str, answer_type: str, m: int | None = None, n: int | None = None) -> Any:
    """The ``<answer>`` answer as the rewards read it (protocol §4: the first ``<answer>`` block,
    stripped, then the answer type's parser, ``jrl_core.answers.AnswerType.parse``), or None when
    there is no ``<answer>…</answer>`` or it does not parse.

    Returns:
        letter: "A"-"Z"; digit: int; grid: list of m·n ints; box/point: [x1, y1, x2, y2] floats.

    Raises:
        ValueError: unknown answer type, or a grid without m and n.
    """
    spec = answers.get(answer_type)
    spec.size(m, n)
    block = answer_block(text)
    return None if block is None else spec.parse(block.strip(), m, n)


def _sentence_start(text: str, pos: int) -> bool:
    before = text[max(0, pos - 40):pos].rstrip(" \t*\"'")
    return (pos <= 40 and before == "") or (before != "" and before[-1] in ".!?:\n")


def _reasoning_letter(think: str, m: Any, n: Any) -> str | None:
    phrases = _LETTER_PHRASE_RE.findall(think)
    if phrases:
        return phrases[-1]
    labels = [(mt.start(), mt.end()) for mt in _CHOICE_LABEL_RE.finditer(think)]  # sorted, disjoint
    starts = [start for start, _ in labels]

    def in_label(pos: int) -> bool:
        i = bisect.bisect_right(starts, pos) - 1
        return i >= 0 and pos < labels[i][1]

    parens = [mt.group(1) for mt in _LETTER_PAREN_RE.finditer(think) if not in_label(mt.start())]
    if parens:
        return parens[-1]
    for mt in reversed(list(_LETTER_ALONE_RE.finditer(think))):
        letter, after = mt.group(1), think[mt.end():mt.end() + 2]
        if in_label(mt.start()):
            continue
        lower_word_next = len(after) == 2 and after[0].isspace() and after[1].islower()
        if letter == "I" and lower_word_next:  # the pronoun: "I think"
            continue
        if letter == "A" and lower_word_next and _sentence_start(think, mt.start()):  # the article: "A patch …"
            continue
        return letter
    return None


def _reasoning_digit(think: str, m: Any, n: Any) -> int | None:
    numbers = _DIGIT_PHRASE_RE.findall(think) or _NUMBER_RE.findall(think)
    return answers.parse_digit(numbers[-1]) if numbers else None


def _reasoning_grid(think: str, m: int, n: int) -> list[int] | None:
    size = m * n
    runs: list[list[str]] = []
    prev_end = None
    for mt in _NUMBER_RE.finditer(think):
        if prev_end is not None and _GRID_GAP_RE.fullmatch(think, prev_end, mt.start()):
            runs[-1].append(mt.group(0))
        else:
            runs.append([mt.group(0)])
        prev_end = mt.end()
    for run in reversed(runs):
        if len(run) == size:
            grid = answers.parse_grid(" ".join(run), m, n)
            if grid is not None:
                return grid
    return None


def _reasoning_box(think: str, m: Any, n: Any) -> list[float] | None:
    boxes = _BOX_ALL_RE.findall(think)
    return answers.parse_box(boxes[-1]) if boxes else None


#: How the conclusion is found in free reasoning text, by the kind of value an answer type holds (the
#: rules of :func:`reasoning_answer`). An answer type without a rule here is always "undetermined".
_CONCLUSIONS: dict[str, Callable[[str, Any, Any], Any]] = {
    "letter": _reasoning_letter, "digit": _reasoning_digit, "grid": _reasoning_grid,
    "box": _reasoning_box, "point": _reasoning_box,
}


def reasoning_answer(text: str, answer_type: str, m: int | None = None, n: int | None = None) -> Any:
    """The answer stated inside the reasoning block (:func:`reasoning_text`), by rule (protocol §8;
    Jigsaw-R1 Finding 3.3 and Think-or-Not-Think §2.4 used an LLM for this; the rules are ours).

    Rules per answer type (the LAST occurrence wins within each rule; rules in precedence order):

    * letter: (1) an answer phrase — "answer", "answers", optionally followed by "is", "would be",
      "should be", "must be", "will be", then optional ":"/"=", optional "option"/"choice", optional
      "(", "[" or "**", then a capital letter not followed by a letter/digit/apostrophe ("the answer is
      (B)", "Answer: C", "answer would be option **D**"); (2) a parenthesised capital "(X)", except a
      choice label "(X)" at the start of a line (a restated choice list); (3) a standalone capital
      letter (no letter, digit or apostrophe on either side), except in a line-start choice label, the
      pronoun "I" before a lowercase word ("I think") and the article "A" at a sentence start before a
      lowercase word ("A patch shows …").
    * digit: (1) an answer phrase as above followed by optional "position"/"index"/"patch" and an
      integer ("the answer is position 3"); (2) the last standalone integer (no letter or digit on
      either side, so "2x1" and "3rd" are not numbers).
    * grid: the last run of exactly m·n standalone integers, each in [1, m·n] (``answers.parse_grid``),
      separated only by whitespace, ",", ";", "`", "|", brackets or parentheses ("2 1\\n3 4",
      "[[2, 1], [3, 4]]", a markdown table row by row). Runs of another length are ignored.
    * box/point: the last ``int, int, int, int``.

    Returns:
        The value in the form of :func:`answer_tag_answer`, or None when there is no reasoning block,
        no answer in it, or no rule for the answer type.

    Raises:
        ValueError: unknown answer type, or a grid without m and n.
    """
    rows, cols = answers.get(answer_type).size(m, n)
    think = reasoning_text(text)
    rule = _CONCLUSIONS.get(answer_type)
    if think is None or rule is None:
        return None
    return rule(think, rows, cols)


def _status(think_value: Any, tag_value: Any) -> str:
    if think_value is None or tag_value is None:
        return "undetermined"
    return "consistent" if think_value == tag_value else "inconsistent"


def consistency(text: str, answer_type: str, m: int | None = None, n: int | None = None) -> str:
    """Whether the answer stated in the reasoning agrees with the ``<answer>`` answer (Jigsaw-R1
    Finding 3.3 / Fig. 3 Left; Think-or-Not-Think Fig. 2, "consistency with answer tag: Yes/No/None").

    Returns:
        ``"consistent"`` (equal values: same letter, number, grid or box), ``"inconsistent"``, or
        ``"undetermined"`` when either side has no answer: no reasoning block or no answer found in it
        (:func:`reasoning_answer`; Think-or-Not-Think's "None"), or no parsable ``<answer>``
        (:func:`answer_tag_answer`).

    Raises:
        ValueError: unknown answer type, or a grid without m and n.
    """
    return _status(reasoning_answer(text, answer_type, m, n), answer_tag_answer(text, answer_type, m, n))


def _score_value(value: Any, solution: Any, spec: answers.AnswerType, m: Any, n: Any) -> float:
    """Exact correctness of an extracted value (the answer type's ``"binary"`` score: letter/digit/grid
    0 or 1; box: IoU; point: centre in box); NaN for a missing value or solution."""
    if value is None or missing(solution) or (isinstance(solution, str) and not solution.strip()):
        return math.nan
    return spec.score(value, spec.truth(solution, m, n), m, n, variant="binary")


def _fmt(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(int(v)) if float(v).is_integer() else str(v) for v in value)
    return str(value)


def _with_answer_type(df: pd.DataFrame) -> pd.DataFrame:
    if "answer_type" in df.columns:
        return df
    if "question_type" in df.columns:
        return df.assign(answer_type=df["question_type"].map(ANSWER_TYPE))
    raise ValueError(
        "the frame has neither 'answer_type' nor 'question_type'; consistency needs the answer type "
        f"(one of {', '.join(answers.ANSWER_TYPES)}) per completion."
    )


def consistency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-completion consistency between the reasoning and the ``<answer>`` (see :func:`consistency`).

    Args:
        df: columns ``completion``, ``answer_type`` (or ``question_type``, mapped with
            ``puzzles.ANSWER_TYPE``), ``m`` and ``n`` (grids), optionally ``solution``.

    Returns:
        Index of ``df``; columns ``reasoning_answer`` and ``tag_answer`` (str or None; grids as
        space-separated indices), ``consistency`` (one of :data:`CONSISTENCY`; ``"undetermined"`` for a
        row with an unknown answer type), and with ``solution``: ``reasoning_score`` and
        ``answer_score`` (exact correctness in [0, 1]: letter/digit/grid 0 or 1, box IoU, point 0/1;
        NaN where that side has no answer).

    Raises:
        ValueError: missing columns; a grid row without m/n; a malformed solution.
    """
    df = _with_answer_type(df)
    texts = completion_texts(df)
    has_solution = "solution" in df.columns
    none = [None] * len(df)
    columns = zip(texts.tolist(), df["answer_type"].tolist(), *(df[c].tolist() if c in df.columns else none
                                                                 for c in ("m", "n", "solution")), strict=True)
    rows = []
    for text, answer_type, m, n, solution in columns:
        spec = answers.ANSWERS.get(answer_type) if isinstance(answer_type, str) else None
        think_value = tag_value = None
        if spec is not None:
            think_value = reasoning_answer(text, answer_type, m, n)
            tag_value = answer_tag_answer(text, answer_type, m, n)
        out = {"reasoning_answer": _fmt(think_value), "tag_answer": _fmt(tag_value),
               "consistency": _status(think_value, tag_value)}
        if has_solution:
            out["reasoning_score"] = _score_value(think_value, solution, spec, m, n) if spec else math.nan
            out["answer_score"] = _score_value(tag_value, solution, spec, m, n) if spec else math.nan
        rows.append(out)
    columns = ["reasoning_answer", "tag_answer", "consistency"] + (["reasoning_score", "answer_score"] if has_solution else [])
    return pd.DataFrame(rows, index=texts.index, columns=columns)


def consistency_values(table: pd.DataFrame) -> pd.DataFrame:
    """Per-completion values averaged by :func:`consistency_summary` (and ``analyse``), from a
    :func:`consistency_table`: ``consistent_share`` (1/0, NaN when undetermined),
    ``undetermined_share`` (1/0), and with scores ``accuracy_consistent``, ``accuracy_inconsistent``,
    ``reasoning_accuracy_inconsistent`` (the score where the status fits, else NaN)."""
    status = table["consistency"]
    determined = status != "undetermined"
    values = pd.DataFrame({
        "consistent_share": (status == "consistent").astype(float).where(determined),
        "undetermined_share": (~determined).astype(float),
    }, index=table.index)
    if "answer_score" in table.columns:
        values["accuracy_consistent"] = table["answer_score"].where(status == "consistent")
        values["accuracy_inconsistent"] = table["answer_score"].where(status == "inconsistent")
        values["reasoning_accuracy_inconsistent"] = table["reasoning_score"].where(status == "inconsistent")
    return values


def consistency_summary(df: pd.DataFrame, by: By = None) -> pd.DataFrame:
    """Consistency per group (Jigsaw-R1 Fig. 3 Left; Think-or-Not-Think Fig. 2 (a) and (b)).

    Args:
        df: a frame for :func:`consistency_table` (or one that already has its columns), with the
            ``by`` column(s).
        by: column name(s), or None for one row (index ``"all"``).

    Returns:
        Index: group values; columns ``n``; ``consistent_share`` (consistent / determined, in [0, 1];
        NaN when none is determined; 1 − it is the inconsistency rate of Think-or-Not-Think Fig. 2a);
        ``undetermined_share`` (of all); and when ``solution`` is known: ``accuracy_consistent`` and
        ``accuracy_inconsistent`` (mean ``<answer>`` correctness among consistent / inconsistent
        completions) and ``reasoning_accuracy_inconsistent`` (mean correctness of the reasoning's
        answer among inconsistent ones; Fig. 2b's think-tag accuracy). NaN for an empty subset.

    Raises:
        ValueError: as :func:`consistency_table`; a missing ``by`` column.
    """
    table = df if "consistency" in df.columns else consistency_table(df)
    return grouped_mean(consistency_values(table), df, by)
