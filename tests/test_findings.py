"""The claims that are not arm-vs-arm on held-out puzzles: unpaired rates (Jigsaw-R1 Finding 4: keywords late vs
early in training, large vs small puzzles), claims on extra per-question tables (Finding 2: suite vs base), and the
study index's findings table listing every claim of every run in claim order."""

import json

import numpy as np
import pandas as pd
import pytest

from jrl_core import analysis, experiment, report, runs, stats


def _rates(p: float, n: int, seeds=(0, 1, 2), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {s: rng.binomial(8, p, n) / 8 for s in seeds}


def test_rate_contrast_finds_a_real_rise_and_not_a_null_one():
    up = stats.rate_contrast(_rates(0.4, 80, seed=1), _rates(0.2, 80, seed=2))
    assert up["verdict"] == "reproduced" and up["difference"]["low"] > 0
    assert up["difference"]["mean"] == pytest.approx(up["a"]["mean"] - up["b"]["mean"])
    assert [r["seed"] for r in up["per_seed"]] == [0, 1, 2] and up["seeds_needed"] is None
    down = stats.rate_contrast(_rates(0.2, 80, seed=3), _rates(0.4, 80, seed=4))
    assert down["verdict"] == "contradicted"
    null = stats.rate_contrast(_rates(0.3, 20, seed=5), _rates(0.3, 20, seed=6))
    assert null["difference"]["low"] < 0 < null["difference"]["high"]
    assert null["verdict"] == "inconclusive" and null["seeds_needed"] >= 2


def test_rate_contrast_interval_covers_a_known_difference_at_about_the_nominal_rate():
    hits = 0
    for rep in range(40):
        r = stats.rate_contrast(_rates(0.35, 60, seed=100 + rep), _rates(0.25, 60, seed=200 + rep), n_boot=400)
        hits += r["difference"]["low"] <= 0.10 <= r["difference"]["high"]
    assert hits >= 32  # nominal 95%: 38 of 40; the bootstrap over 3 seeds is a little narrow


def test_rate_contrast_refuses_mismatched_runs_and_empty_runs():
    with pytest.raises(ValueError, match="same runs"):
        stats.rate_contrast({0: [1.0]}, {1: [0.0]})
    with pytest.raises(ValueError, match="no values for run 0"):
        stats.rate_contrast({0: []}, {0: [0.0]})
    with pytest.raises(ValueError, match="at least one run"):
        stats.rate_contrast({}, {})


def _log(rates_by_step: dict, groups: int = 6, g: int = 4) -> pd.DataFrame:
    rows = []
    for step, rate in rates_by_step.items():
        for p in range(groups):
            for k in range(g):
                hit = (p * g + k) < rate * groups * g
                rows.append({"step": step, "prompt_id": f"p{p}",
                             "completion": "<think>Let me recheck the image.</think><answer>A</answer>" if hit
                             else "<think>The seam is smooth.</think><answer>A</answer>"})
    return pd.DataFrame(rows)


def test_group_keyword_rates_average_each_prompt_group():
    log = _log({1: 0.5, 2: 0.0}, groups=2, g=4)
    rates = analysis.group_keyword_rates(log)
    assert rates.loc[(1, "p0")] == 1.0 and rates.loc[(1, "p1")] == 0.0 and (rates.loc[2] == 0).all()
    with pytest.raises(ValueError, match="one keyword set"):
        analysis.group_keyword_rates(log, ["backtracking", "visualthinker"])
    with pytest.raises(ValueError, match="prompt_id"):
        analysis.group_keyword_rates(log.drop(columns="prompt_id"))


def test_keyword_trend_compares_the_last_third_of_steps_with_the_first():
    logs = {s: _log({1: 0.0, 2: 0.0, 3: 0.2, 4: 0.3, 5: 0.6, 6: 0.7}) for s in (0, 1)}
    trend = analysis.keyword_trend(logs)
    assert trend["windows"][0] == {"early": [1, 2], "late": [5, 6]}
    assert trend["b"]["mean"] == 0.0 and trend["a"]["mean"] > 0.4
    assert trend["verdict"] == "reproduced"
    with pytest.raises(ValueError, match="at least 2"):
        analysis.keyword_trend({0: _log({1: 0.5})})
    with pytest.raises(ValueError, match="fraction"):
        analysis.keyword_trend(logs, fraction=0.7)


def _suite_items(correct: list[float]) -> pd.DataFrame:
    photos = ["chelsea", "coffee", "rocket", "brick"]
    return pd.DataFrame({"suite": "count_shapes", "seen": [i % 2 == 1 for i in range(len(correct))],
                         "image_id": [f"{photos[(i // 4) % 4]}#{i}" for i in range(len(correct))],
                         "solution": ["A"] * len(correct), "correct": correct})


def test_extra_contrast_pairs_each_seed_with_the_base_on_the_selected_questions():
    n = 40
    base = _suite_items([0.0] * n)
    arm = {s: {"suite_items": _suite_items([1.0 if i % 4 else 0.0 for i in range(n)])} for s in (0, 1)}
    res = {"seeds": [0, 1], "extra": {"base": {"suite_items": base}, "2x1-pair": arm}}
    c = {"id": "F2", "a": "2x1-pair", "b": "base", "claim": "jigsaw RL helps unseen tasks", "paper": "69.59% → 73.18%"}
    f = experiment.extra_contrast(res, c, where=lambda t: ~t["seen"], scale="nano")
    assert f["id"] == "F2" and f["verdict"] == "reproduced" and f["on"] == "suite_items"
    assert f["difference_interval"]["mean"] == pytest.approx(0.5)  # unseen rows: i even, correct when i % 4 == 2
    assert f["arm_a"]["n_puzzles"] == n // 2 and "questions" in f["ours"] and "nano scale" in f["ours"]
    with pytest.raises(ValueError, match="no 'grid_items' table"):
        experiment.extra_contrast(res, c, "grid_items")
    with pytest.raises(ValueError, match="selected no question"):
        experiment.extra_contrast(res, c, where=lambda t: t["suite"] == "none")


def test_report_finding_carries_the_declared_claim_and_the_test():
    c = experiment.Contrast(a="late steps", b="early steps", id="F4", claim="keywords grow", paper="Fig. 3")
    r = stats.rate_contrast(_rates(0.5, 30, seed=7), _rates(0.1, 30, seed=8))
    f = report.finding(c, r, report.rate_text("late steps", "early steps", r, scale="nano"))
    assert (f["id"], f["verdict"], f["n_seeds"]) == ("F4", "reproduced", 3)
    assert f["ours"].startswith("late steps ") and "90 + 90 prompt groups, nano scale" in f["ours"]
    assert f["difference"].endswith(")") and "points" in f["difference"]
    with pytest.raises(ValueError, match="unknown keys"):
        experiment.Contrast.of({"a": "x", "b": "y", "claim_id": "F1"})


def test_index_lists_every_finding_of_every_run_in_claim_order(tmp_path):
    from jrl_core.study import write_index

    def run(name, details):
        d = tmp_path / name
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"name": name, "notebook": "x.ipynb", "status": "ok"}))
        runs.write_metrics(d, runs.MetricsRecord(kind="comparison", details=details))

    def f(i, claim):
        return {"id": i, "claim": claim, "paper": "p", "ours": "o", "difference": "d", "verdict": "inconclusive"}

    run("a_rq5", {"findings": [f("F5", "claim five"), f("F5b", "claim five b")], "finding": f("F5", "claim five")})
    run("b_rq1", {"finding": f("F1", "claim one")})  # an older record with one finding
    run("c_other", {"findings": [f(None, "claim unnamed"), f("F10", "claim ten")]})
    run("d_plain", {"arms": []})
    text = write_index(tmp_path).read_text()
    order = [text.index(f"claim {k}") for k in ("one", "five", "five b", "ten", "unnamed")]
    assert order == sorted(order)
    assert text.count("claim five b") == 1 and text.count("claim five<") == 1


