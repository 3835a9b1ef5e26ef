"""GRPO over seeds from the shipped nano base: every seed's held-out accuracy, the mean with its bootstrap interval
(seeds and photos), min and max. The README's per-seed table comes from here.

    .venv/bin/python benchmarks/nano_seeds.py [--recipe nano/rq1_2x1_pair] [--seeds 0 1 2 3 4] \
        [--set size=1x2 ...] [--out runs/seeds-<name>] [--jobs 1]

Each seed is ``experiment.run_experiment`` of the recipe with that seed (``jrl train --recipe R --set seed=S``),
in ``<out>/seed<S>/``; finished seeds are read back, so a killed run continues. ``--jobs N`` trains N seeds at once
(``run_seeds(jobs=N)``: the same results as one after another). Prints one JSON record (with each held-out
photo's accuracy per seed: the 300 puzzles are crops of 5 photos, and one hard photo can cap the mean; and, for
pair questions, each answer cell's accuracy per seed, ``evaluate.answer_cells``: a prompt variant answered by a
constant letter shows as one cell near 0) and a Markdown row. For pair questions it also writes
``<out>/rollout_cells.csv`` (``experiment.seed_rollout_cells``: each answer cell's rollout accuracy and share of
zero-std groups per 25 training steps) and lists, per seed, the cells *locked* in the last window (rollout
accuracy < 0.1 with >= 80% of groups at zero reward std: no gradient left to move them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from jrl_core import experiment, nano
from jrl_core.atomic import atomic_write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="nano/rq1_2x1_pair")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", help="run folder (default: runs/seeds-<recipe name>[-<overrides>])")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained at once (processes)")
    args = ap.parse_args()
    over = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
    exp = experiment.load_recipe(args.recipe, over)
    tag = "-".join(f"{k}{v}" for k, v in over.items()).replace("/", "_")
    out = Path(args.out or f"runs/seeds-{exp.name}{'-' + tag if tag else ''}")
    t0 = time.time()
    res = experiment.run_seeds(exp, out, args.seeds, jobs=args.jobs)
    a, g, sp = res["after"], res["gain"], res["spread"]
    rows = experiment.heldout_rows(exp, view_size=nano.NanoConfig().image_size)  # prompts and ids (any view size)
    after = experiment.seed_breakdown(res, rows).query("stage == 'after'")
    per_seed_values = {by: {group: [round(float(v), 3) for v in part.sort_values("seed")["accuracy"]]
                            for group, part in after[after["by"] == by].groupby("group")}
                       for by in ("photo", "answer cell")}
    per_photo, per_cell = per_seed_values["photo"], per_seed_values["answer cell"]
    locked = {}
    if exp.question_type == "pair":
        cells = experiment.seed_rollout_cells(exp, out, args.seeds, window=25)
        atomic_write_text(out / "rollout_cells.csv", cells.to_csv(index=False))
        last = cells[cells["first_step"] == cells["first_step"].max()]
        locked = {int(s): [f"{r.answer} as ({r.letter})" for r in part.itertuples()
                           if r.accuracy < 0.1 and r.zero_std >= 0.8] for s, part in last.groupby("seed")}
    rec = {"recipe": args.recipe, "overrides": over, "seeds": args.seeds, "per_seed": res["table"].to_dict("records"),
           "per_photo": per_photo, "per_answer_cell": per_cell,
           "locked_cells_last_window": locked, "base": res["before"]["mean"], "after": a, "gain": g,
           "spread": sp, "wall_s": round(time.time() - t0, 1)}
    print(json.dumps(rec, indent=1, default=str))
    seeds = " / ".join(f"{100 * x:.1f}" for x in res["table"]["after"])
    print(f"| {exp.size} {exp.question_type} | {100 * res['before']['mean']:.1f}% | {seeds} | "
          f"{100 * a['mean']:.1f}% ({100 * a['low']:.1f}–{100 * a['high']:.1f}%) | {100 * sp['min']:.1f}% | "
          f"{100 * sp['max']:.1f}% |")


if __name__ == "__main__":
    main()
