"""Build a nano checkpoint with NanoConfig overrides, time it, then run the linear probe.

    PYTHONPATH=. .venv/bin/python benchmarks/nano_build_probe.py NAME '{"image_size": 126, "merge_size": 3}'

Prints the build record (seconds, parameters, held-out pretraining accuracy per task) and the
probe report (``benchmarks/nano_probe.py``), and appends the report to ``runs/results.jsonl``.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import nano_probe  # noqa: E402

from jrl_core import nano  # noqa: E402

name, overrides = sys.argv[1], json.loads(sys.argv[2])
if "pretrain_tasks" in overrides:
    overrides["pretrain_tasks"] = tuple(overrides["pretrain_tasks"])
cfg = nano.NanoConfig(**overrides)
start = time.time()
path = nano.build_nano(cfg, progress=False)
build_s = time.time() - start
meta = json.loads((path / "nano.json").read_text())
print(json.dumps({"name": name, "overrides": overrides, "path": str(path), "build_s": round(build_s, 1),
                  "parameters": meta["parameters"],
                  "held_out": meta.get("pretraining", {}).get("held_out_accuracy")}), flush=True)
report = nano_probe.main(str(path))
report.update(name=name, build_s=round(build_s, 1))
print(json.dumps(report), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "results.jsonl", "a") as f:
    f.write(json.dumps(report) + "\n")
