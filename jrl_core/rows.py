"""The dataset row: what flows from data builders (puzzles, perception suite, downstream benchmarks) to the
trainer (TRL's ``GRPOTrainer``/``SFTTrainer`` read ``prompt`` and ``image``; the reward functions get every
other column as keyword lists), to evaluation and to the completion log.

One schema (:class:`Row`), one builder (:func:`make_row`) and one chat-prompt helper (:func:`chat_prompt`).
The thinking mode (``mode``, a :data:`jrl_core.modes.MODES` name) is the single source of the thinking
setting; ``m``/``n`` are the grid size of jigsaw rows and None for rows without a grid.
"""

from __future__ import annotations

from typing import Any, TypedDict

from jrl_core.modes import get_mode

LOGGED_COLUMNS = ("prompt_id", "solution", "answer_type", "m", "n", "question_type", "mode")
"""Row columns copied into every rollout record of the completion log (``jrl_core.runs.COMPLETION_LOG``)."""


class Row(TypedDict, total=False):
    """One dataset row (a dict; TypedDict for readers and type checkers).

    Required: ``image`` (an RGB PIL image, or a list of them for multi-image questions), ``prompt`` (a chat
    from :func:`chat_prompt`, or plain text for base models), ``solution`` (str: letter, digits, grid text
    ``"2 1"``, box ``"x1,y1,x2,y2"``; benchmark boxes may be lists), ``answer_type`` (``grid``, ``letter``,
    ``digit``, ``box``, ``point``), ``mode`` (thinking-mode name), ``question_type`` (``pair``, ``full``,
    ``single``, ``multiple``, ``box``, ``perception`` or a benchmark name), ``image_id``.

    Optional: ``m``, ``n`` (grid rows × columns after any m/n swap; None without a grid), ``seed`` (the item
    seed), ``forward`` (forward/backward permutation), ``step``/``index`` (training rows: the global step the
    row is consumed at and its index), ``prompt_id``, and builder-specific provenance (``task``, ``suite``,
    ``seen``, ``benchmark``, ``n_choices``, ``random``).
    """

    image: Any
    prompt: Any
    solution: Any
    answer_type: str
    mode: str
    question_type: str
    image_id: str
    m: int | None
    n: int | None
    seed: int | str
    forward: bool
    step: int
    index: int
    prompt_id: str


REQUIRED = ("image", "prompt", "solution", "answer_type", "mode", "question_type", "image_id")


def chat_prompt(text: str, n_images: int = 1) -> list[dict]:
    """The user turn of a vision-language chat: ``n_images`` image slots, then the text (the Qwen-VL chat
    format TRL fills from the ``image`` column).

    Returns:
        ``[{"role": "user", "content": [{"type": "image"} × n_images, {"type": "text", "text": text}]}]``.
    Raises:
        ValueError: ``n_images < 0``.
    """
    if n_images < 0:
        raise ValueError(f"chat_prompt: n_images must be >= 0, got {n_images}.")
    return [{"role": "user", "content": [*({"type": "image"} for _ in range(n_images)),
                                         {"type": "text", "text": text}]}]


def make_row(*, image: Any, text: str, solution: Any, answer_type: str, mode: str, question_type: str,
             image_id: str, m: int | None = None, n: int | None = None, instruct: bool = True, **extra: Any) -> Row:
    """Build a :class:`Row`: the one place every data builder makes its rows.

    Args:
        image: RGB PIL image or a list of them (one image slot each in the prompt).
        text: the full prompt text (question + the mode's instruction).
        solution, answer_type, question_type, image_id: see :class:`Row`.
        mode: a thinking-mode name (``jrl_core.modes.MODES``); the row carries no separate ``think`` flag.
        m, n: grid size, or None for rows without a grid.
        instruct: a chat prompt (instruct models) or the plain text (base models).
        extra: optional columns (``seed``, ``forward``, provenance).
    Raises:
        ValueError: an unknown mode, or only one of m, n given.
    """
    name = get_mode(mode).name
    if (m is None) != (n is None):
        raise ValueError(f"make_row: give both m and n (a grid) or neither, got m={m!r}, n={n!r}.")
    n_images = len(image) if isinstance(image, (list, tuple)) else 1
    row: Row = {"image": image, "prompt": chat_prompt(text, n_images) if instruct else text, "solution": solution,
                "answer_type": answer_type, "mode": name, "question_type": question_type, "image_id": image_id,
                "m": m, "n": n}
    row.update(extra)  # type: ignore[typeddict-item]
    return row


def prompt_id(row: Row) -> str:
    """The row's id in the completion log: its ``prompt_id`` when it has one, else ``"<image_id>:<seed>"``
    (what :func:`jrl_core.train.to_dataset` gives the trainer; the G rollouts of one prompt share it)."""
    return str(row.get("prompt_id") or f"{row.get('image_id', '')}:{row.get('seed', '')}")


def prompt_text(row: Row) -> str:
    """The text of a row's prompt (chat or plain)."""
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return prompt
    return "".join(part.get("text", "") for msg in prompt for part in msg.get("content", []) if isinstance(part, dict))
