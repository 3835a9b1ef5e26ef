"""GRPO as the RQ1 notebook does it, on a given checkpoint, with held-out evaluations along the way.

    PYTHONPATH=. .venv/bin/python benchmarks/nano_grpo_run.py NAME CKPT '{"steps": 100, "eval_every": 25, ...}'

``CKPT``: a checkpoint folder or ``nano`` (the default build). The JSON holds GRPO settings
(``train.preset`` fields) plus ``seed``, ``eval_every`` (greedy evaluation on the 300 held-out
2x1 pair puzzles every N steps; 0 = before/after only) and ``rewards`` (reward names, default
accuracy + format). Prints and appends one record to ``runs/grpo_results.jsonl``.
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

name, ckpt, ov = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")
seed = ov.pop("seed", 0)
eval_every = ov.pop("eval_every", 0)
reward_names = tuple(ov.pop("rewards", ("accuracy", "format")))
settings = train.preset("nano", seed=seed, **ov)
policy, processor = nano.load_model(nano.resolve_model(ckpt))
test = test_rows()


def ev(model):
    return heldout_eval(model, processor, test, settings.max_completion_length)


before = ev(policy)
print("before", before, flush=True)
n_rows = settings.steps * settings.prompts_per_step
views = sample_views(load_photos("skimage", "train"), n_rows, seed=1000 + seed)
rows = build_rows(views, SPEC, n_items=n_rows, seed=f"train:{seed}")
cb = EvalEvery(processor, test, eval_every, settings.max_completion_length)
t = time.time()
trainer, log = train.train_grpo(policy, processor, rows, settings, ROOT / "runs" / f"grpo_{name}", save_final=False,
                                disable_tqdm=True, callbacks=[cb], reward_names=reward_names)
grpo_s = time.time() - t
after = ev(trainer.model)
print("after", after, flush=True)
cols = [c for c in log.columns if c.startswith("rewards/") and c.endswith("/mean")] + ["frac_reward_zero_std", "kl"]
print(log[["step", *cols]].iloc[::10].to_string(), flush=True)
rec = {"name": name, "ckpt": ckpt, "settings": ov, "seed": seed, "before": before, "after": after, "trace": cb.trace,
       "grpo_s": round(grpo_s, 1)}
print(json.dumps(rec), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "grpo_results.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
