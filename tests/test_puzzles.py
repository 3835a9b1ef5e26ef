"""Grid puzzles, questions, prompts and baselines (jrl_core.puzzles, jrl_core.modes; protocol §1-3, §5)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jrl_core.images import Photo
from jrl_core.modes import MODES, get_mode
from jrl_core.puzzles import (
    PuzzleSpec,
    build_prompt_text,
    build_rows,
    grid_text,
    item_seed,
    make_grid_puzzle,
    make_row,
    question_text,
    random_baseline,
    reassemble,
)

REPO = Path(__file__).resolve().parents[1]


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def row_text(row: dict) -> str:
    return row["prompt"][0]["content"][1]["text"]


grid_sizes = st.tuples(st.integers(1, 4), st.integers(1, 4)).filter(lambda mn: mn[0] * mn[1] >= 2)


# ---------------------------------------------------------------- puzzle construction (§1)


@settings(max_examples=60, deadline=None)
@given(mn=grid_sizes, seed=st.integers(0, 2**32))
def test_forward_is_a_permutation_and_backward_its_inverse(mn, seed):
    m, n = mn
    puzzle = make_grid_puzzle(noise_image(24, 24), m, n, seed=seed)
    assert sorted(puzzle.forward) == list(range(1, m * n + 1))
    for x, y in enumerate(puzzle.forward, start=1):
        assert puzzle.backward[y - 1] == x


@settings(max_examples=40, deadline=None)
@given(mn=grid_sizes, width=st.integers(8, 61), height=st.integers(8, 61), seed=st.integers(0, 2**32))
def test_reassemble_equals_original_pixel_for_pixel(mn, width, height, seed):
    m, n = mn
    puzzle = make_grid_puzzle(noise_image(width, height, seed % 97), m, n, seed=seed)
    assert puzzle.original.size == (width - width % n, height - height % m)
    assert puzzle.image.size == puzzle.original.size
    assert reassemble(puzzle).tobytes() == puzzle.original.tobytes()


def test_patch_now_at_x_comes_from_original_position_forward_x():
    puzzle = make_grid_puzzle(noise_image(30, 20), 2, 3, seed=5)
    pw, ph = puzzle.patch_size
    for x, y in enumerate(puzzle.forward, start=1):
        rx, cx = divmod(x - 1, 3)
        ry, cy = divmod(y - 1, 3)
        now = puzzle.image.crop((cx * pw, rx * ph, (cx + 1) * pw, (rx + 1) * ph))
        was = puzzle.original.crop((cy * pw, ry * ph, (cy + 1) * pw, (ry + 1) * ph))
        assert now.tobytes() == was.tobytes()


def test_image_too_small_for_grid_raises_naming_fix():
    with pytest.raises(ValueError, match="too small"):
        make_grid_puzzle(noise_image(7, 40), 1, 4, seed=0)  # 1 px wide patches
    make_grid_puzzle(noise_image(8, 40), 1, 4, seed=0)  # 2 px is enough


def test_mask_ratio_blacks_out_outer_borders():
    puzzle = make_grid_puzzle(Image.new("RGB", (40, 40), (200, 200, 200)), 2, 2, seed=0, mask_ratio=0.2)
    arr = np.asarray(puzzle.image)
    assert arr[0].max() == 0 and arr[:, 0].max() == 0  # outer border: 4 px
    assert arr[10, 10].min() == 200  # patch centre untouched


# ---------------------------------------------------------------- spec validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"m": 1, "n": 1}, "m\\*n"),
        ({"m": 0}, "PuzzleSpec.m"),
        ({"question_type": "jigsaw"}, "question_type"),
        ({"question_type": "box", "forward": False}, "forward"),
        ({"question_type": "full", "n_c": 4}, "n_c"),
        ({"question_type": "multiple", "m": 3, "n": 3, "n_c": 27}, "A-Z"),
        ({"question_type": "multiple", "m": 2, "n": 1, "n_c": 3}, "arrangements"),
        ({"mode": "cot"}, "mode"),
        ({"mode": "non_thinking", "think": True}, "think=True"),
        ({"question_type": "pair", "forward": False}, "forward"),
        ({"m": 2, "n": 2, "n_c": 2}, "n_c"),
        ({"mask_ratio": 0.7}, "mask_ratio"),
        ({"think": "yes"}, "think"),
    ],
)
def test_puzzle_spec_rejects_bad_fields_naming_them(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PuzzleSpec(**kwargs)


def test_get_mode_unknown_lists_known_modes():
    with pytest.raises(ValueError, match="non_thinking"):
        get_mode("cot")
    assert get_mode(True) is MODES["thinking"] and get_mode(False) is MODES["non_thinking"]


# ---------------------------------------------------------------- prompt text (§3)

EXPECTED_2X1_PAIR_NON_THINKING = """\
The input image is divided into 2x1 patches that have been randomly permuted from their original positions. \
Your task is to solve this 2x1 jigsaw puzzle and reconstruct the original image.

Consider a 2x1 grid, where each number represents a position index ranging from 1 (top) to 2 (bottom):

```
1
2
```

