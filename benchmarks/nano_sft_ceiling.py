"""Diagnostic: how far does *supervised* training on 2x1 jigsaw labels take a nano checkpoint?

    PYTHONPATH=. .venv/bin/python benchmarks/nano_sft_ceiling.py CKPT '{"steps": 300, "batch_size": 32, "learning_rate": 1e-3}'

Not an RL result and never reported as one: it bounds what GRPO could reach from the same base
in a similar budget (if dense labels cannot teach the swap, a 1-bit reward will not either).
Evaluates greedy accuracy, valid share and share of "A" on the 300 held-out 2x1 pair puzzles
before and after, and every ``eval_every`` steps; appends to ``runs/sft_ceiling.jsonl``.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from heldout import SPEC, EvalEvery, heldout_eval, test_rows  # noqa: E402

from jrl_core import nano, train  # noqa: E402
from jrl_core.images import load_photos, sample_views  # noqa: E402
from jrl_core.puzzles import build_rows  # noqa: E402

ckpt, ov = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
eval_every = ov.pop("eval_every", 50)
settings = train.SFTSettings(**{"steps": 300, "batch_size": 32, "learning_rate": 1e-3, **ov})
model, processor = nano.load_model(nano.resolve_model(ckpt))
test = test_rows()


def ev(m):
    return heldout_eval(m, processor, test)


before = ev(model)
print("before", before, flush=True)
n = settings.steps * settings.batch_size
rows = build_rows(sample_views(load_photos("skimage", "train"), n, seed=77), SPEC, n_items=n, seed="sft-ceiling")
cb = EvalEvery(processor, test, eval_every)
start = time.time()
trainer, log = train.train_sft(model, processor, train.sft_rows(rows), settings, ROOT / "runs" / "sft_ceiling",
                               save_final=False, callbacks=[cb])
rec = {"ckpt": ckpt, "settings": ov, "before": before, "after": ev(trainer.model), "trace": cb.trace,
       "seconds": round(time.time() - start, 1)}
print(json.dumps(rec), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "sft_ceiling.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