def test_claims_name_real_arms_before_anything_runs():
    arms = experiment.load_arms({"2x1-pair": "nano/rq1_2x1_pair"}, {"grpo.steps": 1})
    ok = experiment.check_contrasts(arms, [{"id": "F2", "a": "2x1-pair", "b": "base"}], base=True)
    assert ok[0].b == "base"
    with pytest.raises(ValueError, match="no arm"):
        experiment.check_contrasts(arms, [{"a": "2x1-pair", "b": "base"}])  # base only where allowed
    with pytest.raises(ValueError, match="no arm \\['3x1'\\]"):
        experiment.check_contrasts(arms, [{"a": "3x1", "b": "base"}], base=True)
    res = {"seeds": [0], "results": {"2x1-pair": {}}, "extra": {"base": {}, "2x1-pair": {0: {}}}}
    with pytest.raises(ValueError, match="no arm \\['3x1'\\]"):
        experiment.extra_contrast(res, {"a": "3x1", "b": "base"})


def test_keyword_rates_refuse_a_log_without_prompt_ids():
    log = _log({1: 0.5, 2: 0.5})
    log.loc[:3, "prompt_id"] = None
    with pytest.raises(ValueError, match="no prompt_id"):
        analysis.group_keyword_rates(log)


def test_agreement_and_wall_time_texts():
    evals = pd.DataFrame({"completion": ["<think>So the answer is (A)</think><answer>A</answer>",
                                         "<think>So the answer is (B)</think><answer>A</answer>"],
                          "solution": ["A", "B"], "answer_type": "letter"})
    text = report.agreement_text(evals)
    assert text.startswith("after thinking RL 50.0% of held-out completions conclude otherwise")
    assert "accuracy of the <answer> among those 0.0%" in text and "of the <think> conclusion 100.0%" in text
    arms = experiment.load_arms({"x": "nano/rq1_2x1_pair", "y": "nano/thinking_2x1_pair"}, {"grpo.steps": 40})
    summary = pd.DataFrame([{"arm": "base", "n_seeds": None, "wall_s": None},
                            {"arm": "x", "n_seeds": 3, "wall_s": 258.0}, {"arm": "y", "n_seeds": 3, "wall_s": 495.0}])
    assert report.wall_time_text(summary, arms, ("x", "y")) == (
        "wall time per seed x 86 s (40 steps × 16 prompts), y 165 s (40 steps × 16 prompts)")
    assert report.wall_time_text(summary, arms, ("x", "z")) == ""


