"""Rule-based rewards for TRL's GRPOTrainer (protocol §4-5; Jigsaw-R1 §3.4, App. B, code ``utils/reward.py``).

Plain functions with TRL's reward signature: ``f(completions, <dataset columns>..., **kwargs) ->
list[float]``, one float in [0, 1] per completion. TRL passes every dataset column as a list with
one entry per completion; a scalar is accepted too and broadcast. The functions never raise on a
completion, whatever its text; they raise ``ValueError`` only for a malformed *ground truth* or an
unknown ``answer_type`` (a bug in the dataset, not in the model).

The paper's total reward ``1.0·accuracy + 0.5·format`` is not computed here: pass
``reward_funcs=[accuracy_reward, format_reward]`` and ``reward_weights=PAPER_REWARD_WEIGHTS`` to
``trl.GRPOConfig``.

Thinking modes (``jrl_core.modes``): a ``mode`` column (a :data:`jrl_core.modes.MODES` name) picks
the answer extraction and the format rule; without it the mode follows the ``think`` column
(True → ``"thinking"``, False → ``"non_thinking"``), as before modes existed. The No-Thinking-RL
mode uses :func:`equality_reward` (raw output == label) and has no format reward.

Digit runs longer than :data:`MAX_DIGITS` never become ints (Python refuses int() on > 4,300
digits); such a number is simply not a valid answer.

Base-model prompts end with ``"<think>"`` (protocol §3), so the completion lacks its opening tag.
When TRL also passes ``prompts`` and a prompt is a string ending with ``"<think>"``, that tag is
put back in front of the completion before scoring (as the reference does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from jrl_core.modes import ThinkingMode, get_mode, mode_name

__all__ = [
    "ANSWER_TYPES",
    "PAPER_REWARD_WEIGHTS",
    "REWARDS",
    "accuracy_reward",
    "binary_accuracy_reward",
    "box_iou",
    "completion_text",
    "connection_accuracy_reward",
    "equality_reward",
    "extract_answer",
    "format_ok",
    "format_reward",
    "get_reward",
    "mode_rewards",
    "parse_box",
    "parse_digit",
    "parse_grid",
    "parse_letter",
    "point_in_box",
    "score_answer",
    "score_grid",
]

#: (accuracy, format) weights of Jigsaw-R1 (paper §3.4; code ``reward_weights=[1., 0.5]``).
PAPER_REWARD_WEIGHTS: tuple[float, float] = (1.0, 0.5)
ANSWER_TYPES = ("grid", "letter", "digit", "box", "point")
GRID_SCORES = ("fraction", "binary", "connections")

#: Longest digit run read as a number; longer runs are invalid answers (no index or pixel is that big).
MAX_DIGITS = 18

_CAPITAL_RE = re.compile(r"[A-Z]")
_DIGITS_RE = re.compile(r"[0-9]+")
_BOX_RE = re.compile(r"([0-9]+),\s*([0-9]+),\s*([0-9]+),\s*([0-9]+)")


# ---------------------------------------------------------------- completion text and extraction


def completion_text(completion: Any) -> str:
    """The text of one completion, whatever TRL's form.

    Args:
        completion: a plain string, or the conversational form
            ``[{"role": "assistant", "content": str | [{"type": "text", "text": str}, ...]}]``.
            Text of all assistant (or role-less) messages is concatenated; non-text parts are ignored.

    Returns:
        The text (``""`` for anything unrecognised); never raises.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return ""
    pieces: list[str] = []
    for message in completion:
        if isinstance(message, str):
            pieces.append(message)
            continue
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content", "")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, str):
                    pieces.append(part)
                elif isinstance(part, dict) and part.get("type", "text") == "text":
                    text = part.get("text", "")
                    pieces.append(text if isinstance(text, str) else "")
    return "".join(pieces)


def extract_answer(text: str, think: bool = False, mode: str | ThinkingMode | None = None) -> str:
    """The answer content (protocol §4).

    Args:
        text: the whole completion.
        think: used when ``mode`` is None: thinking → the content of the FIRST ``<answer>…</answer>``,
            stripped, or the whole output (stripped) if there is none; non-thinking → the whole
            output, stripped.
        mode: a ``jrl_core.modes`` mode (name or object); its extraction rule wins over ``think``.

    Returns:
        A string (possibly empty); never raises on any text.
    """
    return _mode(mode, think).extract(text)