For patches currently at positions 2 and 1, determine their relative position in the original image.

Select the correct answer from the following 2 choices:

(A) 2 is directly below 1
(B) 2 is directly above 1

Directly output the final answer. The final answer should be a single letter."""

EXPECTED_2X2_FULL_THINKING = """\
The input image is divided into 2x2 patches that have been randomly permuted from their original positions. \
Your task is to solve this 2x2 jigsaw puzzle and reconstruct the original image.

Consider a 2x2 grid, where each number represents a position index ranging from 1 (top-left) to 4 (bottom-right):

```
1 2
3 4
```

For each patch, determine its correct position index in the original image. \
If a patch currently at position X should belong at position Y, place "Y" at position X.

First, output the thinking process within <think> </think> tags. \
Then, provide the final answer within <answer> </answer> tags. \
The final answer should be the position indexes arranged in a 2x2 grid."""


def test_prompt_text_2x1_pair_non_thinking_matches_protocol():
    spec = PuzzleSpec(m=2, n=1, question_type="pair", think=False)
    question = question_text(2, 1, "pair", k=2, l=1, choices=["2 is directly below 1", "2 is directly above 1"])
    assert build_prompt_text(question, spec) == EXPECTED_2X1_PAIR_NON_THINKING


def test_prompt_text_2x2_full_thinking_matches_protocol():
    spec = PuzzleSpec(m=2, n=2, question_type="full", think=True)
    assert build_prompt_text(question_text(2, 2, "full"), spec) == EXPECTED_2X2_FULL_THINKING


def test_base_model_prompt_is_plain_string_ending_in_think_tag():
    spec = PuzzleSpec(m=2, n=2, question_type="full", think=True)
    text = build_prompt_text(question_text(2, 2, "full"), spec, instruct=False)
    assert text == (
        "A conversation between User and Assistant. The user asks a question about the image, and the Assistant "
        "solves it.\n\nUser: " + EXPECTED_2X2_FULL_THINKING + "\n\nAssistant: <think>"
    )


def test_one_row_one_and_left_right_wording():
    question = question_text(1, 3, "full", forward=False, masked=True)
    assert "from 1 (left) to 3 (right):\n\n```\n1 2 3\n```" in question
    assert "the borders of each patch have been masked out." in question
    assert question.endswith('place "X" at position Y.')


def test_make_row_is_conversational_with_image_slot():
    row = make_row(noise_image(40, 40), PuzzleSpec(m=2, n=1), seed=1, image_id="x")
    assert row["prompt"][0]["role"] == "user"
    assert row["prompt"][0]["content"][0] == {"type": "image"}
    assert row_text(row).startswith("The input image is divided into 2x1 patches")
    assert row_text(row).endswith("Directly output the final answer. The final answer should be a single letter.")
    assert set(row) == {"image", "prompt", "solution", "answer_type", "m", "n", "question_type",
                        "image_id", "seed", "mode", "forward"}  # the mode is the row's only thinking setting


def test_full_row_solution_is_the_forward_grid():
    image = noise_image(40, 40)
    row = make_row(image, PuzzleSpec(m=2, n=2, question_type="full"), seed=11)
    puzzle = make_grid_puzzle(image, 2, 2, seed=11)  # same RNG stream when shuffle_mn is off
    assert row["solution"] == grid_text(puzzle.forward, 2, 2)
    assert row["answer_type"] == "grid"
    backward = make_row(image, PuzzleSpec(m=2, n=2, question_type="full", forward=False), seed=11)
    assert backward["solution"] == grid_text(puzzle.backward, 2, 2)


# ---------------------------------------------------------------- pair questions (§2)

RELATION = {
    (0, -1): "directly to the left of", (0, 1): "directly to the right of",
    (-1, 0): "directly above", (1, 0): "directly below",
    (-1, -1): "on the upper left of", (-1, 1): "on the upper right of",
    (1, -1): "on the lower left of", (1, 1): "on the lower right of",
}


def original_position(row: dict, original: Image.Image, x: int) -> tuple[int, int]:
    """(row, col) in the original image of the patch now at x, found by pixel comparison."""
    m, n = row["m"], row["n"]
    pw, ph = original.width // n, original.height // m
    rx, cx = divmod(x - 1, n)
    patch = row["image"].crop((cx * pw, rx * ph, (cx + 1) * pw, (rx + 1) * ph)).tobytes()
    for r in range(m):
        for c in range(n):
            if original.crop((c * pw, r * ph, (c + 1) * pw, (r + 1) * ph)).tobytes() == patch:
                return r, c
    raise AssertionError("patch not found in the original")


@pytest.mark.parametrize("mn", [(2, 1), (3, 1), (1, 3), (2, 2), (3, 3)])
def test_pair_answer_is_the_true_relation_in_the_original_image(mn):
    image = noise_image(36, 36, seed=2)
    spec = PuzzleSpec(m=mn[0], n=mn[1], question_type="pair", shuffle_mn=True)
    for seed in range(25):
        row = make_row(image, spec, seed=seed)
        text = row_text(row)
        k, l = map(int, re.search(r"positions (\d+) and (\d+),", text).groups())  # noqa: E741
        choices = dict(re.findall(r"^\(([A-H])\) (.*)$", text, flags=re.M))
        assert len(choices) == (2 if 1 in (row["m"], row["n"]) else 8)
        rk, ck = original_position(row, image, k)
        rl, cl = original_position(row, image, l)
        key = ((rk > rl) - (rk < rl), (ck > cl) - (ck < cl))
        assert choices[row["solution"]] == f"{k} is {RELATION[key]} {l}"


def test_shuffle_mn_swaps_about_half_and_prompt_follows():
    image = noise_image(40, 40)
    rows = [make_row(image, PuzzleSpec(m=2, n=1, question_type="full", shuffle_mn=True), seed=s) for s in range(200)]
    swapped = sum(r["m"] == 1 for r in rows)
    assert 70 < swapped < 130
    for r in rows[:20]:
        assert f"divided into {r['m']}x{r['n']} patches" in row_text(r)
        assert r["image"].size == (40, 40)


def test_build_rows_round_robin_and_letters_cover_all_choices():
    photos = [Photo(f"p{i}", noise_image(32, 32, i)) for i in range(3)]
    rows = build_rows(photos, PuzzleSpec(m=2, n=2, question_type="pair"), n_items=80, seed=0)
    assert [r["image_id"] for r in rows[:4]] == ["p0", "p1", "p2", "p0"]
    assert rows[5]["seed"] == item_seed(0, 5)
    assert {r["solution"] for r in rows} == set("ABCDEFGH")


# ---------------------------------------------------------------- determinism

DETERMINISM_SCRIPT = """
import hashlib
from PIL import Image
import numpy as np
from jrl_core.images import Photo
from jrl_core.puzzles import PuzzleSpec, build_rows
rng = np.random.default_rng(0)
photos = [Photo(f"p{i}", Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))) for i in range(3)]
h = hashlib.sha256()
for spec in (PuzzleSpec(m=2, n=2, question_type="pair", shuffle_mn=True),
             PuzzleSpec(m=3, n=1, question_type="full", think=True, shuffle_mn=True),
             PuzzleSpec(m=2, n=2, question_type="single", forward=False, mode="cls_rl_thinking"),
             PuzzleSpec(m=2, n=3, question_type="multiple", n_c=6, mode="think_after_answer"),
             PuzzleSpec(m=2, n=2, question_type="box", mask_ratio=0.1, mode="no_thinking_rl")):
    for r in build_rows(photos, spec, n_items=12, seed=7):
        h.update(repr((r["prompt"], r["solution"], r["m"], r["n"], r["seed"])).encode())
        h.update(r["image"].tobytes())
