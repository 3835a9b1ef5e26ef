"""The puzzle gallery (Jigsaw-R1 Fig. 1): every question type and thinking mode on one photo, with
its image, prompt and correct answer, as one self-contained HTML block.

All text goes through ``html.escape``; images are embedded as base64 PNG.
"""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from jrl_core.modes import MODES
from jrl_core.puzzles import PuzzleSpec, make_row

__all__ = ["GALLERY_CASES", "gallery_html", "gallery_rows"]

#: (label, spec, instruct) for each gallery entry: every question type (thinking mode), both
#: permutation directions, masking, then every thinking mode on the 2x1 pair question, then a
#: base-model prompt.
GALLERY_CASES: tuple[tuple[str, PuzzleSpec, bool], ...] = (
    ("full 2x2, forward", PuzzleSpec(m=2, n=2, question_type="full", think=True), True),
    ("full 2x2, backward", PuzzleSpec(m=2, n=2, question_type="full", think=True, forward=False), True),
    ("full 3x3, masked borders", PuzzleSpec(m=3, n=3, question_type="full", think=True, mask_ratio=0.1), True),
    ("pair 2x2", PuzzleSpec(m=2, n=2, question_type="pair", think=True), True),
    ("single 2x2, forward", PuzzleSpec(m=2, n=2, question_type="single", think=True), True),
    ("single 2x2, backward", PuzzleSpec(m=2, n=2, question_type="single", think=True, forward=False), True),
    ("multiple 2x2, 4 candidates", PuzzleSpec(m=2, n=2, question_type="multiple", think=True), True),
    ("box 2x2 (patch swap)", PuzzleSpec(m=2, n=2, question_type="box", think=True), True),
    *((f"pair 2x1, mode {name}", PuzzleSpec(m=2, n=1, question_type="pair", mode=name), True) for name in MODES),
    ("pair 2x1, base model, thinking", PuzzleSpec(m=2, n=1, question_type="pair", think=True), False),
)


def gallery_rows(image: Image.Image, *, seed: int = 0) -> list[dict]:
    """One :func:`~jrl_core.puzzles.make_row` per :data:`GALLERY_CASES` entry on ``image`` (seed
    ``seed + i`` for entry i), each with an added ``"label"``.

    Raises:
        ValueError: image too small for a 3x3 grid.
    """
    rows = []
    for i, (label, spec, instruct) in enumerate(GALLERY_CASES):
        row = make_row(image, spec, seed=seed + i, image_id="gallery", instruct=instruct)
        row["label"] = label
        rows.append(row)
    return rows


def _img(image: Image.Image, width: int) -> str:
    height = max(1, round(image.height * width / image.width))
    if image.width > width:  # a thumbnail keeps the report small
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    return f'<img src="data:image/png;base64,{b64}" width="{width}" height="{height}" alt="puzzle">'


def _pre(text: object) -> str:
    return f"<pre style='white-space:pre-wrap;margin:0;font-size:85%;text-align:left'>{html.escape(str(text))}</pre>"


def _prompt_text(row: dict) -> str:
    prompt = row["prompt"]
    return prompt if isinstance(prompt, str) else prompt[0]["content"][-1]["text"]


def gallery_html(rows: list[dict], original: Image.Image | None = None, *, width: int = 224) -> str:
    """An HTML table: label / mode, shuffled image, prompt, correct answer (escaped), optionally
    preceded by the original image.

    Args:
        rows: from :func:`gallery_rows` (or any :func:`make_row` rows; ``label`` optional).
        original: the unshuffled photo, shown first.
        width: image width in px.

    Returns:
        An HTML string (no scripts, no external resources).
    """
    parts = []
    if original is not None:
        parts.append(f"<p><b>original</b><br>{_img(original, width)}</p>")
    head = "<tr style='text-align:left'><th>question</th><th>image</th><th>prompt</th><th>correct answer</th></tr>"
    body = []
    for r in rows:
        label = r.get("label", r.get("question_type", ""))
        meta = f"{label}\nmode: {r.get('mode', '')}\nanswer type: {r.get('answer_type', '')}"
        body.append(
            f"<tr style='vertical-align:top;text-align:left'><td>{_pre(meta)}</td><td>{_img(r['image'], width)}</td>"
            f"<td>{_pre(_prompt_text(r))}</td><td>{_pre(r['solution'])}</td></tr>"
        )
    parts.append(f"<table border='1' style='border-collapse:collapse'>{head}{''.join(body)}</table>")
    return "\n".join(parts)