def _mode(mode: Any, think: Any) -> ThinkingMode:
    return get_mode(mode_name(mode, think)) if not isinstance(mode, ThinkingMode) else mode


def _to_int(digits: str) -> int | None:
    return int(digits) if len(digits) <= MAX_DIGITS else None


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
        if not _DIGITS_RE.fullmatch(token) or len(token) > MAX_DIGITS:
            return None
        value = int(token)
        if not 1 <= value <= size:
            return None
        values.append(value)
    return values


def parse_letter(text: str) -> str | None:
    """The LAST capital letter A-Z in ``text`` (protocol §4: the reference reverses the string and
    takes the first [A-Z]), or None if there is none."""
    letters = _CAPITAL_RE.findall(text)
    return letters[-1] if letters else None


def parse_digit(text: str) -> int | None:
    """The first run of ASCII digits as an int (protocol §4), or None."""
    match = _DIGITS_RE.search(text)
    return _to_int(match.group(0)) if match else None


def parse_box(text: str) -> list[float] | None:
    """The first ``int, int, int, int`` (x1, y1, x2, y2 in pixels; protocol §4), or None (also when a
    number has more than :data:`MAX_DIGITS` digits)."""
    match = _BOX_RE.search(text)
    if not match or any(len(g) > MAX_DIGITS for g in match.groups()):
        return None
    return [float(g) for g in match.groups()]


# ---------------------------------------------------------------- scoring


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


def score_grid(pred: list[int] | None, gt: list[int], m: int, n: int, variant: str = "fraction", forward: bool = True) -> float:
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


def _gt_box(solution: Any) -> list[float]:
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


def score_answer(
    text: str, solution: Any, answer_type: str, m: int | None, n: int | None, think: bool = False,
    *, grid_score: str = "fraction", forward: bool = True, mode: str | ThinkingMode | None = None,
) -> float:
    """Accuracy of one completion text against one solution (protocol §4-5).

    Args:
        text: completion text.
        solution: grid text / list (grid), letter (letter), int or digit string (digit),
            ``"x1,y1,x2,y2"`` or 4 numbers in pixels (box, point).
        answer_type: one of :data:`ANSWER_TYPES`.
        m, n: grid size (grid only).
        think: whether to read the answer from ``<answer>`` tags (when ``mode`` is None).
        grid_score, forward: see :func:`score_grid`.
        mode: a thinking mode (name or object) giving the extraction rule; overrides ``think``.

    Returns:
        A float in [0, 1]. Letter: the last capital letter of the answer, or, if it has none, the whole
        answer content, compared case-insensitively (as the reference does; so a bare ``"b"`` matches
        ``"B"``).

    Raises:
        ValueError: unknown answer type or malformed ground truth.
    """
    answer = extract_answer(text, think, mode)
    if answer_type == "grid":
        gt = solution if isinstance(solution, (list, tuple)) else parse_grid(str(solution), int(m), int(n))
        if gt is None or len(gt) != int(m) * int(n):
            raise ValueError(f"ground-truth grid {solution!r} is not {m}x{n} valid indices.")
        return score_grid(parse_grid(answer, int(m), int(n)), list(gt), int(m), int(n), grid_score, forward)
    if answer_type == "letter":
        letter = parse_letter(answer)
        pred = letter if letter is not None else answer
        return float(pred.lower() == str(solution).strip().lower())
    if answer_type == "digit":
        pred = parse_digit(answer)
        gt = str(solution).strip()
        if not _DIGITS_RE.fullmatch(gt) or len(gt) > MAX_DIGITS:
            raise ValueError(f"ground-truth digit {solution!r} is not a non-negative integer.")
        return float(pred is not None and pred == int(gt))
    if answer_type == "box":
        return box_iou(parse_box(answer), _gt_box(solution))
    if answer_type == "point":
        return point_in_box(parse_box(answer), _gt_box(solution))
    raise ValueError(f"unknown answer_type {answer_type!r}; use one of {', '.join(ANSWER_TYPES)}.")


