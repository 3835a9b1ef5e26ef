"""Rule-based rewards for TRL's GRPOTrainer (protocol §4-5; Jigsaw-R1 §3.4, App. B, code ``utils/reward.py``).

Plain functions with TRL's reward signature: ``f(completions, <dataset columns>..., **kwargs) ->
list[float]``, one float in [0, 1] per completion. TRL passes every dataset column as a list with
one entry per completion; a scalar is accepted too and broadcast. The functions never raise on a
completion, whatever its text; they raise ``ValueError`` only for a malformed *ground truth*, an
unknown ``answer_type`` or a grid row without ``m``/``n`` (a bug in the dataset, not in the model).

The paper's total reward ``1.0·accuracy + 0.5·format`` is not computed here: pass
``reward_funcs=[accuracy_reward, format_reward]`` and ``reward_weights=PAPER_REWARD_WEIGHTS`` to
``trl.GRPOConfig``.

Thinking modes (``jrl_core.modes``): a ``mode`` column (a :data:`jrl_core.modes.MODES` name) picks
the answer extraction and the format rule; rows without it (older datasets) fall back on a
``think`` column (True → ``"thinking"``, False → ``"non_thinking"``). The No-Thinking-RL mode uses
:func:`equality_reward` (raw output == label) and has no format reward.

Answer types (``jrl_core.answers``): the ``answer_type`` column picks the parser, the validity rule
and the scorer from :data:`jrl_core.answers.ANSWERS`; ``m`` and ``n`` are read only for a grid (None
is fine for the other types). The parsers and scorers (``parse_grid``, ``parse_letter``,
``parse_digit``, ``parse_box``, ``score_grid``, ``box_iou``, ``point_in_box``) live there and are
re-exported here. Extraction and format checks are linear in the completion's length.

Format reward (protocol §5): the paper's rule extracts first (§4), then checks the extracted value,
so ``<think>x</think><answer>(A)</answer>`` earns format 1.0 (it extracts to ``A``); only a
non-thinking letter must be the bare capital letter. :func:`strict_format_reward` (``"strict_format"``
in :data:`REWARDS`, off by default) is the workbook's stricter rule, not the paper's.

Base-model prompts end with ``"<think>"`` (protocol §3), so the completion lacks its opening tag.
When TRL also passes ``prompts`` and a prompt is a string ending with ``"<think>"``, that tag is
put back in front of the completion before scoring (as the reference does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jrl_core import answers
from jrl_core.answers import (  # noqa: F401 (re-exported: the rewards' parsers and scorers)
    MAX_DIGITS,
    box_iou,
    parse_box,
    parse_digit,
    parse_grid,
    parse_letter,
    point_in_box,
    score_grid,
)
from jrl_core.modes import ThinkingMode, get_mode, mode_name

__all__ = [
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
    "strict_format_reward",
]

#: (accuracy, format) weights of Jigsaw-R1 (paper §3.4; code ``reward_weights=[1., 0.5]``).
PAPER_REWARD_WEIGHTS: tuple[float, float] = (1.0, 0.5)


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


# ---------------------------------------------------------------- scoring and format


def score_answer(
    text: str, solution: Any, answer_type: str, m: int | None = None, n: int | None = None, think: bool = False,
    *, grid_score: str = "fraction", forward: bool = True, mode: str | ThinkingMode | None = None,
) -> float:
    """Accuracy of one completion text against one solution (protocol §4-5): extract the answer
    content (the mode's rule), read the value (:meth:`jrl_core.answers.AnswerType.read`), score it.

    Args:
        text: completion text.
        solution: grid text / list (grid), letter (letter), int or digit string (digit),
            ``"x1,y1,x2,y2"`` or 4 numbers in pixels (box, point).
        answer_type: one of ``jrl_core.answers.ANSWER_TYPES``.
        m, n: grid size (grid only; ignored, and may be None, for the other types).
        think: whether to read the answer from ``<answer>`` tags (when ``mode`` is None).
        grid_score: accuracy variant (``"fraction"``, ``"binary"``, ``"connections"``; grid only, the
            other types score every variant by their own rule); ``forward``: see :func:`score_grid`.
        mode: a thinking mode (name or object) giving the extraction rule; overrides ``think``.

    Returns:
        A float in [0, 1]. Letter: the last capital letter of the answer, or, if it has none, the whole
        answer content, compared case-insensitively (as the reference does; so a bare ``"b"`` matches
        ``"B"``).

    Raises:
        ValueError: unknown answer type or variant, a grid without m and n, malformed ground truth.
    """
    spec = answers.get(answer_type)
    truth = spec.truth(solution, m, n)
    pred = spec.read(extract_answer(text, think, mode), m, n)
    return spec.score(pred, truth, m, n, variant=grid_score, forward=forward)


def format_ok(
    text: str, answer_type: str, m: int | None = None, n: int | None = None, think: bool = False,
    *, mode: str | ThinkingMode | None = None, strict: bool = False,
) -> bool:
    """Whether one completion has the required format (protocol §5), under ``mode`` (default: from
    ``think``).

    Tagged modes (thinking and the others): the whole string matches the mode's layout, e.g.
    ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL), with each tag exactly once (the paper's
    "each tag once, in order"; see ``ThinkingMode.layout_ok``), and then — extraction first (§4) —
    the answer content must yield a value of its type: a capital letter somewhere in it (the last one
    is the answer: ``"(A)"``, ``"The answer is A."`` and ``"B or B"`` all pass), a digit run, m·n valid
    indices, four integers. Non-thinking (``direct`` layout): the raw output itself must be one bare
    value (letter: exactly one capital letter, no whitespace; digit: only digits; grid: m·n indices;
    box/point: four comma-separated integers). A mode without a format rule (No-Thinking-RL)
    accepts everything: its format reward is a constant 1.0, which adds no advantage (leave it out
    of ``reward_funcs``, as :func:`mode_rewards` does).

    Args:
        strict: the workbook's stricter rule, not the paper's: in tagged modes too the answer content
            must be one bare value (so ``<answer>(A)</answer>`` fails). Same as the default for the
            non-thinking layout.

    Raises:
        ValueError: unknown answer type; a grid without m and n.
    """
    spec = answers.get(answer_type)
    thinking_mode = _mode(mode, think)
    if thinking_mode.layout == "none":
        return True
    if thinking_mode.layout == "direct":
        return spec.is_bare(text, m, n)
    if not thinking_mode.layout_ok(text):
        return False
    content = thinking_mode.extract(text)
    return spec.is_bare(content, m, n) if strict else spec.parse(content, m, n) is not None


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
    """The mode of each completion: the ``mode`` column when given (the rows' single source of the
    thinking setting), else, for older rows, from ``think``."""
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


def accuracy_reward(completions, solution, answer_type, m=None, n=None, think=None, **kwargs) -> list[float]:
    """Accuracy reward per completion, in [0, 1] (protocol §5; paper §3.4): grid fractional, letter
    and digit exact, box IoU, point centre-in-box.

    Args:
        completions: N strings or conversational completions.
        solution, answer_type: dataset columns, N entries each (or one scalar).
        m, n: grid size columns, read for grid rows only (None is fine for the other types).
        think: legacy thinking flag, used for rows without a ``mode``.
        **kwargs: other columns; ``mode`` (the thinking mode, overriding ``think``), ``prompts``
            (base-model ``<think>`` restoring) and ``forward`` (connections variant) are read, the
            rest ignored.

    Returns:
        N floats in [0, 1].

    Raises:
        ValueError: a column of the wrong length, no ``mode`` nor ``think`` column, unknown answer
            type, a grid row without m and n, malformed ground truth.
    """
    return _accuracy(completions, solution, answer_type, m, n, think, "fraction", kwargs)


def binary_accuracy_reward(completions, solution, answer_type, m=None, n=None, think=None, **kwargs) -> list[float]:
    """As :func:`accuracy_reward`, but a grid scores 1 only when exactly right (paper App. B.1)."""
    return _accuracy(completions, solution, answer_type, m, n, think, "binary", kwargs)


def connection_accuracy_reward(completions, solution, answer_type, m=None, n=None, think=None, **kwargs) -> list[float]:
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


def _format(completions, answer_type, m, n, think, strict: bool, kwargs) -> list[float]:
    count = len(completions)
    texts = _texts(completions, kwargs.get("prompts"))
    columns = [
        _column(answer_type, count, "answer_type"), _column(m, count, "m"),
        _column(n, count, "n"), _modes(think, kwargs, count),
    ]
    return [float(format_ok(text, at, mi, ni, mode=md, strict=strict))
            for text, at, mi, ni, md in zip(texts, *columns, strict=True)]


def format_reward(completions, answer_type, m=None, n=None, think=None, **kwargs) -> list[float]:
    """Format reward per completion: 1.0 if the format holds, else 0.0 — the paper's rule, extraction
    first, then the check (protocol §4-5; Jigsaw-R1 code ``format_reward``; see :func:`format_ok`):
    ``<think>x</think><answer>(A)</answer>`` earns 1.0. The paper's weight 0.5 belongs in
    ``GRPOConfig.reward_weights`` (:data:`PAPER_REWARD_WEIGHTS`).

    Args:
        completions: N strings or conversational completions.
        answer_type: dataset column, N entries (or one scalar).
        m, n: grid size columns, read for grid rows only (None is fine for the other types).
        think: legacy thinking flag, used for rows without a ``mode``.
        **kwargs: ``mode`` (the thinking mode, overriding ``think``) and ``prompts`` (base-model
            ``<think>`` restoring) are read, the rest ignored.

    Returns:
        N floats, each 0.0 or 1.0.

    Raises:
        ValueError: a column of the wrong length, no ``mode`` nor ``think`` column, an unknown answer
            type, a grid row without m and n.
    """
    return _format(completions, answer_type, m, n, think, False, kwargs)


def strict_format_reward(completions, answer_type, m=None, n=None, think=None, **kwargs) -> list[float]:
    """A stricter format reward, not the paper's rule (the workbook's former rule): in tagged
    modes the ``<answer>`` content must be one bare value too (letter: exactly one capital letter, so
    ``<answer>(A)</answer>`` and ``<answer>The answer is A.</answer>`` score 0.0; digit: only digits).
    Identical to :func:`format_reward` for non-thinking outputs, grids and boxes. Off by default; name
    ``"strict_format"`` in :data:`REWARDS`. Columns, returns and errors as :func:`format_reward`."""
    return _format(completions, answer_type, m, n, think, True, kwargs)


RewardFunc = Callable[..., list[float]]

#: Name → reward function, for configs and recipes.
REWARDS: dict[str, RewardFunc] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "accuracy_binary": binary_accuracy_reward,
    "accuracy_connections": connection_accuracy_reward,
    "equality": equality_reward,
    "strict_format": strict_format_reward,
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
