"""GRPO as the notebook does it, on a given checkpoint. Usage: grpo_run.py NAME CKPT '{grpo overrides}'"""
import json, sys, time
ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent; sys.path.insert(0, str(ROOT))
from jrl_core import nano, train, evaluate
from jrl_core.images import load_photos, sample_views
from jrl_core.puzzles import PuzzleSpec, build_rows
name, ckpt, ov = sys.argv[1], sys.argv[2], json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")
seed = ov.pop("seed", 0)
settings = train.preset("nano", seed=seed, **ov)
policy, processor = nano.load_model(ckpt)
spec = PuzzleSpec(m=2, n=1, question_type="pair", think=False)
test = evaluate.test_rows(spec, n_items=300, seed=0)
t = time.time()
before = evaluate.evaluate(policy, processor, test, max_new_tokens=settings.max_completion_length, progress=False)
print("before", before.summary(), round(time.time() - t, 1), flush=True)
n_rows = settings.steps * settings.prompts_per_step
views = sample_views(load_photos("skimage", "train"), n_rows, seed=1000 + seed)
rows = build_rows(views, spec, n_items=n_rows, seed=f"train:{seed}")
t = time.time()
trainer, log = train.train_grpo(policy, processor, rows, settings, ROOT / "runs" / f"grpo_{name}", save_final=False,
                                disable_tqdm=True)
grpo_s = time.time() - t
after = evaluate.evaluate(trainer.model, processor, test, max_new_tokens=settings.max_completion_length, progress=False)
print("after", after.summary(), flush=True)
cols = [c for c in log.columns if "reward" in c and "std" not in c][:3]
print(log[["step", *cols]].iloc[::10].to_string(), flush=True)
rec = {"name": name, "ckpt": ckpt, "settings": ov, "seed": seed, "before": before.summary(), "after": after.summary(),
       "grpo_s": round(grpo_s, 1)}
print(json.dumps(rec), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "grpo_results.jsonl", "a") as f: f.write(json.dumps(rec) + "\n")
