"""GRPO as the RQ1 notebook does it (its recipe, its training rows), on a given checkpoint, with held-out
evaluations along the way.

    PYTHONPATH=. .venv/bin/python benchmarks/nano_grpo_run.py NAME CKPT '{"steps": 100, "eval_every": 25, ...}'

``CKPT``: a checkpoint folder or ``nano`` (the default build). The JSON holds GRPO settings (``train.GRPOSettings``
fields, set as ``grpo.<key>`` on the recipe) plus ``seed``, ``rewards`` / ``reward_weights`` (default: the mode's,
accuracy + format at 1.0 + 0.5), ``recipe`` (default ``nano/rq1_2x1_pair``), any dotted recipe key
(``"nano.pretrain_steps": 3``) and ``eval_every`` (greedy evaluation on the 300 held-out 2x1 pair puzzles every N
steps; 0 = before/after only). The training rows are ``experiment.train_rows`` of that recipe, the ones
``jrl train --recipe nano/rq1_2x1_pair --set seed=… --set grpo.steps=…`` trains on. Prints and appends one record
to ``runs/grpo_results.jsonl``.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from heldout import RECIPE, EvalEvery, heldout_eval, load, max_new_tokens  # noqa: E402

from jrl_core import experiment, nano, train  # noqa: E402

TOP_LEVEL = ("seed", "rewards", "reward_weights")
"""JSON keys that are top-level recipe fields; other undotted keys are GRPO settings (``grpo.<key>``)."""

name, ckpt, ov = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")
recipe = ov.pop("recipe", RECIPE)
eval_every = ov.pop("eval_every", 0)
overrides = {"model": ckpt, **{k if k in TOP_LEVEL or "." in k else f"grpo.{k}": v for k, v in ov.items()}}
exp, policy, processor, test = load(recipe, overrides)
settings = exp.grpo_settings()
budget = max_new_tokens(exp)


def ev(model):
    return heldout_eval(model, processor, test, budget)


before = ev(policy)
print("before", before, flush=True)
rows = experiment.train_rows(exp, steps=settings.steps, prompts_per_step=settings.prompts_per_step,
                             view_size=nano.view_size(processor))
cb = EvalEvery(processor, test, eval_every, budget)
kl = exp.kl_callback(settings.steps)
t = time.time()
trainer, log = train.train_grpo(policy, processor, rows, settings, ROOT / "runs" / f"grpo_{name}", save_final=False,
                                disable_tqdm=True, callbacks=[cb, *([kl] if kl else [])],
                                reward_names=exp.reward_setup()[0], lora=exp.lora_settings(),
                                freeze_vision=exp.freeze_vision, **exp.trainer)
grpo_s = time.time() - t
after = ev(trainer.model)
print("after", after, flush=True)
cols = [c for c in log.columns if c.startswith("rewards/") and c.endswith("/mean")] + ["frac_reward_zero_std", "kl"]
print(log[["step", *[c for c in cols if c in log]]].iloc[::10].to_string(), flush=True)
rec = {"name": name, "ckpt": ckpt, "recipe": recipe, "settings": ov, "seed": exp.seed, "before": before, "after": after,
       "trace": cb.trace, "grpo_s": round(grpo_s, 1), "train_rows_sha256": experiment.rows_digest(rows),
       "heldout_sha256": experiment.rows_digest(test)}
print(json.dumps(rec), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "grpo_results.jsonl", "a") as f:
    f.write(json.dumps(rec) + "\n")
