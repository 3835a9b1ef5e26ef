"""Score finished multi-seed runs on the second held-out set: the five photos other packages ship.

    .venv/bin/python benchmarks/second_heldout.py RUN_DIR [RUN_DIR ...] [--recipe nano/rq1_2x1_pair] [--set size=1x2]

``RUN_DIR`` is a folder of ``benchmarks/nano_seeds.py`` or ``experiment.run_seeds`` (``seed<S>/`` per seed). Give
the recipe and ``--set`` overrides the runs were trained with (a seed trained with another recipe is refused, never
scored as if it were this one). ``experiment.second_heldout`` scores every finished seed's final model and the base
on ``experiment.second_heldout_rows``: the first held-out set's spec and seeds, cut from matplotlib's,
scikit-learn's and PyWavelets' photos (``images.PACKAGE_PHOTOS``), which neither the nano base nor the default
training recipes use (one setting, the walls' count, was chosen on them). Tables are cached in the run folder.

Prints one JSON record per run folder (every seed's accuracy on both held-out sets, each second-set photo's accuracy
per seed, the mean with a bootstrap interval over seeds and photos) and a Markdown row, and writes the record to
``<RUN_DIR>/second_heldout.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from jrl_core import experiment, runs
from jrl_core.atomic import atomic_write_text


def record(run_dir: Path, exp) -> dict:
    """The JSON record of one run folder; raises ``SystemExit`` naming the folder when no seed finished."""
    seeds = sorted(runs.seed_dirs(run_dir))
    if not seeds:
        raise SystemExit(f"{run_dir}: no seed<S> folder; run benchmarks/nano_seeds.py first.")
    t0 = time.time()
    try:
        second = experiment.second_heldout(exp, run_dir, seeds)
    except FileNotFoundError as err:
        raise SystemExit(f"{err} (give --recipe and --set as the runs were trained)") from err
    after = second["by_photo"].query("stage == 'after'").sort_values("seed")
    return {"run_dir": str(run_dir), "seeds": seeds,
            "second_heldout": {s: round(float(t["correct"].mean()), 3) for s, t in second["seeds"].items()},
            "first_heldout": {s: round(float(runs.read_metrics(run_dir / f"seed{s}")["metrics"]["acc_after"]), 3)
                              for s in seeds},
            "per_photo": {g: [round(float(v), 3) for v in part["accuracy"]] for g, part in after.groupby("group")},
            "base": round(float(second["base"]["correct"].mean()), 3),
            "base_per_photo": {g: round(float(v), 3) for g, v in second["by_photo"].query(
                "stage == 'before' and seed == @seeds[0]").set_index("group")["accuracy"].items()},
            "after": second["after"], "gain": second["gain"], "seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    ap.add_argument("--recipe", default="nano/rq1_2x1_pair")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        raise SystemExit(f"no such run folder: {', '.join(missing)}")
    over = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
    exp = experiment.load_recipe(args.recipe, over)
    for run_dir in args.run_dirs:
        rec = {"recipe": args.recipe, "overrides": over, **record(run_dir, exp)}
        atomic_write_text(run_dir / "second_heldout.json", json.dumps(rec, indent=1, default=str))
        print(json.dumps(rec, indent=1, default=str))
        a = rec["after"]
        seeds = " / ".join(f"{100 * x:.1f}" for x in rec["second_heldout"].values())
        print(f"| {run_dir.resolve().name} | {exp.size} {exp.question_type} | {100 * rec['base']:.1f}% | {seeds} | "
              f"{100 * a['mean']:.1f}% ({100 * a['low']:.1f}–{100 * a['high']:.1f}%) |", flush=True)


if __name__ == "__main__":
    main()
