"""Perception questions: labelled, deterministic, never jigsaw questions."""

import string

import pytest
from PIL import ImageStat

from jrl_core import perception
from jrl_core.images import load_photos


@pytest.fixture(scope="module")
def photos():
    return load_photos("skimage", "train")


def test_items_are_deterministic_for_a_seed(photos):
    a = perception.make_items(photos, 12, seed=3, size=56)
    b = perception.make_items(photos, 12, seed=3, size=56)
    assert [(x.prompt_text(), x.answer) for x in a] == [(y.prompt_text(), y.answer) for y in b]
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b, strict=True))


def test_every_task_answers_with_a_listed_letter(photos):
    items = perception.make_items(photos, 4 * len(perception.TASKS), seed=0, tasks=list(perception.TASKS), size=56)
    for it in items:
        assert it.answer in string.ascii_uppercase[: len(it.choices)]
        assert f"({it.answer}) " in it.prompt_text()


def test_brighter_half_label_matches_the_pixels(photos):
    for it in perception.make_items(photos, 20, seed=1, tasks=["brighter_v"], size=56):
        w, h = it.image.size
        top = ImageStat.Stat(it.image.crop((0, 0, w, h // 2)).convert("L")).mean[0]
        bottom = ImageStat.Stat(it.image.crop((0, h // 2, w, h)).convert("L")).mean[0]
        truth = "the top half" if top > bottom else "the bottom half"
        assert it.choices[string.ascii_uppercase.index(it.answer)] == truth


def test_grid_relation_answers_follow_the_layout(photos):
    for it in perception.make_items(photos, 30, seed=2, tasks=["grid_relation"], size=56):
        chosen = it.choices[string.ascii_uppercase.index(it.answer)]
        k, rel_l = chosen.split(" ", 1)
        if it.prompt_text().startswith("Consider a 2x1 grid"):
            assert ("above" in chosen) == (int(k) < int(chosen.split()[-1]))


def test_no_question_is_a_jigsaw_question(photos):
    for it in perception.make_items(photos, 60, seed=4, size=56):
        text = it.prompt_text().lower()
        assert "jigsaw" not in text and "permuted" not in text and "original" not in text


def test_unknown_task_is_named_in_the_error(photos):
    with pytest.raises(ValueError, match="no_such_task"):
        perception.make_items(photos, 2, seed=0, tasks=["no_such_task"])


def _seam_jump(img, axis):
    """Mean absolute pixel change across the middle seam (rows for "v", columns for "h")."""
    import numpy as np

    a = np.asarray(img.convert("L"), dtype=float)
    if axis == "h":
        a = a.T
    h = a.shape[0] // 2
    return np.abs(a[h - 1] - a[h]).mean()


@pytest.mark.parametrize("axis", ["v", "h"])
def test_continuity_negatives_break_the_seam_and_positives_are_the_view(photos, axis):
    """A "no" item differs from the plain view only in one half, and its seam jumps more on
    average than the seams of "yes" items (one unbroken photo)."""
    items = perception.make_items(photos, 40, seed=5, tasks=[f"continuity_{axis}"], size=56)
    plain = perception.make_items(photos, 40, seed=5, tasks=["grid_relation"], size=56)  # same views, unedited
    yes, no = [], []
    for it, ref in zip(items, plain, strict=True):
        unbroken = it.choices[string.ascii_uppercase.index(it.answer)] == "yes"
        assert it.question == "Is this image one unbroken photo?"
        if unbroken:
            assert it.image.tobytes() == ref.image.tobytes()
            yes.append(_seam_jump(it.image, axis))
        else:
            w, h = it.image.size
            halves = [(0, 0, w, h // 2), (0, h // 2, w, h)] if axis == "v" else [(0, 0, w // 2, h), (w // 2, 0, w, h)]
            kept = [it.image.crop(b).tobytes() == ref.image.crop(b).tobytes() for b in halves]
            assert sum(kept) == 1  # exactly one half replaced
            no.append(_seam_jump(it.image, axis))
    assert yes and no
    assert sum(no) / len(no) > sum(yes) / len(yes)
