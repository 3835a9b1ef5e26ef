"""Diagnostic: how far does *supervised* training on pair-puzzle labels (2x1, or 1x2 with ``size``) take a nano checkpoint?

    PYTHONPATH=. .venv/bin/python benchmarks/nano_sft_ceiling.py CKPT '{"steps": 300, "batch_size": 32, "learning_rate": 1e-3}'

Not an RL result and never reported as one: it bounds what GRPO could reach from the same base
in a similar budget (if dense labels cannot teach the swap, a 1-bit reward will not either).
Trains the ``nano/sft_2x1_pair`` recipe's SFT stage on its rows (``experiment.train_rows(..., split="sft")``,
the ones ``jrl train --recipe nano/sft_2x1_pair`` trains on) with the JSON's SFT settings (``sft.<key>``;
default 300 steps of 32 at lr 1e-3; ``seed``, ``size`` (e.g. ``"1x2"``), ``photo_source`` and dotted recipe keys
pass through). Evaluates greedy accuracy,
valid share and share of "A" on the 300 held-out 2x1 pair puzzles before and after, and every ``eval_every``
steps; appends to ``runs/sft_ceiling.jsonl``.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from heldout import EvalEvery, heldout_eval, load, max_new_tokens  # noqa: E402

from jrl_core import experiment, nano, train  # noqa: E402

RECIPE = "nano/sft_2x1_pair"

ckpt, ov = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
eval_every = ov.pop("eval_every", 50)
sft = {"steps": 300, "batch_size": 32, "learning_rate": 1e-3, **ov}
TOP_LEVEL = ("seed", "size", "photo_source")
overrides = {"model": ckpt, **{k if k in TOP_LEVEL or "." in k else f"sft.{k}": v for k, v in sft.items()}}
exp, model, processor, test = load(RECIPE, overrides)
settings = exp.sft_settings()
budget = max_new_tokens(exp)


def ev(m):
    return heldout_eval(m, processor, test, budget)


before = ev(model)
print("before", before, flush=True)
rows = experiment.train_rows(exp, steps=settings.steps, prompts_per_step=settings.batch_size,
                             view_size=nano.view_size(processor), split="sft")
cb = EvalEvery(processor, test, eval_every, budget)
start = time.time()
trainer, log = train.train_sft(model, processor, train.sft_rows(rows), settings, ROOT / "runs" / "sft_ceiling",
                               save_final=False, callbacks=[cb])
rec = {"ckpt": ckpt, "recipe": RECIPE, "settings": ov, "before": before, "after": ev(trainer.model), "trace": cb.trace,
       "seconds": round(time.time() - start, 1), "sft_rows_sha256": experiment.rows_digest(rows)}
print(json.dumps(rec), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "sft_ceiling.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