def test_more_training_photos_pair_with_the_skimage_arm_but_another_test_set_does_not(tmp_path):
    """"packages" and a "+synthetic" suffix only add training pictures (same held-out puzzles as "skimage"), so
    the arms pair; a folder source has its own test split, so it does not."""
    from PIL import Image

    for i in range(12):
        Image.new("RGB", (80, 80), (20 * i, 90, 90)).save(tmp_path / f"p{i}.png")
    arms = experiment.load_arms({"skimage": "nano/rq1_2x1_pair", "packages": "nano/rq1_2x1_pair"}, {"grpo.steps": 1})
    arms["packages"] = experiment.load_recipe("nano/rq1_2x1_pair", {"grpo.steps": 1, "photo_source": "packages"})
    assert experiment.check_contrasts(arms, [{"a": "packages", "b": "skimage"}])[0].a == "packages"
    for name, source in (("photos only", "skimage"), ("with pictures", "skimage+synthetic")):
        arms[name] = experiment.load_recipe("nano/rq1_2x1_pair", {"grpo.steps": 1, "photo_source": source})
    assert experiment.check_contrasts(arms, [{"a": "with pictures", "b": "photos only"}])[0].a == "with pictures"
    arms["folder"] = experiment.load_recipe("nano/rq1_2x1_pair", {"grpo.steps": 1, "photo_source": str(tmp_path)})
    with pytest.raises(ValueError, match="photo_source"):
        experiment.check_contrasts(arms, [{"a": "folder", "b": "skimage"}])