def _valid_answer(answer: str, answer_type: str, m: int | None, n: int | None) -> bool:
    if answer_type == "letter":
        return len(answer) == 1 and "A" <= answer <= "Z"
    if answer_type == "digit":
        return _DIGITS_RE.fullmatch(answer) is not None and len(answer) <= MAX_DIGITS
    if answer_type == "grid":
        return parse_grid(answer, int(m), int(n)) is not None
    if answer_type in ("box", "point"):
        return parse_box(answer) is not None
    raise ValueError(f"unknown answer_type {answer_type!r}; use one of {', '.join(ANSWER_TYPES)}.")


def format_ok(
    text: str, answer_type: str, m: int | None, n: int | None, think: bool = False,
    *, mode: str | ThinkingMode | None = None,
) -> bool:
    """Whether one completion has the required format (protocol §5), under ``mode`` (default: from
    ``think``).

    Thinking (and the other tagged modes): the whole string matches the mode's layout, e.g.
    ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL), each tag occurs exactly once (the paper's
    "each tag once, in order"; this also rejects a second answer block; see
    ``ThinkingMode.layout_ok``), and the answer extracts to a valid value: one capital letter, only
    digits, m·n valid indices, or four integers. Non-thinking: the raw output itself must be that
    valid value (letter: exactly one capital letter, no whitespace; digit: only digits; grid: parses
    to m·n indices; box/point: contains four comma-separated integers). A mode without a format rule
    (No-Thinking-RL) accepts everything: its format reward is a constant 1.0, which adds no
    advantage (leave it out of ``reward_funcs``, as :func:`mode_rewards` does).
    """
    thinking_mode = _mode(mode, think)
    if thinking_mode.layout == "none":
        _valid_answer("", answer_type, m, n)  # still reject an unknown answer type
        return True
    if thinking_mode.layout == "direct":
        return _valid_answer(text, answer_type, m, n)
    if not thinking_mode.layout_ok(text):
        return False
    return _valid_answer(thinking_mode.extract(text), answer_type, m, n)


# ---------------------------------------------------------------- TRL reward functions


def _column(value: Any, count: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"column {name!r} has {len(value)} entries for {count} completions.")
        return list(value)
    return [value] * count


def _texts(completions: Sequence[Any], prompts: Sequence[Any] | None) -> list[str]:
    texts = [completion_text(c) for c in completions]
    if prompts is not None and isinstance(prompts, (list, tuple)) and len(prompts) == len(texts):
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str) and prompt.endswith("<think>") and not texts[i].startswith("<think>"):
                texts[i] = "<think>" + texts[i]
    return texts


def _modes(think, kwargs, count: int) -> list[ThinkingMode]:
    """The mode of each completion: the ``mode`` column when given, else from ``think``."""
    if think is None and kwargs.get("mode") is None:
        raise ValueError("the rewards need a 'think' or a 'mode' column to know how to read the answer.")
    modes = _column(kwargs.get("mode"), count, "mode")
    thinks = _column(think, count, "think")
    return [_mode(md, th) for md, th in zip(modes, thinks, strict=True)]


def _accuracy(completions, solution, answer_type, m, n, think, grid_score, kwargs) -> list[float]:
    count = len(completions)
    texts = _texts(completions, kwargs.get("prompts"))
    columns = [
        _column(solution, count, "solution"), _column(answer_type, count, "answer_type"),
        _column(m, count, "m"), _column(n, count, "n"), _modes(think, kwargs, count),
        _column(kwargs.get("forward", True), count, "forward"),
    ]
    return [
        float(score_answer(text, sol, at, mi, ni, grid_score=grid_score, forward=bool(fw), mode=md))
        for text, sol, at, mi, ni, md, fw in zip(texts, *columns, strict=True)
    ]