print(h.hexdigest())
"""


def test_rows_are_identical_across_processes():
    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], cwd=REPO, env=env,
                             capture_output=True, text=True, check=True)
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64


# ---------------------------------------------------------------- random baselines (§5; Tables 1, 7)

SIZES = [(2, 1), (3, 1), (4, 1), (2, 2)]


def paper_round(percent: float) -> float:
    """Round half up to two decimals, as the paper's tables do (40.625 -> 40.63)."""
    return float(Decimal(repr(percent)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_random_baseline_pair_matches_table_1():
    values = [100 * random_baseline("pair", m, n) for m, n in SIZES]
    assert values == [50.0, 50.0, 50.0, 12.5]
    assert paper_round(sum(values) / 4) == 40.63


def test_random_baseline_full_matches_table_7():
    values = [100 * random_baseline("full", m, n) for m, n in SIZES]
    assert [paper_round(v) for v in values] == [50.0, 16.67, 4.17, 4.17]
    assert paper_round(sum(values) / 4) == 18.75


def test_random_baseline_single_and_multiple_and_box():
    assert random_baseline("single", 2, 2) == 0.25
    assert random_baseline("multiple", 2, 2) == 0.25 and random_baseline("multiple", 2, 2, n_c=8) == 0.125
    with pytest.raises(ValueError):
        random_baseline("box", 2, 2)


def test_every_row_builder_uses_one_schema():
    """Puzzle, perception-suite and benchmark rows share the keys of jrl_core.rows (no `think`, m/n only on grids)."""
    from jrl_core import downstream, generalization, rows

    puzzle = make_row(noise_image(40, 40), PuzzleSpec(m=2, n=1, mode="thinking"), seed=1, image_id="x")
    suite = generalization.suite_rows("brighter", 1, mode="thinking", image_size=56)[0]
    bench = downstream.rows_from_dataset("cv_bench", [{"image": noise_image(40, 40), "prompt": "Which? (A) a (B) b",
                                                      "answer": "(A)"}], mode="thinking")[0]
    for row in (puzzle, suite, bench):
        assert set(rows.REQUIRED) <= set(row) and "think" not in row and row["mode"] == "thinking"
        assert rows.prompt_text(row).endswith(get_mode("thinking").suffix(row["answer_type"]))
    assert (puzzle["m"], puzzle["n"]) == (2, 1) and suite["m"] is None and bench["n"] is None
