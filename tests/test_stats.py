"""Cluster-bootstrap intervals over photos and seeds (jrl_core.stats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jrl_core import stats

PHOTOS = [f"p{i}" for i in range(5)]


def table(correct, ids):
    return pd.DataFrame({"image_id": ids, "correct": correct})


def simulate(rng, p_true, effect=0.0, seeds=3, per_photo=60):
    """Per-photo accuracies vary around p_true (clustered puzzles); a run adds seed noise."""
    ids = [f"{p}#{i}" for p in PHOTOS for i in range(per_photo)]
    photo_p = np.clip(rng.normal(p_true, 0.15, len(PHOTOS)), 0.02, 0.98)
    runs, base = {}, {}
    for s in range(seeds):
        shift = rng.normal(0, 0.03)
        pb = np.repeat(np.clip(photo_p + shift, 0, 1), per_photo)
        base[s] = table((rng.random(pb.size) < pb).astype(float), ids)
        pa = np.clip(pb + effect, 0, 1)
        runs[s] = table((rng.random(pa.size) < pa).astype(float), ids)
    return runs, base


def test_interval_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    reps = 60
    for r in range(reps):
        # the truth of one replication: the mean over an infinite number of photos is p_true
        runs, _ = simulate(rng, 0.6)
        ci = stats.bootstrap(runs, n_boot=400, seed=r)
        hits += ci["low"] <= 0.6 <= ci["high"]
    assert 0.75 <= hits / reps <= 1.0  # 5 photos: percentile intervals run a little narrow, never wildly


def test_paired_difference_recovers_a_known_effect():
    rng = np.random.default_rng(2)
    runs, base = simulate(rng, 0.5, effect=0.3, seeds=3)
    ci = stats.bootstrap(runs, base, n_boot=1000)
    assert ci["low"] > 0.15 and ci["high"] < 0.45 and ci["low"] <= ci["mean"] <= ci["high"]
    assert ci["n_runs"] == 3 and ci["n_photos"] == 5 and ci["n_puzzles"] == 300


def test_clustered_interval_is_wider_than_treating_puzzles_as_independent():
    rng = np.random.default_rng(3)
    runs, _ = simulate(rng, 0.6, seeds=1)
    ci = stats.bootstrap(runs, n_boot=2000)
    p, n = ci["mean"], ci["n_puzzles"]
    independent = 2 * 1.96 * np.sqrt(p * (1 - p) / n)
    assert ci["high"] - ci["low"] > independent


def test_runs_on_other_puzzles_are_refused():
    a = {0: table([1.0, 0.0], ["p0#0", "p1#1"])}
    b = {0: table([1.0, 0.0], ["p0#0", "p1#2"])}
    with pytest.raises(ValueError, match="other puzzles"):
        stats.bootstrap(a, b)
    with pytest.raises(ValueError, match="different held-out"):
        stats.bootstrap({0: a[0], 1: b[0]})


def test_seed_summary_and_seeds_needed():
    s = stats.seed_summary([0.9, 0.8, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["min"] == 0.8 and s["max"] == 1.0 and s["n"] == 3
    assert stats.seeds_for_half_width(0.1, 0.05) == 16
    assert stats.photo_of("chelsea#17") == "chelsea"


def test_one_photo_gives_no_interval_and_an_inconclusive_verdict():
    runs_ = {0: table([1.0] * 10, [f"only#{i}" for i in range(10)])}
    base = {0: table([1.0] * 9 + [0.0], [f"only#{i}" for i in range(10)])}
    ci = stats.bootstrap(runs_, base)
    assert np.isnan(ci["low"]) and np.isnan(ci["high"]) and ci["n_photos"] == 1
    assert stats.verdict(ci["low"], ci["high"]) == "inconclusive"


def test_photo_ids_may_contain_a_hash():
    assert stats.photo_of("scan#2.jpg#17") == "scan#2.jpg" and stats.photo_of("plain.jpg") == "plain.jpg"


@pytest.mark.parametrize(("low", "high", "direction", "expected"), [
    (0.05, 0.2, 1, "reproduced"), (-0.2, -0.05, 1, "contradicted"), (-0.05, 0.1, 1, "inconclusive"),
    (-0.2, -0.05, -1, "reproduced"), (0.05, 0.2, -1, "contradicted"),
])
def test_verdict_rule(low, high, direction, expected):
    assert stats.verdict(low, high, direction) == expected
