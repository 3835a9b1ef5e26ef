"""Thinking modes: the instruction appended to a question, and the answer format lines.

One place for every prompt variant that decides *how* a model should answer (protocol §3;
Jigsaw-R1 App. I, code ``generate_instruction``). A question (``jrl_core.puzzles``) says *what*
to answer; a :class:`ThinkingMode` plus a format line say *how*. The reward functions
(``jrl_core.rewards``) only need ``mode.think`` to know whether ``<think>``/``<answer>`` tags are
expected.

Later studies' variants (CLS-RL / Thinking-RFT, No-Thinking-RL, Think-After-Answer,
Adaptive-Thinking; protocol §3 "Other studies' prompt variants") are meant to be added to
:data:`MODES` here, using ``separator`` and ``format_line`` to express their layout.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANSWER_TYPES",
    "MODES",
    "ThinkingMode",
    "format_line",
    "get_mode",
]

#: The five answer types of protocol §2/§5.
ANSWER_TYPES = ("grid", "letter", "digit", "box", "point")


@dataclass(frozen=True)
class ThinkingMode:
    """How a model is told to answer.

    Attributes:
        name: registry key, e.g. ``"thinking"``.
        instruction: text placed after the question (and ``separator``), byte for byte as published;
            Jigsaw-R1's two instructions end with a space because the format line follows directly.
        think: whether the completion is expected as ``<think>…</think><answer>…</answer>``
            (drives answer extraction and the format reward, protocol §4-5).
        separator: text between the question and the instruction (``"\\n\\n"`` for Jigsaw-R1).
        format_line: whether the answer-type format line (:func:`format_line`) follows the instruction.
    """

    name: str
    instruction: str
    think: bool
    separator: str = "\n\n"
    format_line: bool = True

    def suffix(self, answer_type: str, m: int | None = None, n: int | None = None) -> str:
        """The text appended to a question: ``separator + instruction [+ format line]``.

        Args:
            answer_type: one of :data:`ANSWER_TYPES`.
            m, n: grid rows/columns, required for ``"grid"``.

        Raises:
            ValueError: unknown answer type or missing m/n for a grid (see :func:`format_line`).

        Source: protocol §3; Jigsaw-R1 code ``generate_instruction``.
        """
        line = format_line(answer_type, m, n) if self.format_line else ""
        return self.separator + self.instruction + line


MODES: dict[str, ThinkingMode] = {
    "thinking": ThinkingMode(
        name="thinking",
        instruction=(
            "First, output the thinking process within <think> </think> tags. "
            "Then, provide the final answer within <answer> </answer> tags. "
        ),
        think=True,
    ),
    "non_thinking": ThinkingMode(
        name="non_thinking",
        instruction="Directly output the final answer. ",
        think=False,
    ),
}


def get_mode(name: str | bool) -> ThinkingMode:
    """Look up a thinking mode by name.

    Args:
        name: a key of :data:`MODES`; for convenience ``True``/``False`` map to
            ``"thinking"``/``"non_thinking"`` (a :class:`~jrl_core.puzzles.PuzzleSpec`'s ``think``).

    Returns:
        The :class:`ThinkingMode`.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if isinstance(name, bool):
        name = "thinking" if name else "non_thinking"
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown thinking mode {name!r}; known modes: {', '.join(sorted(MODES))}. "
            "Pass one of those, or register a new ThinkingMode in jrl_core.modes.MODES."
        ) from None


def format_line(answer_type: str, m: int | None = None, n: int | None = None) -> str:
    """The published format line for an answer type (protocol §3).

    Args:
        answer_type: ``"grid"`` | ``"letter"`` | ``"digit"`` | ``"box"`` | ``"point"``.
        m, n: grid rows and columns (positive ints), required for ``"grid"``.

    Returns:
        e.g. ``"The final answer should be a single letter."`` (no trailing newline).

    Raises:
        ValueError: unknown answer type, or ``"grid"`` without m and n.

    Source: protocol §3; Jigsaw-R1 App. I / code ``generate_instruction``.
    """
    if answer_type == "grid":
        if m is None or n is None:
            raise ValueError("format_line('grid') needs the grid size: pass m and n (rows, columns).")
        return f"The final answer should be the position indexes arranged in a {m}x{n} grid."
    if answer_type == "digit":
        return "The final answer should be a single number."
    if answer_type == "letter":
        return "The final answer should be a single letter."
    if answer_type in ("box", "point"):
        return "The final answer should be bounding box coordinates, formatted as integers and separated by comma."
    raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}.")
