"""The offline generalization suite (nano analogue of Jigsaw-R1 Tables 2 and 3)."""

import collections
import string

import pytest

from jrl_core import generalization, nano, perception, rewards
from jrl_core.images import SKIMAGE_TEST
from jrl_core.modes import get_mode


def test_suite_covers_every_pretraining_task_as_seen():
    seen = {t for e in generalization.SUITE.values() if e.seen_in_pretraining for t in e.tasks}
    assert seen == set(perception.DEFAULT_TASKS)


def test_suite_has_families_the_pretraining_never_saw():
    unseen = [e for e in generalization.SUITE.values() if not e.seen_in_pretraining]
    assert unseen and all(not set(e.tasks) & set(perception.DEFAULT_TASKS) for e in unseen)
    covered = {t for e in generalization.SUITE.values() for t in e.tasks}
    assert covered == set(perception.TASKS) | set(generalization.EXTRA_TASKS)
    assert not set(generalization.EXTRA_TASKS) & set(perception.TASKS)


def test_rows_use_the_held_out_test_photos(monkeypatch):
    splits = []
    real = generalization.load_photos

    def spy(source, split):
        splits.append(split)
        return real(source, split)

    monkeypatch.setattr(generalization, "load_photos", spy)
    rows = generalization.suite_rows("upside_down", 4, image_size=56)
    assert splits == ["test"] and len(rows) == 4
    assert {p.image_id for p in real("skimage", "test")} == set(SKIMAGE_TEST)


def test_non_thinking_prompts_are_the_pretraining_wording():
    rows = generalization.suite_rows("same_photo", 4, image_size=56)
    items = perception.make_items(generalization.load_photos("skimage", "test"), 4,
                                  seed=generalization.SEED_OFFSET, tasks=perception.DEFAULT_TASKS[:2], size=56)
    for row, item in zip(rows, items, strict=True):
        assert row["prompt"][0]["content"] == [{"type": "image"}, {"type": "text", "text": item.prompt_text()}]
        assert row["solution"] == item.answer and row["task"] == item.task


def test_thinking_rows_ask_for_think_and_answer_tags():
    row = generalization.suite_rows("brighter", 1, think=True, image_size=56)[0]
    assert "think" not in row and row["mode"] == "thinking"
    assert row["m"] is None and row["n"] is None  # no grid
    assert row["prompt"][0]["content"][1]["text"].endswith(get_mode("thinking").suffix("letter"))


def test_rows_are_scored_as_letters():
    rows = generalization.suite_rows("count_shapes", 8, image_size=56)
    cols = {k: [r[k] for r in rows] for k in ("solution", "answer_type", "m", "n", "mode")}
    assert rewards.accuracy_reward([r["solution"] for r in rows], **cols) == [1.0] * 8
    wrong = [string.ascii_uppercase[(string.ascii_uppercase.index(r["solution"]) + 1) % r["n_choices"]] for r in rows]
    assert rewards.accuracy_reward(wrong, **cols) == [0.0] * 8
    assert all(r["random"] == 0.25 and r["answer_type"] == "letter" for r in rows)


def test_rows_are_deterministic_per_seed():
    a = generalization.suite_rows("quadrant_tint", 6, seed=3, image_size=56)
    b = generalization.suite_rows("quadrant_tint", 6, seed=3, image_size=56)
    c = generalization.suite_rows("quadrant_tint", 6, seed=4, image_size=56)
    assert [r["solution"] for r in a] == [r["solution"] for r in b]
    assert all(x["image"].tobytes() == y["image"].tobytes() for x, y in zip(a, b, strict=True))
    assert any(x["image"].tobytes() != y["image"].tobytes() for x, y in zip(a, c, strict=True))


def test_new_family_bigger_shape_is_balanced_and_answerable():
    rows = generalization.suite_rows("bigger_shape", 40, image_size=56)
    counts = collections.Counter(r["solution"] for r in rows)
    assert set(counts) == {"A", "B"} and min(counts.values()) >= 10
    for r in rows[:10]:
        px = r["image"].load()
        w, h = r["image"].size
        red = sum(px[x, y] == perception.COLOURS["red"] for x in range(w) for y in range(h))
        blue = sum(px[x, y] == perception.COLOURS["blue"] for x in range(w) for y in range(h))
        choices = r["prompt"][0]["content"][1]["text"]
        bigger = "the red square" if red > blue else "the blue circle"
        assert f"({r['solution']}) {bigger}" in choices


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match="same_photo"):
        generalization.suite_rows("imagenet", 2, image_size=56)


def test_evaluate_suite_reports_accuracy_chance_and_seen_flags(nano_dir):
    model, processor = nano.load_model(str(nano_dir))
    assert generalization.pretrained_tasks(model) == perception.DEFAULT_TASKS
    df = generalization.evaluate_suite(model, processor, ["brighter", "count_shapes"], n_items=4, image_size=56,
                                       progress=False)
    assert list(df["suite"]) == ["brighter", "count_shapes", "SEEN", "UNSEEN"]
    assert list(df["seen"]) == [True, False, True, False]
    assert list(df["random"]) == [0.5, 0.25, 0.5, 0.25]
    assert (df["n"] == 4).all() and df["accuracy"].between(0, 1).all()
    first = df.iloc[0]
    assert first["ci_low"] <= first["accuracy"] <= first["ci_high"]
    custom = generalization.evaluate_suite(model, processor, ["count_shapes"], n_items=2, image_size=56,
                                           seen_tasks=["count_shapes"], progress=False)
    assert list(custom["suite"]) == ["count_shapes", "SEEN"] and custom["seen"].all()


def test_group_mean_reads_the_seen_and_unseen_rows():
    import pandas as pd

    from jrl_core.generalization import group_mean

    t = pd.DataFrame({"suite": ["brighter", "SEEN", "UNSEEN"], "accuracy": [0.9, 0.9, 0.4]})
    assert group_mean(t, "UNSEEN") == 0.4 and group_mean(t, "SEEN") == 0.9
    assert group_mean(t.iloc[:2], "UNSEEN") is None


def test_evaluate_suite_per_question_items_match_the_family_accuracy_and_cluster_by_photo(nano_dir):
    from jrl_core import stats

    model, processor = nano.load_model(str(nano_dir))
    df, items = generalization.evaluate_suite(model, processor, ["brighter", "count_shapes"], n_items=6,
                                              image_size=56, progress=False, return_items=True)
    assert len(items) == 12 and list(items["suite"].unique()) == ["brighter", "count_shapes"]
    for fam in ("brighter", "count_shapes"):
        assert items.loc[items["suite"] == fam, "correct"].mean() == pytest.approx(
            df.loc[df["suite"] == fam, "accuracy"].item())
    assert items["image_id"].is_unique
    test_photos = {p.image_id for p in generalization.load_photos("skimage", "test")}
    assert set(items["photo"]) <= test_photos and items["photo"].nunique() > 1
    assert [stats.photo_of(i) for i in items["image_id"]] == items["photo"].tolist()
    assert items.loc[items["suite"] == "count_shapes", "seen"].eq(False).all()
