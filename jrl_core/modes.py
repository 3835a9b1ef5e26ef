"""Thinking modes: how a model is told to answer, how its answer is read and what format earns reward.

One registry (:data:`MODES`) for every prompt variant of the three papers (protocol §3-5; Jigsaw-R1
App. I, code ``generate_instruction``; Think-or-Not-Think §3, App. E.3). A question
(``jrl_core.puzzles``) says *what* to answer; a :class:`ThinkingMode` says *how*:

* its prompt suffix (``separator + instruction [+ format line]``, :meth:`ThinkingMode.suffix`);
* its answer extraction (:meth:`ThinkingMode.extract`): the first ``<answer>`` block, the stripped
  output, or the raw output (the answer type, ``jrl_core.answers``, then reads the value);
* its format rule (:meth:`ThinkingMode.layout_ok`): the tag layout the whole output must have;
* its default rewards and weights (names in ``jrl_core.rewards.REWARDS``).

Adding a mode is one entry in :data:`MODES`; the reward functions read everything from the mode.

=====================  ==============================  ============  ===========================
mode                   layout (format rule)            extraction    default rewards (weights)
=====================  ==============================  ============  ===========================
thinking               <think>…</think> <answer>…       answer tag    accuracy, format (1, 0.5)
non_thinking           the bare answer                 stripped      accuracy, format (1, 0.5)
cls_rl_thinking        <think>…</think> <answer>…       answer tag    accuracy, format (1, 1)
no_thinking_rl         none (no format reward)         raw           equality (1)
think_after_answer     <answer>…</answer> <reason>…     answer tag    accuracy, format (1, 1)
adaptive_thinking      [<think>…</think>] <answer>…     answer tag    accuracy, format (1, 1)
=====================  ==============================  ============  ===========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jrl_core import answers

__all__ = [
    "EXTRACTIONS",
    "LAYOUTS",
    "MODES",
    "ThinkingMode",
    "answer_block",
    "get_mode",
    "mode_name",
    "tag_block",
]

#: Layout name → (full-match regex, tags that must each occur exactly once, optional tag pairs that
#: may occur zero or one time each). ``None``: no format rule. ``"direct"``: the bare answer (checked
#: by the answer type's bare rule, ``jrl_core.answers.AnswerType.is_bare``).
_LAYOUTS: dict[str, tuple[re.Pattern, tuple[str, ...], tuple[str, ...]] | None] = {
    "think_answer": (
        re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL),
        ("<think>", "</think>", "<answer>", "</answer>"), (),
    ),
    "answer_reason": (
        re.compile(r"<answer>.*?</answer>\s*<reason>.*?</reason>", re.DOTALL),
        ("<answer>", "</answer>", "<reason>", "</reason>"), (),
    ),
    "think_optional": (
        re.compile(r"(?:<think>.*?</think>\s*)?<answer>.*?</answer>", re.DOTALL),
        ("<answer>", "</answer>"), ("<think>", "</think>"),
    ),
    "direct": None,
    "none": None,
}
LAYOUTS = tuple(_LAYOUTS)
#: ``"answer_tag"``: content of the first ``<answer>…</answer>``, stripped, else the whole output
#: stripped (protocol §4); ``"strip"``: the whole output stripped; ``"raw"``: the output unchanged.
EXTRACTIONS = ("answer_tag", "strip", "raw")


@dataclass(frozen=True)
class ThinkingMode:
    """How a model is told to answer, and how its answer is read and rewarded.

    Attributes:
        name: registry key, e.g. ``"thinking"``.
        instruction: text placed after the question (and ``separator``), byte for byte as published;
            Jigsaw-R1's two instructions end with a space because the format line follows directly.
        think: whether the answer sits inside ``<answer>`` tags (kept for backwards compatibility:
            it is the ``think`` column of a dataset row; True for every tagged mode).
        separator: text between the question and the instruction (``"\\n\\n"`` for Jigsaw-R1,
            ``"\\n "`` for CLS-RL / No-Thinking-RL, ``" "`` for Think-After-Answer).
        format_line: whether the answer-type format line (``jrl_core.answers.format_line``) follows the instruction
            (Jigsaw-R1 only; the other studies' prompts end with their instruction).
        layout: the format rule, one of :data:`LAYOUTS` (``"none"``: no format reward).
        extraction: how the answer is read, one of :data:`EXTRACTIONS`.
        assistant_prefix: text a base-model prompt ends with after ``"Assistant: "`` (``"<think>"`` for
            Jigsaw-R1 thinking, protocol §3); the completion then lacks it and the rewards put it back.
        rewards: default reward names (``jrl_core.rewards.REWARDS``), in order.
        weights: the matching ``reward_weights`` (Jigsaw-R1: 1.0 accuracy + 0.5 format; CLS-RL and
            OThink-MR1: 1 + 1; No-Thinking-RL: equality only).
        source: where the prompt and rules come from.
    """

    name: str
    instruction: str
    think: bool
    separator: str = "\n\n"
    format_line: bool = True
    layout: str = ""
    extraction: str = ""
    assistant_prefix: str = ""
    rewards: tuple[str, ...] = ("accuracy", "format")
    weights: tuple[float, ...] = (1.0, 0.5)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.layout:
            object.__setattr__(self, "layout", "think_answer" if self.think else "direct")
        if not self.extraction:
            object.__setattr__(self, "extraction", "answer_tag" if self.think else "strip")
        if self.layout not in _LAYOUTS:
            raise ValueError(f"ThinkingMode {self.name!r}: layout {self.layout!r} unknown; use one of {LAYOUTS}.")
        if self.extraction not in EXTRACTIONS:
            raise ValueError(
                f"ThinkingMode {self.name!r}: extraction {self.extraction!r} unknown; use one of {EXTRACTIONS}."
            )
        if len(self.rewards) != len(self.weights):
            raise ValueError(f"ThinkingMode {self.name!r}: {len(self.rewards)} rewards but {len(self.weights)} weights.")

    def suffix(self, answer_type: str, m: int | None = None, n: int | None = None) -> str:
        """The text appended to a question: ``separator + instruction [+ format line]``.

        Args:
            answer_type: one of ``jrl_core.answers.ANSWER_TYPES``.
            m, n: grid rows/columns, required for ``"grid"``.

        Raises:
            ValueError: unknown answer type or missing m/n for a grid (see
                ``jrl_core.answers.format_line``).

        Source: protocol §3; Jigsaw-R1 code ``generate_instruction``.
        """
        line = answers.format_line(answer_type, m, n) if self.format_line else ""
        return self.separator + self.instruction + line

    def extract(self, text: str) -> str:
        """The answer content of one completion (protocol §4); never raises.

        ``answer_tag``: the content of the FIRST ``<answer>…</answer>``, stripped, or the whole
        output stripped when there is none; ``strip``: the output stripped; ``raw``: unchanged.
        Linear in the length of ``text``.
        """
        if self.extraction == "answer_tag":
            block = answer_block(text)
            return (text if block is None else block).strip()
        if self.extraction == "strip":
            return text.strip()
        return text

    @property
    def has_format_reward(self) -> bool:
        """False for modes without a format rule (No-Thinking-RL)."""
        return self.layout != "none"

    def layout_ok(self, text: str) -> bool:
        """Whether the whole output has this mode's tag layout (protocol §5; the answer's validity is
        checked separately, in ``jrl_core.rewards.format_ok``).

        Tagged layouts: the output must match the layout regex entirely (DOTALL) and each required tag
        must occur exactly once (optional tags at most once), so a second answer block, a nested or
        stray tag fails. The tag counts are checked first, which keeps the regex linear. ``direct`` and
        ``none`` layouts: always True here.
        """
        rule = _LAYOUTS[self.layout]
        if rule is None:
            return True
        regex, once, optional = rule
        if any(text.count(tag) != 1 for tag in once) or any(text.count(tag) > 1 for tag in optional):
            return False
        return regex.fullmatch(text) is not None


#: Every thinking mode, by name. Add a mode here and nowhere else.
MODES: dict[str, ThinkingMode] = {
    "thinking": ThinkingMode(
        name="thinking",
        instruction=(
            "First, output the thinking process within <think> </think> tags. "
            "Then, provide the final answer within <answer> </answer> tags. "
        ),
        think=True,
        assistant_prefix="<think>",
        source="Jigsaw-R1 App. I; code generate_instruction (think=True)",
    ),
    "non_thinking": ThinkingMode(
        name="non_thinking",
        instruction="Directly output the final answer. ",
        think=False,
        source="Jigsaw-R1 App. I; code generate_instruction (think=False)",
    ),
    "cls_rl_thinking": ThinkingMode(
        name="cls_rl_thinking",
        instruction="Please output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
        think=True,
        separator="\n ",
        format_line=False,
        assistant_prefix="<think>",
        weights=(1.0, 1.0),
        source="Think-or-Not-Think §3 (CLS-RL / Thinking-RFT)",
    ),
    "no_thinking_rl": ThinkingMode(
        name="no_thinking_rl",
        instruction="Please directly output the answer.",
        think=False,
        separator="\n ",
        format_line=False,
        layout="none",
        extraction="raw",
        rewards=("equality",),
        weights=(1.0,),
        source="Think-or-Not-Think §3 (No-Thinking-RL): equality reward, no format reward",
    ),
    "think_after_answer": ThinkingMode(
        name="think_after_answer",
        instruction=(
            "Please first output the answer in <answer> </answer> tags and then output a brief reasoning "
            "process in <reason> </reason> tags."
        ),
        think=True,
        separator=" ",
        format_line=False,
        layout="answer_reason",
        weights=(1.0, 1.0),
        source="Think-or-Not-Think v3+ (Think-After-Answer)",
    ),
    # The paper's App. E.3 wording is not in the protocol; this instruction is ours (same layout rule).
    "adaptive_thinking": ThinkingMode(
        name="adaptive_thinking",
        instruction=(
            "Please decide whether thinking is needed. If it is, output the thinking process in <think> </think> "
            "and final answer in <answer> </answer> tags; otherwise output only the final answer in "
            "<answer> </answer> tags."
        ),
        think=True,
        separator="\n ",
        format_line=False,
        layout="think_optional",
        weights=(1.0, 1.0),
        source="Think-or-Not-Think v4+ App. E.3 (Adaptive-Thinking); instruction wording is the workbook's",
    ),
}


def mode_name(mode: str | bool | ThinkingMode | None, think: object = None) -> str:
    """The registry name for a mode given as a name, a :class:`ThinkingMode`, a bool, or (when
    ``mode`` is None) derived from a ``think`` flag (True → ``"thinking"``, else ``"non_thinking"``)."""
    if isinstance(mode, ThinkingMode):
        return mode.name
    if mode is None or mode == "":
        return "thinking" if bool(think) else "non_thinking"
    return get_mode(mode).name


def get_mode(name: str | bool | ThinkingMode) -> ThinkingMode:
    """Look up a thinking mode by name.

    Args:
        name: a key of :data:`MODES`; for convenience ``True``/``False`` map to
            ``"thinking"``/``"non_thinking"`` (a :class:`~jrl_core.puzzles.PuzzleSpec`'s ``think``), and
            a :class:`ThinkingMode` is returned as is.

    Returns:
        The :class:`ThinkingMode`.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if isinstance(name, ThinkingMode):
        return name
    if isinstance(name, bool):
        name = "thinking" if name else "non_thinking"
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown thinking mode {name!r}; known modes: {', '.join(sorted(MODES))}. "
            "Pass one of those, or register a new ThinkingMode in jrl_core.modes.MODES."
        ) from None


def tag_block(text: str, tag: str) -> str | None:
    """The content of the first ``<tag>…</tag>`` of ``text`` (unstripped), or None when there is none.

    The same block as ``re.search(r"<tag>(.*?)</tag>", text, re.DOTALL)`` (the first opening tag that
    is closed later, up to the first closing tag after it), found with two ``str.find`` calls: linear
    in ``len(text)`` where that regex is quadratic on repeated opening tags.

    Args:
        text: a completion.
        tag: the tag name without brackets, e.g. ``"answer"``, ``"think"``.
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(closing, start)
    return None if end < 0 else text[start:end]


def answer_block(text: str) -> str | None:
    """The content of the first ``<answer>…</answer>`` (unstripped; protocol §4), or None; see
    :func:`tag_block`."""
    return tag_block(text, "answer")
