"""Single, multiple and box questions, bad input, and the prompt text of every question type
(jrl_core.puzzles; protocol §1-3, Jigsaw-R1 App. A.2)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jrl_core.puzzles import (
    BoxPuzzle,
    PuzzleSpec,
    build_prompt_text,
    grid_text,
    make_box_puzzle,
    make_grid_puzzle,
    make_row,
    question_text,
    reassemble_box,
)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def row_text(row: dict) -> str:
    return row["prompt"][0]["content"][1]["text"]


HEADER_2X2 = """\
The input image is divided into 2x2 patches that have been randomly permuted from their original positions. \
Your task is to solve this 2x2 jigsaw puzzle and reconstruct the original image.

Consider a 2x2 grid, where each number represents a position index ranging from 1 (top-left) to 4 (bottom-right):

```
1 2
3 4
```

"""
THINKING = (
    "\n\nFirst, output the thinking process within <think> </think> tags. "
    "Then, provide the final answer within <answer> </answer> tags. "
)
NON_THINKING = "\n\nDirectly output the final answer. "


# ---------------------------------------------------------------- prompt text of every type (§3)


def test_prompt_full_backward_non_thinking():
    spec = PuzzleSpec(m=2, n=2, question_type="full", forward=False)
    assert build_prompt_text(question_text(2, 2, "full", forward=False), spec) == (
        HEADER_2X2 + 'For each position, determine which patch should belong there. If a patch currently at position X '
        'should belong at position Y, place "X" at position Y.'
        "\n\nDirectly output the final answer. The final answer should be the position indexes arranged in a 2x2 grid."
    )


def test_prompt_single_forward_thinking():
    spec = PuzzleSpec(m=2, n=2, question_type="single", think=True)
    assert build_prompt_text(question_text(2, 2, "single", k=3), spec) == (
        HEADER_2X2 + "For the patch currently at position 3, determine its correct position index in the original image."
        + THINKING + "The final answer should be a single number."
    )


def test_prompt_single_backward_non_thinking():
    spec = PuzzleSpec(m=2, n=2, question_type="single", forward=False)
    assert build_prompt_text(question_text(2, 2, "single", forward=False, k=2), spec) == (
        HEADER_2X2 + "Determine which patch belongs at position 2 in the original image."
        + NON_THINKING + "The final answer should be a single number."
    )


def test_prompt_multiple_lists_grids_as_lettered_blocks():
    spec = PuzzleSpec(m=2, n=2, question_type="multiple")
    question = question_text(2, 2, "multiple", choices=["4 3\n2 1", "1 2\n3 4"])
    assert build_prompt_text(question, spec) == (
        HEADER_2X2 + 'For each patch, determine its correct position index in the original image. If a patch currently '
        'at position X should belong at position Y, place "Y" at position X.\n\n'
        "Select the correct answer from the following 2 choices:\n\n(A)\n4 3\n2 1\n\n(B)\n1 2\n3 4"
        + NON_THINKING + "The final answer should be a single letter."
    )


def test_prompt_box_thinking():
    spec = PuzzleSpec(m=1, n=3, question_type="box", think=True)
    assert build_prompt_text(question_text(1, 3, "box", k=2), spec) == (
        "The input image is divided into 1x3 regions. Consider a 1x3 grid, where each number represents a region "
        "index ranging from 1 (left) to 3 (right):\n\n```\n1 2 3\n```\n\n"
        "Some patches of equal size have been randomly swapped from their original positions, resulting in an "
        "unnatural appearance. Your task is to find the original location of the patch that currently belongs in "
        "region 2." + THINKING
        + "The final answer should be bounding box coordinates, formatted as integers and separated by comma."
    )


def test_prompt_box_masked_sentence():
    assert question_text(2, 1, "box", k=1, masked=True).startswith(
        "The input image is divided into 2x1 regions and the borders of each region have been masked out. "
        "Consider a 2x1 grid, where each number represents a region index ranging from 1 (top) to 2 (bottom):"
    )


def test_question_text_rejects_unknown_type_and_missing_k():
    with pytest.raises(ValueError, match="unknown"):
        question_text(2, 1, "triple")
    with pytest.raises(ValueError, match="k"):
        question_text(2, 1, "single")


# ---------------------------------------------------------------- single (§2)


@pytest.mark.parametrize("forward", [True, False])
def test_single_solution_is_the_asked_patch_index(forward):
    image = noise_image(40, 40)
    for seed in range(20):
        row = make_row(image, PuzzleSpec(m=2, n=2, question_type="single", forward=forward), seed=seed)
        k = int(re.search(r"position (\d+)", row_text(row).split("```")[-1]).group(1))
        puzzle = make_grid_puzzle(image, 2, 2, seed=seed)  # same RNG stream for the shuffle
        truth = puzzle.forward if forward else puzzle.backward
        assert row["solution"] == str(truth[k - 1]) and row["answer_type"] == "digit"


# ---------------------------------------------------------------- multiple (§2)


def test_multiple_has_n_c_distinct_grids_with_the_truth_at_the_solution_letter():
    image = noise_image(40, 40)
    letters = set()
    for seed in range(40):
        row = make_row(image, PuzzleSpec(m=2, n=2, question_type="multiple", n_c=5), seed=seed)
        blocks = dict(re.findall(r"\(([A-Z])\)\n((?:[0-9 ]+\n?){2})", row_text(row)))
        grids = {k: v.strip() for k, v in blocks.items()}
        assert sorted(grids) == list("ABCDE") and len(set(grids.values())) == 5
        puzzle = make_grid_puzzle(image, 2, 2, seed=seed)
        assert grids[row["solution"]] == grid_text(puzzle.forward, 2, 2)
        letters.add(row["solution"])
    assert letters == set("ABCDE")


def test_multiple_with_every_arrangement_as_candidate():
    row = make_row(noise_image(20, 20), PuzzleSpec(m=2, n=1, question_type="multiple", n_c=2), seed=3)
    assert "(A)\n" in row_text(row) and "(B)\n" in row_text(row)


# ---------------------------------------------------------------- box (App. A.2)


@settings(max_examples=30, deadline=None)
@given(mn=st.tuples(st.integers(1, 3), st.integers(1, 3)).filter(lambda t: t[0] * t[1] >= 2),
       seed=st.integers(0, 2**32), width=st.integers(12, 50), height=st.integers(12, 50))
def test_box_patches_all_move_and_reassemble_exactly(mn, seed, width, height):
    m, n = mn
    puzzle = make_box_puzzle(noise_image(width, height, seed % 13), m, n, seed=seed)
    assert isinstance(puzzle, BoxPuzzle)
    assert sorted(puzzle.forward) == list(range(1, m * n + 1))
    assert all(j != i for i, j in enumerate(puzzle.forward, start=1))
    rw, rh = puzzle.original.width // n, puzzle.original.height // m
    for p, (x1, y1, x2, y2) in enumerate(puzzle.boxes, start=1):
        row, col = divmod(p - 1, n)
        assert col * rw <= x1 < x2 <= (col + 1) * rw and row * rh <= y1 < y2 <= (row + 1) * rh
    assert reassemble_box(puzzle).tobytes() == puzzle.original.tobytes()


def test_box_solution_is_where_the_patch_in_region_k_came_from():
    image = noise_image(60, 40, 4)
    for seed in range(10):
        row = make_row(image, PuzzleSpec(m=2, n=3, question_type="box"), seed=seed)
        k = int(re.search(r"belongs in region (\d+)\.", row_text(row)).group(1))
        x1, y1, x2, y2 = map(int, row["solution"].split(","))
        puzzle = make_box_puzzle(image, 2, 3, seed=seed)
        assert puzzle.image.tobytes() == row["image"].tobytes()
        now = row["image"].crop(puzzle.boxes[k - 1])
        assert now.tobytes() == image.crop((x1, y1, x2, y2)).tobytes()
        assert row["answer_type"] == "box"


# ---------------------------------------------------------------- bad input (§1)


def test_grayscale_rgba_palette_16bit_images_are_converted():
    base = noise_image(24, 24)
    for image in (base.convert("L"), base.convert("RGBA"), base.convert("P"),
                  Image.fromarray(np.full((24, 24), 65535, dtype=np.uint16))):
        row = make_row(image, PuzzleSpec(m=2, n=2, question_type="full"), seed=0)
        assert row["image"].mode == "RGB" and row["image"].size == (24, 24)


def test_exif_rotated_image_is_made_upright():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    noise_image(40, 20).save(buf, format="JPEG", exif=exif)
    image = Image.open(io.BytesIO(buf.getvalue()))
    assert image.size == (40, 20)
    puzzle = make_grid_puzzle(image, 2, 1, seed=0)
    assert puzzle.original.size == (20, 40)


def test_image_smaller_than_grid_names_size_and_fix():
    with pytest.raises(ValueError, match=r"3x3 px is too small for a 2x2 grid.*larger image"):
        make_row(noise_image(3, 3), PuzzleSpec(m=2, n=2, question_type="box"), seed=0)


def test_non_image_input_names_the_fix():
    with pytest.raises(ValueError, match="PIL.Image.open"):
        make_row(np.zeros((8, 8, 3)), PuzzleSpec(), seed=0)
