"""Nano speed, old recipe against new, side by side in one run (issue: a nano base model that makes RL
reproducible; targets ≥ 4× GRPO steps per second and ≥ 3× nano build speed).

    .venv/bin/python benchmarks/nano_speed.py [--grpo-steps 6] [--build-steps 20] [--repeats 2]

Variants are nano configurations that differ only in the fields the speed work changed (``VARIANTS``):
``v4`` is recipe v4 (space-split BPE), ``v5`` the current default. Each variant gets a randomly initialised
model of its configuration (speed does not depend on what the weights learned, except that an untrained
model always writes the whole 8-token completion budget, the same for both). Measured per variant, in
alternating order (v4, v5, v4, v5, …) so that machine drift hits both:

* GRPO: seconds per step of TRL's ``GRPOTrainer`` with the nano preset (16 prompts × 8 completions, β 0.04,
  the reference model's forward included) on the RQ1 training rows, the first step (warm-up) excluded;
* build: steady-state seconds per step of each pretraining stage (vision encoder, visual instruction; fixed costs
  cancelled by differencing two step counts), and the whole build at v4's step counts (1,200 + 600) from them.

Prints one table with both absolute figures and the ratios v4 / v5 (higher = v5 faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from jrl_core import experiment, nano, perception, train

VARIANTS = {
    "v4": {"tokenizer": "words"},
    "v5": {},
}


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self):
        self.times: list[float] = []
        self._t = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def grpo_seconds_per_step(cfg: nano.NanoConfig, steps: int, out: Path) -> float:
    processor = nano.build_processor(cfg)
    folder = out / "base"  # TRL builds its reference model from the policy's folder
    nano.build_model(cfg, processor.tokenizer).save_pretrained(folder)
    processor.save_pretrained(folder)
    model, processor = nano.load_model(str(folder))
    settings = dataclasses.replace(train.NANO, steps=steps, report_to=(), save_fraction=0.0)
    exp = experiment.load_recipe("nano/rq1_2x1_pair")
    rows = experiment.train_rows(exp, steps=steps, prompts_per_step=settings.prompts_per_step,
                                 view_size=nano.view_size(processor))
    timer = StepTimer()
    train.train_grpo(model, processor, rows, settings, out, save_final=False, callbacks=[timer], disable_tqdm=True,
                     log_completions=False)
    return statistics.median(timer.times[1:])


def build_seconds_per_step(cfg: nano.NanoConfig, steps: int) -> tuple[float, float]:
    """Steady-state seconds per step of each pretraining stage: each stage runs ``steps`` and ``3 × steps`` steps
    (same item pool, same held-out evaluation) and the difference is divided by ``2 × steps``, so fixed costs
    (pool generation, evaluation) cancel."""
    processor = nano.build_processor(cfg)
    times = {}
    for k in (steps, 3 * steps):
        small = dataclasses.replace(cfg, vision_pretrain_steps=k, pretrain_steps=k, pretrain_think_share=0.0,
                                    vision_pretrain_pool=256)
        model = nano.build_model(cfg, processor.tokenizer)
        t = time.perf_counter()
        perception.pretrain_vision(model, processor, small, progress=False)
        t_vision = time.perf_counter() - t
        t = time.perf_counter()
        perception.pretrain(model, processor, small, progress=False)
        times[k] = (t_vision, time.perf_counter() - t)
    return tuple((times[3 * steps][i] - times[steps][i]) / (2 * steps) for i in (0, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grpo-steps", type=int, default=6)
    ap.add_argument("--build-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    res: dict[str, dict[str, list[float]]] = {v: {"grpo": [], "vision": [], "instruct": []} for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, over in VARIANTS.items():
                cfg = dataclasses.replace(nano.NanoConfig(), **over)
                res[name]["grpo"].append(grpo_seconds_per_step(cfg, args.grpo_steps, Path(tmp) / f"{name}-{r}"))
                v, i = build_seconds_per_step(cfg, args.build_steps)
                res[name]["vision"].append(v)
                res[name]["instruct"].append(i)
                print(f"repeat {r} {name}: GRPO {res[name]['grpo'][-1]:.2f} s/step, vision {v:.3f} s/step, "
                      f"instruction {i:.3f} s/step", flush=True)
    med = {v: {k: statistics.median(x) for k, x in d.items()} for v, d in res.items()}
    for v in med:  # the same work for both: v4's step counts (v5 ships a longer build, made once)
        med[v]["build"] = med[v]["vision"] * 1200 + med[v]["instruct"] * 600
    old, new = med["v4"], med["v5"]
    print("\n| measure | v4 (old recipe) | v5 (current) | v4 / v5 |\n|---|---|---|---|")
    for key, label, unit in (("grpo", "GRPO step (16 prompts x 8)", "s"), ("vision", "vision-stage step", "s"),
                             ("instruct", "instruction-stage step", "s"), ("build", "build at v4's steps (1,200 + 600)", "s")):
        print(f"| {label} | {old[key]:.3f} {unit} | {new[key]:.3f} {unit} | {old[key] / new[key]:.2f}x |")


if __name__ == "__main__":
    main()
