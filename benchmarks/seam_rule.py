"""Diagnostic: can the held-out jigsaw puzzles be read from the pixels of the middle seam alone? (No training.)

    .venv/bin/python benchmarks/seam_rule.py [--size 2x1|1x2]

For each of the RQ1 recipe's 300 held-out pair puzzles (``experiment.heldout_rows``), the jump across the middle seam
(mean absolute difference of the two pixel rows, or columns for 1x2, that meet there) divided by the median jump
between all other neighbouring rows; "swapped" when the ratio is above one threshold, the best single threshold over
all 300 puzzles (so this is an upper bound on what the rule can do, not a held-out score). Prints the accuracy overall
and per held-out photo. Session 12: 2x1 98.3% (brick 95.0%), 1x2 85.3% (brick 81.7%).
"""
from __future__ import annotations

import argparse
import collections

import numpy as np

from jrl_core import experiment, probe


def seam_ratio(image, two_rows: bool) -> float:
    """Middle-seam jump over the median neighbour jump (rows for 2x1, columns for 1x2); ≥ 0."""
    x = np.asarray(image.convert("RGB"), dtype=float)
    if not two_rows:
        x = x.transpose(1, 0, 2)
    jumps = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2))
    mid = x.shape[0] // 2 - 1
    return float(jumps[mid] / (np.median(np.delete(jumps, [mid])) + 1e-6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="2x1", choices=("2x1", "1x2"))
    args = ap.parse_args()
    exp = experiment.load_recipe("nano/rq1_2x1_pair", {"size": args.size, "n_test": 300})
    rows = experiment.heldout_rows(exp, view_size=126)
    ratio = np.array([seam_ratio(r["image"], r["m"] == 2) for r in rows])
    swapped = np.array([probe.swapped_label(r) for r in rows]).astype(bool)
    acc, th = max((float(np.mean((ratio > t) == swapped)), float(t)) for t in np.linspace(0.5, 5, 91))
    print(f"{args.size}: best threshold {th:.2f}, accuracy {acc:.3f} over {len(rows)} held-out puzzles")
    by = collections.defaultdict(list)
    for r, ok in zip(rows, (ratio > th) == swapped, strict=True):
        by[r["image_id"].split("#")[0]].append(ok)
    for photo, oks in sorted(by.items()):
        print(f"  {photo}: {np.mean(oks):.3f} ({len(oks)} puzzles)")


if __name__ == "__main__":
    main()