def accuracy_reward(completions, solution, answer_type, m, n, think=None, **kwargs) -> list[float]:
    """Accuracy reward per completion, in [0, 1] (protocol §5; paper §3.4): grid fractional, letter
    and digit exact, box IoU, point centre-in-box.

    Args:
        completions: N strings or conversational completions.
        solution, answer_type, m, n, think: dataset columns, N entries each (or one scalar).
        **kwargs: other columns; ``mode`` (the thinking mode, overriding ``think``), ``prompts``
            (base-model ``<think>`` restoring) and ``forward`` (connections variant) are read, the
            rest ignored.

    Returns:
        N floats in [0, 1].

    Raises:
        ValueError: a column of the wrong length, unknown answer type, malformed ground truth.
    """
    return _accuracy(completions, solution, answer_type, m, n, think, "fraction", kwargs)


def binary_accuracy_reward(completions, solution, answer_type, m, n, think=None, **kwargs) -> list[float]:
    """As :func:`accuracy_reward`, but a grid scores 1 only when exactly right (paper App. B.1)."""
    return _accuracy(completions, solution, answer_type, m, n, think, "binary", kwargs)


def connection_accuracy_reward(completions, solution, answer_type, m, n, think=None, **kwargs) -> list[float]:
    """As :func:`accuracy_reward`, but a grid scores the share of the 2mn−m−n internal adjacencies
    it keeps (reference code option ``score_jigsaw_connections``; not in the paper)."""
    return _accuracy(completions, solution, answer_type, m, n, think, "connections", kwargs)


def equality_reward(completions, solution, **kwargs) -> list[float]:
    """No-Thinking-RL's accuracy reward: 1.0 only if the raw completion text equals the label exactly
    (case-sensitive, no stripping), else 0.0 (Think-or-Not-Think §3; code ``ground_truth == content``).

    Args:
        completions: N strings or conversational completions.
        solution: the labels (N entries or one scalar); compared as ``str(solution)``.
        **kwargs: other columns, ignored.

    Returns:
        N floats, each 0.0 or 1.0.

    Raises:
        ValueError: a column of the wrong length.
    """
    count = len(completions)
    labels = _column(solution, count, "solution")
    return [float(completion_text(c) == str(label)) for c, label in zip(completions, labels, strict=True)]


def format_reward(completions, answer_type, m, n, think=None, **kwargs) -> list[float]:
    """Format reward per completion: 1.0 if the format holds, else 0.0 (protocol §5; see
    :func:`format_ok`). The paper's weight 0.5 belongs in ``GRPOConfig.reward_weights``
    (:data:`PAPER_REWARD_WEIGHTS`).

    Args:
        completions: N strings or conversational completions.
        answer_type, m, n, think: dataset columns, N entries each (or one scalar).
        **kwargs: ``mode`` (the thinking mode, overriding ``think``) and ``prompts`` (base-model
            ``<think>`` restoring) are read, the rest ignored.

    Returns:
        N floats, each 0.0 or 1.0.

    Raises:
        ValueError: a column of the wrong length or an unknown answer type.
    """
    count = len(completions)
    texts = _texts(completions, kwargs.get("prompts"))
    columns = [
        _column(answer_type, count, "answer_type"), _column(m, count, "m"),
        _column(n, count, "n"), _modes(think, kwargs, count),
    ]
    return [float(format_ok(text, at, mi, ni, mode=md)) for text, at, mi, ni, md in zip(texts, *columns, strict=True)]


RewardFunc = Callable[..., list[float]]

#: Name → reward function, for configs and recipes.
REWARDS: dict[str, RewardFunc] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "accuracy_binary": binary_accuracy_reward,
    "accuracy_connections": connection_accuracy_reward,
    "equality": equality_reward,
}


def get_reward(name: str) -> RewardFunc:
    """Look up a reward function by name in :data:`REWARDS`.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    try:
        return REWARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reward {name!r}; known rewards: {', '.join(REWARDS)}.") from None


def mode_rewards(mode: str | bool | ThinkingMode) -> tuple[list[RewardFunc], tuple[float, ...]]:
    """A thinking mode's default reward functions and weights, ready for ``GRPOTrainer(reward_funcs=...)``
    and ``GRPOConfig(reward_weights=...)``; e.g. ``"thinking"`` → accuracy + format, (1.0, 0.5);
    ``"no_thinking_rl"`` → equality, (1.0,).

    Raises:
        ValueError: unknown mode or reward name.
    """
    thinking_mode = get_mode(mode)
    return [get_reward(name) for name in thinking_mode.rewards], thinking_mode.weights
