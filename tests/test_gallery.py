"""The puzzle gallery (jrl_core.gallery): every question type and mode, text escaped."""

from __future__ import annotations

import numpy as np
from PIL import Image

from jrl_core.gallery import gallery_html, gallery_rows
from jrl_core.modes import MODES
from jrl_core.puzzles import QUESTION_TYPES


def test_gallery_covers_every_question_type_and_mode_and_escapes_text():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    rows = gallery_rows(image)
    assert {r["question_type"] for r in rows} == set(QUESTION_TYPES)
    assert {r["mode"] for r in rows} == set(MODES)
    page = gallery_html(rows, original=image, width=64)
    assert "&lt;think&gt;" in page and "<think>" not in page
    assert page.count("data:image/png;base64,") == len(rows) + 1
