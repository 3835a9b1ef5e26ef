"""Build a nano checkpoint with JSON overrides, time it, then run the probe. Usage: build_probe.py NAME '{json}'"""
import json, sys, time
ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent; sys.path.insert(0, str(ROOT))
from jrl_core import nano
sys.path.insert(0, str(ROOT / "benchmarks"))
import nano_probe
name, ov = sys.argv[1], json.loads(sys.argv[2])
if "pretrain_tasks" in ov: ov["pretrain_tasks"] = tuple(ov["pretrain_tasks"])
cfg = nano.NanoConfig(**ov)
t = time.time(); path = nano.build_nano(cfg, progress=False); build_s = time.time() - t
meta = json.load(open(path / "nano.json"))
print(json.dumps({"name": name, "overrides": ov, "path": str(path), "build_s": round(build_s, 1),
                  "parameters": meta["parameters"], "held_out": meta.get("pretraining", {}).get("held_out_accuracy")}), flush=True)
rep = nano_probe.main(str(path))
rep["name"] = name; rep["build_s"] = round(build_s, 1)
print(json.dumps(rep), flush=True)
(ROOT / "runs").mkdir(exist_ok=True)
with open(ROOT / "runs" / "results.jsonl", "a") as f: f.write(json.dumps(rep) + "\n")
