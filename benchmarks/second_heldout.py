"""Score finished multi-seed runs on the second held-out set: the five photos other packages ship.

    .venv/bin/python benchmarks/second_heldout.py RUN_DIR [RUN_DIR ...] [--recipe nano/rq1_2x1_pair] [--set size=1x2]

``RUN_DIR`` is a folder of ``benchmarks/nano_seeds.py`` or ``experiment.run_seeds`` (``seed<S>/grpo/final`` per
seed). The puzzles are ``experiment.second_heldout_rows`` of the recipe with the ``--set`` overrides (use the ones
the runs were trained with: the size and question type must match): the first held-out set's spec and seeds, cut
from matplotlib's, scikit-learn's and PyWavelets' photos (``images.PACKAGE_PHOTOS``), which neither the nano base
nor the default training recipes use and which no setting was chosen on. The base model (the recipe's ``model``)
is scored on the same puzzles. Greedy decoding, the recipe's evaluation budget.

Prints one JSON record per run folder (every seed's accuracy on both held-out sets, each second-set photo's
accuracy per seed, the mean with a bootstrap interval over seeds and photos, ``stats.bootstrap``) and a Markdown
row, and writes the record to ``<RUN_DIR>/second_heldout.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import max_new_tokens  # noqa: E402

from jrl_core import evaluate, experiment, nano, runs, stats  # noqa: E402
from jrl_core.atomic import atomic_write_text  # noqa: E402


def score(run_dir: Path, exp, rows, base_table) -> dict:
    """Every finished seed of ``run_dir`` scored on ``rows``; raises ``SystemExit`` naming the folder when it
    holds no finished seed."""
    tables, first = {}, {}
    for folder in sorted(run_dir.glob("seed*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1):
        final = folder / "grpo" / "final"
        metrics = runs.read_metrics(folder)
        if not folder.name[4:].isdigit() or not (final / "model.safetensors").is_file() or metrics is None:
            continue  # not a seed folder, or a seed that did not finish: never scored as if it had
        model, processor = nano.load_model(str(final))
        tables[int(folder.name[4:])] = evaluate.evaluate(model, processor, rows, max_new_tokens=max_new_tokens(exp),
                                                         progress=False).table
        first[int(folder.name[4:])] = round(float(metrics["metrics"]["acc_after"]), 3)
    if not tables:
        raise SystemExit(f"{run_dir}: no finished seed (seed<S>/grpo/final with metrics.json); run "
                         "benchmarks/nano_seeds.py first.")
    after = stats.bootstrap(tables)
    photos = sorted({stats.photo_of(i) for i in base_table["image_id"]})
    per_photo = {p: [round(float(t[t["image_id"].map(stats.photo_of) == p]["correct"].mean()), 3)
                     for t in tables.values()] for p in photos}
    return {"run_dir": str(run_dir), "seeds": list(tables),
            "second_heldout": {s: round(float(t["correct"].mean()), 3) for s, t in tables.items()},
            "first_heldout": first, "per_photo": per_photo,
            "base": round(float(base_table["correct"].mean()), 3),
            "base_per_photo": {p: round(float(base_table[base_table["image_id"].map(stats.photo_of) == p]
                                              ["correct"].mean()), 3) for p in photos},
            "after": after}


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
    t0 = time.time()
    base, processor = nano.load_model(nano.resolve_model(exp.model, **exp.nano), dtype=exp.dtype)
    rows = experiment.second_heldout_rows(exp, view_size=nano.view_size(processor))
    base_table = evaluate.evaluate(base, processor, rows, max_new_tokens=max_new_tokens(exp), progress=False).table
    for run_dir in args.run_dirs:
        rec = {"recipe": args.recipe, "overrides": over, **score(run_dir, exp, rows, base_table),
               "seconds": round(time.time() - t0, 1)}
        atomic_write_text(run_dir / "second_heldout.json", json.dumps(rec, indent=1, default=str))
        print(json.dumps(rec, indent=1, default=str))
        a = rec["after"]
        seeds = " / ".join(f"{100 * x:.1f}" for x in rec["second_heldout"].values())
        print(f"| {run_dir.name} | {exp.size} {exp.question_type} | {100 * rec['base']:.1f}% | {seeds} | "
              f"{100 * a['mean']:.1f}% ({100 * a['low']:.1f}–{100 * a['high']:.1f}%) |", flush=True)


if __name__ == "__main__":
    main()
