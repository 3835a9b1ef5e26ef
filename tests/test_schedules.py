"""The step-keyed size curriculum (jrl_core.schedules; protocol §6, Jigsaw-R1 Table 3)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jrl_core.images import Photo
from jrl_core.puzzles import PuzzleSpec
from jrl_core.schedules import Curriculum, curriculum_row, curriculum_rows

PHOTOS = [Photo(f"p{i}", Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)))
          for i in range(3)]


def fingerprint(row: dict) -> tuple:
    return (row["step"], row["index"], row["m"], row["n"], row["solution"], repr(row["prompt"]), row["image"].tobytes())


def test_size_follows_the_global_step():
    cur = Curriculum(((3, 1), (4, 1), (2, 2)), (1000, 1500))
    assert [cur.size_at(s) for s in (0, 999, 1000, 1499, 1500, 10**6)] == [(3, 1), (3, 1), (4, 1), (4, 1), (2, 2), (2, 2)]


def test_parse_reads_sizes_and_boundaries():
    assert Curriculum.parse("3x1:1000,4x1") == Curriculum(((3, 1), (4, 1)), (1000,))


@pytest.mark.parametrize(("sizes", "boundaries", "match"), [
    ((), (), "empty"), (((1, 1),), (), "m\\*n"), (((2, 1), (3, 1)), (), "boundaries"),
    (((2, 1), (3, 1), (4, 1)), (5, 5), "increasing"),
])
def test_curriculum_rejects_bad_definitions(sizes, boundaries, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(sizes, boundaries)


def test_resumed_curriculum_at_step_k_equals_the_uninterrupted_run():
    spec = PuzzleSpec(m=2, n=1, question_type="pair", shuffle_mn=True)
    cur = Curriculum(((2, 1), (3, 1), (2, 2)), (2, 4))
    full = curriculum_rows(PHOTOS, spec, cur, seed=5, prompts_per_step=3, steps=6, view_size=24)
    for k in (1, 2, 3, 5):
        resumed = curriculum_rows(PHOTOS, spec, cur, seed=5, prompts_per_step=3, steps=6, start_step=k,
                                  view_size=24)
        assert [fingerprint(r) for r in resumed] == [fingerprint(r) for r in full[3 * k:]]
    assert {(r["step"], tuple(sorted((r["m"], r["n"])))) for r in full} == {
        (0, (1, 2)), (1, (1, 2)), (2, (1, 3)), (3, (1, 3)), (4, (2, 2)), (5, (2, 2))}


def test_row_is_a_pure_function_of_seed_index_step():
    spec = PuzzleSpec(m=2, n=2, question_type="full", think=True)
    cur = Curriculum(((2, 2),))
    a = curriculum_row(PHOTOS, spec, cur, seed=1, index=7, step=2, view_size=24)
    b = curriculum_row(PHOTOS, spec, cur, seed=1, index=7, step=2, view_size=24)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(curriculum_row(PHOTOS, spec, cur, seed=1, index=8, step=2, view_size=24))


def test_rows_are_cut_at_the_view_size_and_vary_with_the_seed():
    spec = PuzzleSpec(m=2, n=1)
    cur = Curriculum(((2, 1),))
    a = curriculum_rows(PHOTOS, spec, cur, seed=0, prompts_per_step=2, steps=2, view_size=24)
    assert all(r["image"].size == (24, 24) for r in a)
    b = curriculum_rows(PHOTOS, spec, cur, seed=1, prompts_per_step=2, steps=2, view_size=24)
    assert [fingerprint(r) for r in a] != [fingerprint(r) for r in b]


def test_rows_without_pixels_have_the_rendered_rows_prompts_solutions_and_ids():
    from jrl_core import experiment

    exp = experiment.load_recipe("nano/rq1_2x1_pair", {"seed": 3})
    rendered = experiment.train_rows(exp, steps=3, prompts_per_step=4, view_size=42)
    blank = experiment.train_rows(exp, steps=3, prompts_per_step=4, view_size=42, render=False)
    assert len(blank) == len(rendered) == 12
    for a, b in zip(rendered, blank, strict=True):
        assert a.keys() == b.keys()
        assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}
        assert b["image"].size == a["image"].size and b["image"].getbbox() is None  # black, same size
