"""Intervals that respect how the held-out set is built: bootstrap over photos (and seeds).

The held-out set is 300 crops of a handful of test photos, so its puzzles are not independent: two crops of the
same photo tend to be right or wrong together, and a Wilson interval over 300 "independent" puzzles is too
narrow. :func:`bootstrap` resamples *photos* (all puzzles of a drawn photo come along: a cluster bootstrap)
and, with several runs, *seeds* too, and returns a percentile interval of the mean accuracy; with a second
arm it returns the interval of the paired difference (same seeds, same puzzles). Seed spread is reported
separately (:func:`seed_summary`), so a reader sees what is run-to-run variation and what is puzzle sampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def photo_of(image_id: str) -> str:
    """The source photo of a held-out view id (``"chelsea#17"`` -> ``"chelsea"``; the last ``#<digits>`` is the
    view index, so a photo id that itself contains ``#`` stays whole; other ids unchanged)."""
    head, sep, tail = str(image_id).rpartition("#")
    return head if sep and tail.isdigit() else str(image_id)


def _matrix(tables: Mapping[object, pd.DataFrame], column: str) -> tuple[np.ndarray, list[str]]:
    """(seeds × puzzles) values of ``column`` and the photo of each puzzle; every table must list the same
    puzzles in the same order (one fixed held-out set)."""
    frames = list(tables.values())
    ids = frames[0]["image_id"].astype(str).tolist()
    for f in frames[1:]:
        if f["image_id"].astype(str).tolist() != ids:
            raise ValueError("bootstrap: the runs were scored on different held-out puzzles; pass evaluation tables "
                             "of one fixed held-out set (experiment.heldout_rows).")
    values = np.stack([pd.to_numeric(f[column]).to_numpy(dtype=float) for f in frames])
    return values, ids


def bootstrap(tables: Mapping[object, pd.DataFrame], baseline: Mapping[object, pd.DataFrame] | None = None, *,
              column: str = "correct", n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean accuracy over runs with a cluster-bootstrap interval (photos, and seeds when there are several).

    Args:
        tables: run (e.g. seed) -> per-puzzle evaluation table (``evaluate.EvalResult.table``: ``image_id`` and
            ``column`` in [0, 1]) of one fixed held-out set.
        baseline: optional second arm with the same keys and puzzles; the result is then about the paired
            difference ``tables − baseline`` (per seed, per puzzle).
        column: the score column (``correct``: exact match).
        n_boot: bootstrap resamples; level: interval coverage; seed: the resampling RNG seed.
    Returns:
        ``{"mean", "low", "high", "n_runs", "n_photos", "n_puzzles"}`` (accuracies or differences in [−1, 1]);
        ``low``/``high`` are NaN when the puzzles come from fewer than two photos (no interval can be claimed;
        :func:`verdict` then says inconclusive).
    Raises:
        ValueError: empty input, mismatched keys or puzzles.
    """
    if not tables:
        raise ValueError("bootstrap needs at least one evaluation table.")
    values, ids = _matrix(tables, column)
    photos = np.array([photo_of(i) for i in ids])
    if baseline is not None:
        if list(baseline) != list(tables):
            raise ValueError(f"bootstrap: baseline runs {list(baseline)} differ from {list(tables)}; pair them by seed.")
        base, base_ids = _matrix(baseline, column)
        if base_ids != ids:
            raise ValueError("bootstrap: the baseline was scored on other puzzles; pair arms on one held-out set.")
        values = values - base
    groups = [np.flatnonzero(photos == p) for p in dict.fromkeys(photos)]
    if len(groups) < 2:  # one photo: resampling photos says nothing about photo-to-photo variation
        return {"mean": float(values.mean()), "low": float("nan"), "high": float("nan"), "n_runs": values.shape[0],
                "n_photos": len(groups), "n_puzzles": values.shape[1]}
    rng = np.random.default_rng(seed)
    n_runs = values.shape[0]
    # per run and photo: sum and count, so a resample is a weighted sum over photos
    sums = np.stack([values[:, g].sum(axis=1) for g in groups], axis=1)  # (runs, photos)
    counts = np.array([len(g) for g in groups], dtype=float)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        pick_p = rng.integers(0, len(groups), len(groups))
        pick_r = rng.integers(0, n_runs, n_runs) if n_runs > 1 else np.zeros(1, dtype=int)
        stats[b] = sums[np.ix_(pick_r, pick_p)].sum() / (counts[pick_p].sum() * len(pick_r))
    alpha = (1 - level) / 2
    return {"mean": float(values.mean()), "low": float(np.quantile(stats, alpha)),
            "high": float(np.quantile(stats, 1 - alpha)), "n_runs": n_runs, "n_photos": len(groups),
            "n_puzzles": values.shape[1]}


def seed_summary(accuracies: Sequence[float]) -> dict:
    """Run-to-run spread of per-seed accuracies: ``{"mean", "sd", "min", "max", "n"}`` (sd with ddof 1; 0 for one)."""
    a = np.asarray(list(accuracies), dtype=float)
    if a.size == 0:
        raise ValueError("seed_summary needs at least one accuracy.")
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0, "min": float(a.min()),
            "max": float(a.max()), "n": int(a.size)}


def seeds_for_half_width(sd: float, half_width: float = 0.05, z: float = 1.96) -> int:
    """Seeds needed for a ±``half_width`` interval of the mean at seed spread ``sd`` (normal approximation)."""
    if half_width <= 0:
        raise ValueError(f"half_width must be > 0, got {half_width}.")
    return max(2, int(np.ceil((z * sd / half_width) ** 2)))


VERDICTS = ("reproduced", "contradicted", "inconclusive")
"""The pre-registered verdict of a claim (decided before the run; see :func:`verdict`)."""


def verdict(low: float, high: float, direction: int = 1) -> str:
    """The rule written before any run: a claim that arm A beats arm B (``direction=1``; −1 for "A is worse")
    is *reproduced* when the 95% interval of the difference A − B excludes zero in the paper's direction,
    *contradicted* when it excludes zero the other way, *inconclusive* otherwise.

    Raises:
        ValueError: ``low > high`` or ``direction`` not ±1.
    """
    if np.isnan(low) or np.isnan(high):
        return "inconclusive"
    if low > high:
        raise ValueError(f"verdict: low={low} > high={high}; pass the interval's lower bound first.")
    if direction not in (1, -1):
        raise ValueError(f"verdict: direction must be 1 or -1, got {direction!r}.")
    lo, hi = (low, high) if direction == 1 else (-high, -low)
    if lo > 0:
        return "reproduced"
    if hi < 0:
        return "contradicted"
    return "inconclusive"


def _same_runs(a: Mapping, b: Mapping, name: str, fix: str) -> list:
    """The runs (seeds) both arms of a contrast were measured on, in order; ValueError when there are none or
    the arms differ."""
    keys = list(a)
    if not keys:
        raise ValueError(f"{name} needs at least one run's (seed's) values per arm.")
    if list(b) != keys:
        raise ValueError(f"{name}: arm A has runs {keys}, arm B {list(b)}; {fix}.")
    return keys


def _decide(per_seed: list[dict], diff: dict, direction: int, half_width: float) -> dict:
    """A contrast's verdict from its difference interval, every seed's difference, its seed spread and, when
    inconclusive with ≥ 2 seeds, the seeds a ±``half_width`` interval would need."""
    sd = seed_summary([r["difference"] for r in per_seed])["sd"] if len(per_seed) > 1 else None
    call = verdict(diff["low"], diff["high"], direction)
    needed = seeds_for_half_width(sd, half_width) if call == "inconclusive" and sd is not None else None
    return {"verdict": call, "per_seed": per_seed, "seed_sd": sd, "seeds_needed": needed}


def paired_contrast(tables_a: Mapping[object, pd.DataFrame], tables_b: Mapping[object, pd.DataFrame], *,
                    direction: int = 1, column: str = "correct", half_width: float = 0.05, n_boot: int = 4000,
                    level: float = 0.95, seed: int = 0) -> dict:
    """A declared claim "arm A beats arm B" tested on per-puzzle tables: each arm's mean with its interval, the
    paired difference A − B with its interval, and the pre-registered :func:`verdict`.

    Pairing is by seed and by puzzle row: seed ``s`` of A is compared with seed ``s`` of B, puzzle ``i`` with
    puzzle ``i``. Both arms must be scored on the same held-out puzzles (same ``image_id`` and, when both
    tables have it, the same ``solution`` row by row). The prompt may differ — a thinking and a non-thinking
    arm see the same images and solutions with different instructions (``evaluate.test_rows`` draws the
    puzzles independently of the mode) — and such arms are still paired row by row.

    Args:
        tables_a, tables_b: seed -> per-puzzle evaluation table (``image_id``, ``column`` in [0, 1]), the same
            seeds in the same order for both arms.
        direction: 1 for "A beats B", −1 for "A does worse than B" (:func:`verdict`).
        column: the score column; half_width: the target half-width of ``seeds_needed`` (0.05 = ±5 points).
        n_boot, level, seed: :func:`bootstrap` settings (resamples photos, and seeds when there are several).
    Returns:
        ``{"a", "b", "difference"}`` (each a :func:`bootstrap` dict: mean, low, high, n_runs, n_photos,
        n_puzzles; values in [0, 1], the difference in [−1, 1]), ``"verdict"`` (one of :data:`VERDICTS`),
        ``"per_seed"`` (``[{"seed", "a", "b", "difference"}]``, every seed), ``"seed_sd"`` (sd of the per-seed
        differences, ddof 1; None with one seed), ``"seeds_needed"`` (:func:`seeds_for_half_width` of that sd
        when the verdict is inconclusive and there are ≥ 2 seeds, else None: with one seed the run-to-run
        spread is unknown; it counts seed spread only, photo sampling adds its own width) and ``"pairing"``.
    Raises:
        ValueError: no seeds, other seeds in the two arms, or tables of other puzzles (naming the seed).
    """
    seeds = _same_runs(tables_a, tables_b, "paired_contrast", "run both arms over the same seeds "
                       "(compare_arms(seeds=...))")
    for s in seeds:
        ta, tb = tables_a[s], tables_b[s]
        same = ta["image_id"].astype(str).tolist() == tb["image_id"].astype(str).tolist()
        if same and "solution" in ta and "solution" in tb:
            same = ta["solution"].astype(str).tolist() == tb["solution"].astype(str).tolist()
        if not same:
            raise ValueError(f"paired_contrast: seed {s}: the arms were scored on different held-out puzzles "
                             "(image_id or solution differ row by row); compare arms with the same puzzle size, "
                             "question type, n_test and photo source.")
    opts = {"column": column, "n_boot": n_boot, "level": level, "seed": seed}
    a, b = bootstrap(tables_a, **opts), bootstrap(tables_b, **opts)
    diff = bootstrap(tables_a, tables_b, **opts)
    per_seed = []
    for s in seeds:
        acc_a = float(pd.to_numeric(tables_a[s][column]).mean())
        acc_b = float(pd.to_numeric(tables_b[s][column]).mean())
        per_seed.append({"seed": s, "a": acc_a, "b": acc_b, "difference": acc_a - acc_b})
    return {"a": a, "b": b, "difference": diff, **_decide(per_seed, diff, direction, half_width),
            "pairing": "by seed and by puzzle row (same image_id and solution)"}


def _unit_means(values: Mapping[object, Sequence[float]], name: str) -> dict:
    out = {}
    for s, v in values.items():
        a = np.asarray(list(v), dtype=float)
        if a.size == 0:
            raise ValueError(f"rate_contrast: arm {name} has no values for run {s!r}; every run needs at least one "
                             "unit (e.g. one prompt group of its completion log).")
        out[s] = a
    return out


def rate_contrast(values_a: Mapping[object, Sequence[float]], values_b: Mapping[object, Sequence[float]], *,
                  direction: int = 1, half_width: float = 0.05, n_boot: int = 4000, level: float = 0.95,
                  seed: int = 0) -> dict:
    """A declared claim "rate A exceeds rate B" on *unpaired* units, each run (seed) measured on both: e.g.
    the keyword frequency of late vs early training steps (Jigsaw-R1 Finding 4, Fig. 3 middle), or of
    rollouts on 2x2 vs 2x1 training puzzles (Fig. 3 right). The units are independent draws within a run —
    prompt groups of a completion log, whose G completions share one prompt and are averaged first.

    The bootstrap resamples runs (when there are several) and, within each drawn run, units of A and units of B
    independently; the statistic is the mean over drawn runs of mean(A) − mean(B). Verdict as :func:`verdict`.

    Args:
        values_a, values_b: run (e.g. seed) -> per-unit values (e.g. the share of a group's completions with a
            keyword, in [0, 1]); the same runs in the same order for both.
        direction, half_width, n_boot, level, seed: as :func:`paired_contrast`.
    Returns:
        ``{"a", "b", "difference"}`` (each ``{"mean", "low", "high", "n_runs", "n_units"}``; ``n_units`` the
        total units; means are means over runs of per-run means), ``"verdict"``, ``"per_seed"`` (``[{"seed",
        "a", "b", "difference"}]``), ``"seed_sd"`` (None with one run), ``"seeds_needed"`` (as
        :func:`paired_contrast`) and ``"pairing"``.
    Raises:
        ValueError: no runs, other runs in the two arms, or a run without values.
    """
    runs_ = _same_runs(values_a, values_b, "rate_contrast", "measure both on the same runs (seeds)")
    va, vb = _unit_means(values_a, "A"), _unit_means(values_b, "B")
    rng = np.random.default_rng(seed)
    stats_ = np.empty((n_boot, 3))
    for i in range(n_boot):
        pick = rng.integers(0, len(runs_), len(runs_)) if len(runs_) > 1 else np.zeros(1, dtype=int)
        ma = np.mean([rng.choice(va[runs_[j]], va[runs_[j]].size).mean() for j in pick])
        mb = np.mean([rng.choice(vb[runs_[j]], vb[runs_[j]].size).mean() for j in pick])
        stats_[i] = (ma, mb, ma - mb)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats_, alpha, axis=0), np.quantile(stats_, 1 - alpha, axis=0)
    per_seed = [{"seed": s, "a": float(va[s].mean()), "b": float(vb[s].mean()),
                 "difference": float(va[s].mean() - vb[s].mean())} for s in runs_]
    means = (np.mean([r["a"] for r in per_seed]), np.mean([r["b"] for r in per_seed]),
             np.mean([r["difference"] for r in per_seed]))
    units = (sum(v.size for v in va.values()), sum(v.size for v in vb.values()))
    out = {}
    for k, name in enumerate(("a", "b", "difference")):
        out[name] = {"mean": float(means[k]), "low": float(lo[k]), "high": float(hi[k]), "n_runs": len(runs_),
                     "n_units": int(units[k]) if k < 2 else int(sum(units))}
    return {**out, **_decide(per_seed, out["difference"], direction, half_width),
            "pairing": "unpaired within each seed (bootstrap over seeds, and over units within a seed)"}
