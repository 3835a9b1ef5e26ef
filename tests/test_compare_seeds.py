"""Comparisons over seeds (experiment.compare_arms with seeds and contrasts) and the paired contrast statistics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from jrl_core import experiment, plots, report, runs, stats

# ------------------------------------------------------------------ paired contrast statistics (no model)

PHOTOS = [f"p{i}" for i in range(8)]


def simulate(rng, effect, *, seeds=3, per_photo=40, seed_sd=0.02):
    """Two arms on one held-out set: per-photo accuracies vary (clustered puzzles), arm A adds ``effect``."""
    ids = [f"{p}#{i}" for p in PHOTOS for i in range(per_photo)]
    photo_p = np.clip(rng.normal(0.45, 0.1, len(PHOTOS)), 0.1, 0.8)
    a, b = {}, {}
    for s in range(seeds):
        pb = np.repeat(photo_p + rng.normal(0, seed_sd), per_photo).clip(0, 1)
        pa = np.repeat(photo_p + effect + rng.normal(0, seed_sd), per_photo).clip(0, 1)
        b[s] = pd.DataFrame({"image_id": ids, "solution": "A", "correct": (rng.random(pb.size) < pb).astype(float)})
        a[s] = pd.DataFrame({"image_id": ids, "solution": "A", "correct": (rng.random(pa.size) < pa).astype(float)})
    return a, b


def test_paired_difference_interval_covers_the_true_difference_at_about_the_nominal_rate():
    rng, effect = np.random.default_rng(7), 0.1
    hits = 0
    for r in range(100):
        d = stats.paired_contrast(*simulate(rng, effect), n_boot=500, seed=r)["difference"]
        hits += d["low"] <= effect <= d["high"]
    assert hits >= 85, f"the 95% interval covered the true difference in {hits} of 100 repetitions"


@pytest.mark.parametrize(("effect", "direction", "expected"), [
    (0.3, 1, "reproduced"), (-0.3, 1, "contradicted"), (0.3, -1, "contradicted"), (-0.3, -1, "reproduced"),
])
def test_contrast_verdicts_follow_the_declared_direction(effect, direction, expected):
    res = stats.paired_contrast(*simulate(np.random.default_rng(3), effect), direction=direction, n_boot=500)
    assert res["verdict"] == expected
    assert res["seeds_needed"] is None  # decided: nothing more to run
    assert len(res["per_seed"]) == 3 and res["difference"]["n_runs"] == 3


def test_an_inconclusive_contrast_says_how_many_seeds_a_five_point_interval_needs():
    a, b = simulate(np.random.default_rng(4), 0.0, seed_sd=0.05)
    res = stats.paired_contrast(a, b, n_boot=500)
    assert res["verdict"] == "inconclusive"
    sd = np.std([r["difference"] for r in res["per_seed"]], ddof=1)
    assert res["seed_sd"] == pytest.approx(sd) and res["seeds_needed"] == stats.seeds_for_half_width(sd)
    assert "seeds for ±5 points" in report.difference_text(res)


def test_one_seed_gives_no_seed_count_and_one_photo_no_interval():
    a, b = simulate(np.random.default_rng(5), 0.0, seeds=1)
    res = stats.paired_contrast(a, b, n_boot=200)
    assert res["seed_sd"] is None and res["seeds_needed"] is None
    one = {0: pd.DataFrame({"image_id": [f"only#{i}" for i in range(6)], "correct": [1.0] * 6})}
    res = stats.paired_contrast(one, {0: one[0].assign(correct=0.0)})
    assert np.isnan(res["difference"]["low"]) and res["verdict"] == "inconclusive"  # NaN interval: no claim
    assert "one photo" in report.difference_text(res)


def test_arms_on_other_puzzles_or_seeds_are_refused():
    a, b = simulate(np.random.default_rng(6), 0.0, seeds=2)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_contrast(a, {0: b[0]})
    with pytest.raises(ValueError, match="different held-out puzzles"):
        stats.paired_contrast(a, {s: t.assign(solution="B") for s, t in b.items()})


def test_contrast_declarations_are_checked():
    assert experiment.Contrast.of({"a": "x", "b": "y"}).claim == "x beats y"
    with pytest.raises(ValueError, match="direction"):
        experiment.Contrast("x", "y", direction=2)
    with pytest.raises(ValueError, match="unknown keys"):
        experiment.Contrast.of({"a": "x", "b": "y", "sign": 1})
    with pytest.raises(ValueError, match="itself"):
        experiment.Contrast("x", "x")


# ------------------------------------------------------------------ two arms x two seeds with the tiny nano model

SEEDS = [0, 1]
CONTRAST = experiment.Contrast(a="const", b="dyn", claim="constant beta beats GRPO-D (test)", paper="none")


def tiny_arms(nano_dir, dyn_overrides=None) -> dict:
    over = {"model": str(nano_dir), "grpo.steps": 1, "grpo.prompts_per_step": 2, "grpo.num_generations": 2,
            "grpo.report_to": [], "n_test": 4}
    return experiment.load_arms({"const": "nano/rq1_2x1_pair", "dyn": "nano/grpo_d_counting"}, over,
                                {"dyn": dyn_overrides or {}})


@pytest.fixture(scope="module")
def comparison(nano_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("compare")
    res = experiment.compare_arms(tiny_arms(nano_dir), run_dir, seeds=SEEDS, contrasts=[CONTRAST])
    return run_dir, res


def test_every_arm_runs_every_seed_in_its_own_folder(comparison):
    run_dir, res = comparison
    assert sorted(runs.arm_dirs(run_dir)) == ["const", "dyn"]
    for arm in ("const", "dyn"):
        assert sorted(runs.seed_dirs(run_dir / arm)) == SEEDS
        for s in SEEDS:
            folder = runs.RunFolder(run_dir / arm / f"seed{s}")
            assert folder.metrics.exists() and folder.eval_table("after").exists()
            assert runs.read_metrics(folder.root)["metrics"]["seed"] == s
        assert runs.arm_dir(run_dir, arm) == run_dir / arm / "seed0"
        assert runs.arm_dir(run_dir, arm, seed=1) == run_dir / arm / "seed1"
    per_seed = res["per_seed"]
    pairs = sorted(zip(per_seed["arm"], per_seed["seed"], strict=True))
    assert pairs == [(a, s) for a in ("const", "dyn") for s in SEEDS]
    arms = res["summary"].set_index("arm")
    assert list(arms.loc[["const", "dyn"], "n_seeds"]) == [2, 2]
    assert sum(a.startswith("base") for a in arms.index) == 1  # one base row: both arms share the held-out set
    assert set(res["logs"]["const"]) == set(SEEDS)


def test_the_base_is_evaluated_once_for_every_arm_and_seed(comparison):
    run_dir, _ = comparison
    tables = {(a, s): runs.RunFolder(run_dir / a / f"seed{s}").eval_table("before").read_text()
              for a in ("const", "dyn") for s in SEEDS}
    assert len(set(tables.values())) == 1


def test_contrasts_record_a_difference_interval_and_a_verdict(comparison):
    run_dir, res = comparison
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["kind"] == "comparison"
    findings = record["details"]["findings"]
    assert len(findings) == 1 and record["details"]["finding"] == findings[0]  # what the study index reads
    f = findings[0]
    assert f["claim"] == CONTRAST.claim and f["verdict"] in stats.VERDICTS and f["n_seeds"] == 2
    assert f["difference"].split(" ")[1] == "points" and f["rule"].startswith("reproduced when")
    d = f["difference_interval"]
    assert d["low"] <= d["mean"] <= d["high"] and d["n_runs"] == 2 and d["n_puzzles"] == 4
    per_seed = {r["seed"]: r for r in f["per_seed"]}
    for s in SEEDS:
        acc = res["per_seed"].set_index(["arm", "seed"])["accuracy"]
        assert per_seed[s]["difference"] == pytest.approx(acc[("const", s)] - acc[("dyn", s)])
    assert record["metrics"]["verdict_const_vs_dyn"] == f["verdict"]
    assert (run_dir / "per_seed.csv").exists()


def test_a_rerun_reads_finished_seeds_back_without_training(comparison, nano_dir, monkeypatch):
    run_dir, first = comparison
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/seed*/metrics.json")}
    calls = []
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: calls.append(a) or pytest.fail("retrained"))
    res = experiment.compare_arms(tiny_arms(nano_dir), run_dir, seeds=SEEDS, contrasts=[CONTRAST])
    assert calls == [] and res["per_seed"]["cached"].all()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert res["findings"][0]["difference_interval"] == first["findings"][0]["difference_interval"]


def test_a_changed_recipe_reruns_only_that_arms_seeds(comparison, nano_dir, monkeypatch):
    run_dir, _ = comparison
    real, calls = experiment.run_experiment, []

    def counted(exp, *a, **k):
        calls.append(exp.name)
        return real(exp, *a, **k)

    monkeypatch.setattr(experiment, "run_experiment", counted)
    res = experiment.compare_arms(tiny_arms(nano_dir, {"grpo.learning_rate": 2e-5}), run_dir, seeds=SEEDS,
                                  contrasts=[CONTRAST])
    assert calls == ["dyn", "dyn"]
    cached = res["per_seed"].set_index("arm")["cached"]
    assert cached["const"].all() and not cached["dyn"].any()
    rec = runs.read_metrics(run_dir / "dyn" / "seed1")["details"]["experiment"]
    assert rec["grpo"]["learning_rate"] == 2e-5


def test_a_contrast_between_arms_on_other_puzzles_is_refused_before_any_run(nano_dir, tmp_path):
    arms = tiny_arms(nano_dir, {"n_test": 6})
    with pytest.raises(ValueError, match="n_test"):
        experiment.compare_arms(arms, tmp_path, seeds=[0], contrasts=[CONTRAST])
    with pytest.raises(ValueError, match="no arm"):
        experiment.compare_arms(arms, tmp_path, seeds=[0], contrasts=[{"a": "const", "b": "nope"}])
    assert not any(tmp_path.iterdir())


def test_extra_evaluations_are_stored_with_their_seed_and_read_back(nano_dir, tmp_path):
    calls = []

    def extra(model, processor, label):
        calls.append(label)
        table = pd.DataFrame({"suite": ["x", "UNSEEN"], "seen": [True, False], "n": [2, 2], "accuracy": [0.5, 0.25]})
        return {"suite": table, "n_families": 1, "downstream": None}

    extra.key = {"suite_items": 2}
    arms = {"const": tiny_arms(nano_dir)["const"]}
    first = experiment.compare_arms(arms, tmp_path, seeds=[0], extra_eval=extra)
    assert calls == ["const", "base"]
    assert runs.RunFolder(tmp_path / "const" / "seed0").extra.exists()
    assert (tmp_path / experiment.EXTRA_BASE_FILE).exists()
    again = experiment.compare_arms(arms, tmp_path, seeds=[0], extra_eval=extra)
    assert calls == ["const", "base"]  # both read back, nothing measured again
    pd.testing.assert_frame_equal(again["extra"]["const"][0]["suite"], first["extra"]["const"][0]["suite"])
    assert again["extra"]["const"][0]["n_families"] == 1 and again["extra"]["const"][0]["downstream"] is None
    pooled = experiment.pooled_extra(again, "suite")
    assert list(pooled) == ["base", "const"] and pooled["const"]["seed"].tolist() == [0, 0]
    extra.key = {"suite_items": 3}  # another evaluation: the seed is rerun, the base measured again
    experiment.compare_arms(arms, tmp_path, seeds=[0], extra_eval=extra)
    assert calls == ["const", "base", "const", "base"]


def test_an_inconclusive_contrast_with_a_narrow_interval_says_so_instead_of_asking_for_seeds():
    res = {"difference": {"mean": 0.008, "low": -0.023, "high": 0.035}, "verdict": "inconclusive", "seeds_needed": 2}
    text = report.difference_text(res)
    assert "already within ±5 points" in text and "seeds for" not in text
    wide = {**res, "difference": {"mean": 0.05, "low": -0.061, "high": 0.151}, "seeds_needed": 15}
    assert "about 15 seeds for ±5 points" in report.difference_text(wide)


def test_seeds_trained_in_worker_processes_match_seeds_trained_in_a_row(comparison, nano_dir, tmp_path, capsys):
    """run_seeds(jobs=2): the seeds train at once in spawned processes and give the same tables and training logs
    as the same seeds trained one after another (each seed is deterministic); a finished study reads them back."""
    run_dir, _ = comparison
    exp = tiny_arms(nano_dir)["const"]
    par = experiment.run_seeds(exp, tmp_path / "par", SEEDS, jobs=2)
    assert [par["seeds"][s]["cached"] for s in SEEDS] == [False, False]
    for s in SEEDS:
        row = runs.RunFolder(run_dir / "const" / f"seed{s}")
        here = runs.RunFolder(tmp_path / "par" / f"seed{s}")
        assert here.eval_table("after").read_text() == row.eval_table("after").read_text()
        assert here.eval_table("before").read_text() == row.eval_table("before").read_text()  # scored by worker 1
        log_row = pd.read_csv(row.train_log("grpo"))[["reward", "loss"]]
        log_par = pd.read_csv(here.train_log("grpo"))[["reward", "loss"]]
        pd.testing.assert_frame_equal(log_par, log_row, check_exact=False, rtol=1e-3)  # thread counts may differ
    assert (tmp_path / "par" / experiment.BASE_FILE).is_file()  # what the first worker scored, for the others
    for s in SEEDS:  # each worker's warnings and progress are kept beside its seed, and copied to our stderr
        assert (tmp_path / "par" / f"seed{s}" / experiment.WORKER_LOG).is_file()
    assert f"{exp.name} seed 1 (worker process)" in capsys.readouterr().err
    again = experiment.run_seeds(exp, tmp_path / "par", SEEDS, jobs=2)
    assert [again["seeds"][s]["cached"] for s in SEEDS] == [True, True]
    # the training rollouts join back to their rows' answer cells: every logged group is counted once
    settings = exp.grpo_settings()
    cells = experiment.seed_rollout_cells(exp, tmp_path / "par", SEEDS, window=1)
    assert sorted(cells["seed"].unique()) == SEEDS
    assert (cells.groupby("seed")["groups"].sum() == settings.steps * settings.prompts_per_step).all()
    assert cells["accuracy"].between(0, 1).all() and cells["zero_std"].between(0, 1).all()
    fig = plots.rollout_cells_heatmap(cells, value="zero_std")
    assert [ax.get_title() for ax in fig.axes] == [f"seed {s}" for s in SEEDS]
    with pytest.raises(ValueError, match="seed_rollout_cells"):
        plots.rollout_cells_heatmap(cells.iloc[:0])
    with pytest.raises(ValueError, match="jobs"):
        experiment.run_seeds(exp, tmp_path / "par", SEEDS, jobs=0)
    with pytest.raises(ValueError, match="extra_eval"):
        experiment.run_seeds(exp, tmp_path / "par", SEEDS, jobs=2, extra_eval=lambda *a: {})


def test_the_second_held_out_set_scores_each_trained_seed_once(comparison, nano_dir, monkeypatch):
    """experiment.second_heldout: the base and every seed's final model on puzzles of the five package photos
    (none of them a training or first-set photo); tables are read back while the model and puzzles are unchanged,
    and scored again when the model changed; a seed without a trained model is named."""
    from jrl_core import evaluate, images

    run_dir, _ = comparison
    exp = tiny_arms(nano_dir)["const"]
    calls = []
    real = evaluate.evaluate
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    first = experiment.second_heldout(exp, run_dir / "const", SEEDS, n_test=5)  # one puzzle per photo
    assert len(calls) == len(SEEDS) + 1  # each seed and the base, once
    photos = set(first["by_photo"]["group"])
    assert photos == set(images.PACKAGE_PHOTOS) and not photos & set(images.SKIMAGE_PHOTOS)
    assert first["after"]["n_runs"] == len(SEEDS) and first["after"]["n_photos"] == 5
    assert set(first["by_photo"]["stage"]) == {"before", "after"}
    text = report.second_heldout_text(first)
    assert "Second held-out set (5 puzzles of 5 photos" in text and "walls' count" in text  # the default has walls
    again = experiment.second_heldout(exp, run_dir / "const", SEEDS, n_test=5)
    assert len(calls) == len(SEEDS) + 1  # read back, nothing scored again
    for s in SEEDS:
        cols = ["image_id", "solution", "completion", "correct"]  # read back as eval tables are (no NaN parsing)
        pd.testing.assert_frame_equal(again["seeds"][s][cols], first["seeds"][s][cols], check_dtype=False)
    sidecar = run_dir / "const" / f"seed{SEEDS[0]}" / "eval_second.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "weights_sha256": "0" * 64}))
    experiment.second_heldout(exp, run_dir / "const", SEEDS, n_test=5)  # as if seed 0's model had been retrained
    assert len(calls) == len(SEEDS) + 2
    experiment.second_heldout(exp, run_dir / "const", SEEDS, n_test=6)  # other puzzles: everything scored again
    assert len(calls) == 2 * len(SEEDS) + 3
    with pytest.raises(FileNotFoundError, match="seed7"):  # never trained
        experiment.second_heldout(exp, run_dir / "const", [7])
    with pytest.raises(FileNotFoundError, match="seed0"):  # trained with another recipe: refused, not scored
        experiment.second_heldout(experiment.apply_overrides(exp, {"grpo.steps": 2}), run_dir / "const", SEEDS)
    with pytest.raises(ValueError, match="seeds"):
        experiment.second_heldout(exp, run_dir / "const", [True])
    with pytest.raises(ValueError, match="trains on the second held-out set"):  # its photos would not be held out
        experiment.second_heldout_rows(experiment.apply_overrides(exp, {"photo_source": "packages"}), view_size=56)


def test_the_package_photos_source_is_a_test_set_only():
    from jrl_core import images

    assert [p.image_id for p in images.load_photos("package-photos", "test")] == list(images.PACKAGE_PHOTOS)
    with pytest.raises(ValueError, match="no train split"):
        images.load_photos("package-photos", "train")


def test_the_base_grid_is_evaluated_once_and_written_into_every_seed(nano_dir, tmp_path, monkeypatch):
    """run_seeds with a grid scores the base on it once (evaluate_base), not once per seed; every seed folder
    still gets the base's grid files and record entries, the same as a seed that scored the base itself."""
    from jrl_core import evaluate

    exp = tiny_arms(nano_dir)["const"]
    grid = experiment.GridSpec(sizes=((2, 1),), question_types=("pair",), n_items=4)
    calls = []
    real = evaluate.evaluate_grid
    monkeypatch.setattr(evaluate, "evaluate_grid", lambda *a, **k: (calls.append(k.get("save_dir")), real(*a, **k))[1])
    res = experiment.run_seeds(exp, tmp_path / "seeds", SEEDS, grid=grid)
    assert len(calls) == 1 + len(SEEDS)  # the base once, each trained seed once
    assert calls[0] is None and all(str(c).endswith("after") for c in calls[1:])
    before = [(tmp_path / "seeds" / f"seed{s}" / "grid" / "before") for s in SEEDS]
    files = [sorted(p.name for p in b.iterdir()) for b in before]
    assert files[0] == files[1] == ["2x1_pair_non_thinking.csv", "grid_summary.csv"]
    assert len({(b / "2x1_pair_non_thinking.csv").read_text() for b in before}) == 1
    alone = experiment.run_experiment(experiment.apply_overrides(exp, {"seed": 1}), tmp_path / "alone", grid=grid)
    assert (tmp_path / "alone" / "grid" / "before" / "grid_summary.csv").read_text() == \
        (before[1] / "grid_summary.csv").read_text()  # the same as scoring the base in the seed's own run
    late = experiment.run_experiment(experiment.apply_overrides(exp, {"seed": 1}), tmp_path / "late", grid=grid,
                                     base=lambda: None)  # nothing handed over: the base is scored after training
    for name in ("eval_before.csv", "grid/before/grid_summary.csv", "eval_after.csv"):
        assert (tmp_path / "late" / name).read_text() == (tmp_path / "alone" / name).read_text()
    assert late["before"] == alone["before"] and late["metrics"]["metrics"]["acc_before"] is not None
    for s in SEEDS:
        metrics = res["seeds"][s]["metrics"]
        assert metrics["grid_pair_2x1_before"] == alone["metrics"]["metrics"]["grid_pair_2x1_before"]
        assert set(res["seeds"][s]["grid"]["stage"]) == {"before", "after"}
