"""One path from recipe to result: the RQ1 notebook and `jrl train` run the same recipe on the same data."""

from __future__ import annotations

import json

from jrl_core import cli, runs, study


def tiny_overrides(nano_dir) -> dict:
    return {"model": str(nano_dir), "seed": 2, "grpo.steps": 1, "grpo.prompts_per_step": 2,
            "grpo.num_generations": 2, "grpo.report_to": [], "n_test": 4}


def test_rq1_notebook_and_jrl_train_build_the_same_training_rows_and_heldout_set(nano_dir, tmp_path):
    over = tiny_overrides(nano_dir)
    spec = study.RunSpec(notebook="rq1_jigsaw.ipynb", name="rq1_same",
                         parameters={"recipe": "nano/rq1_2x1_pair", "overrides": over, "seeds": [2],
                                     "grid_sizes": []})
    result = study.execute_run(spec, reports_dir=tmp_path / "reports", progress=False)
    assert result.ok, result.error
    sets = [f"{k}={json.dumps(v)}" for k, v in over.items()]
    args = ["train", "--recipe", "nano/rq1_2x1_pair", "--out", str(tmp_path / "cli")]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0
    from_notebook = runs.read_metrics(tmp_path / "reports" / "rq1_same" / "seed2")["metrics"]
    from_cli = runs.read_metrics(tmp_path / "cli")["metrics"]
    assert from_notebook["train_rows_sha256"] == from_cli["train_rows_sha256"]
    assert from_notebook["heldout_sha256"] == from_cli["heldout_sha256"]
    assert from_notebook["acc_before"] == from_cli["acc_before"]  # same base model on the same set
    assert from_notebook["view_size"] == from_cli["view_size"] == 56  # the tiny processor's input side


def test_another_seed_trains_on_other_rows_but_keeps_the_heldout_set(nano_dir, tmp_path):
    from jrl_core import experiment, nano

    _, processor = nano.load_model(str(nano_dir))
    size = nano.view_size(processor)
    a = experiment.load_recipe("nano/rq1_2x1_pair", {"seed": 0, "n_test": 6})
    b = experiment.load_recipe("nano/rq1_2x1_pair", {"seed": 1, "n_test": 6})
    rows = {e.seed: experiment.rows_digest(experiment.train_rows(e, steps=2, prompts_per_step=3, view_size=size))
            for e in (a, b)}
    assert rows[0] != rows[1]
    assert experiment.rows_digest(experiment.heldout_rows(a, view_size=size)) == \
        experiment.rows_digest(experiment.heldout_rows(b, view_size=size))


def test_nano_recipes_train_on_photos_and_procedural_pictures_and_test_on_photos_only():
    """The nano default source adds dead-leaves pictures (three in seven training puzzles) and as many walls
    to the training puzzles and keeps the held-out set byte-identical to the photos-only source's."""
    from jrl_core import experiment

    default = experiment.load_recipe("nano/rq1_2x1_pair", {"n_test": 6})
    photos_only = experiment.load_recipe("nano/rq1_2x1_pair", {"n_test": 6, "photo_source": "skimage"})
    assert default.photo_source == "skimage+synthetic+tiling"
    train = experiment.train_rows(default, steps=2, prompts_per_step=49, view_size=56)
    share = {kind: sum(r["image_id"].startswith(f"{kind}/") for r in train) / len(train)
             for kind in ("synthetic", "tiling")}
    assert 0.35 < share["synthetic"] < 0.5 and 0.35 < share["tiling"] < 0.5
    assert not any(r["image_id"].startswith(("synthetic/", "tiling/"))
                   for r in experiment.train_rows(photos_only, steps=2, prompts_per_step=28, view_size=56))
    assert experiment.rows_digest(experiment.heldout_rows(default, view_size=56)) == \
        experiment.rows_digest(experiment.heldout_rows(photos_only, view_size=56))
