"""Nano speed, old code against new, side by side in one run (issue: a nano base model that makes RL
reproducible; targets ≥ 4× GRPO steps per second and ≥ 3× nano build speed).

    .venv/bin/python benchmarks/nano_speed.py [--grpo-steps 6] [--build-steps 20] [--repeats 2]

Variants differ only in the fields the speed work changed (``VARIANTS``: nano configuration overrides, GRPO
settings overrides): ``v4`` is recipe v4 (space-split BPE) with every rollout's image encoded separately (the
code of the issue), ``v5`` the v5 tokenizer alone, ``v5+images`` adds each distinct image encoded once per pass
(``GRPOSettings.share_images``), ``v6`` the current default: also each distinct prompt scored once per log-prob pass
(``GRPOSettings.share_prompts``, :mod:`jrl_core.shared_prompts`) and, in the build, the encoder trained in stage 2
too (recipe v6: more work per instruction-stage step, a stronger base); ``+completions`` adds TRL's LM head projecting
only completion positions (``GRPOSettings.score_completions_only``, :mod:`jrl_core.completion_scoring`), and
``+prefill`` a generation's prefill running each distinct prompt once (``GRPOSettings.share_prefill``), and
``+preprocessing`` the image processor running once per distinct image of a step
(``GRPOSettings.share_preprocessing``, :class:`jrl_core.shared_images.PreprocessSharing`), and ``+decoding``
a step's rows decoding each distinct stored image once (``GRPOSettings.share_decoding``,
:class:`jrl_core.shared_images.DecodeSharing`), ``+positions`` each distinct row layout's rotary positions computed
once per call (``GRPOSettings.share_positions``, :mod:`jrl_core.shared_positions`), ``+heap``, glibc keeping
freed blocks in the heap so that a step's large tensors reuse pages (``GRPOSettings.keep_freed_memory``,
:mod:`jrl_core.memory`), and ``+rows``, the current default, the processor's batched calls running each distinct
prompt once (``GRPOSettings.share_rows``, :mod:`jrl_core.shared_rows`). Every GRPO measurement runs in a fresh process (the
heap setting is process-wide). The nano configuration
is the current one (recipe v10) in every variant but for the fields named. Each gets a randomly initialised model of its
configuration (speed does not depend on what the weights learned, except that an untrained model always writes
the whole 8-token completion budget, the same for all). Measured per variant, in alternating order (v4, v5,
v5+images, v6, v4, …) so that machine drift hits all; the build is measured once per nano configuration (image
sharing does not touch pretraining):

* GRPO: seconds per step of TRL's ``GRPOTrainer`` with the nano preset (16 prompts × 8 completions, β 0.04,
  the reference model's forward included) on the RQ1 training rows, the first step (warm-up) excluded;
* build: steady-state seconds per step of each pretraining stage (vision encoder, visual instruction; fixed costs
  cancelled by differencing two step counts), and the whole build at v4's step counts (1,200 + 600) from them.

Prints one table with the absolute figures and each variant's ratio to v4 (higher = faster).

``--base DIR`` measures the GRPO step only, from a trained checkpoint (e.g. ``data/nano/nano-v15``, whose policy
writes the 2–3-token completions of a real run), for the variants of the current nano configuration (``v6`` on, or
those named by ``--variants``); ratios are then to the first of them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from jrl_core import experiment, nano, perception, train

_S19 = {"share_rows": False}  # the session-19 change off
_NEW = {"share_positions": False, "keep_freed_memory": False, **_S19}  # the session-18 changes off too
_DEC = {"share_decoding": False, **_NEW}  # the session-16 change off too
_PRE = {"share_preprocessing": False, **_DEC}  # the session-13 change off too
_OLD_HEAD = {"score_completions_only": False, "share_prefill": False, **_PRE}  # the session-11 changes off too
VARIANTS = {  # name -> (nano.NanoConfig overrides, train.GRPOSettings overrides)
    "v4": ({"tokenizer": "words", "freeze_vision": True}, {"share_images": False, "share_prompts": False, **_OLD_HEAD}),
    "v5": ({"freeze_vision": True}, {"share_images": False, "share_prompts": False, **_OLD_HEAD}),
    "v5+images": ({"freeze_vision": True}, {"share_prompts": False, **_OLD_HEAD}),
    "v6": ({}, dict(_OLD_HEAD)),
    "+completions": ({}, {"share_prefill": False, **_PRE}),
    "+prefill": ({}, dict(_PRE)),
    "+preprocessing": ({}, dict(_DEC)),
    "+decoding": ({}, dict(_NEW)),
    "+positions": ({}, {"keep_freed_memory": False, **_S19}),
    "+heap": ({}, dict(_S19)),
    "+rows": ({}, {}),
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


def grpo_seconds_per_step(cfg: nano.NanoConfig, steps: int, out: Path, grpo_over: dict | None = None,
                          base: str | None = None) -> float:
    """Median seconds per GRPO step (first step excluded) from a random model of ``cfg``, or from ``base``."""
    if base is None:
        processor = nano.build_processor(cfg)
        base = out / "base"  # TRL builds its reference model from the policy's folder
        nano.build_model(cfg, processor.tokenizer).save_pretrained(base)
        processor.save_pretrained(base)
    model, processor = nano.load_model(str(base))
    settings = dataclasses.replace(train.NANO, steps=steps, report_to=(), save_fraction=0.0, **(grpo_over or {}))
    exp = experiment.load_recipe("nano/rq1_2x1_pair")
    rows = experiment.train_rows(exp, steps=steps, prompts_per_step=settings.prompts_per_step,
                                 view_size=nano.view_size(processor))
    timer = StepTimer()
    train.train_grpo(model, processor, rows, settings, out, save_final=False, callbacks=[timer], disable_tqdm=True,
                     log_completions=False)
    return statistics.median(timer.times[1:])


def isolated_grpo_seconds_per_step(*args, **kwargs) -> float:
    """:func:`grpo_seconds_per_step` in a fresh spawned process, so that a process-wide setting of one variant
    (``keep_freed_memory`` sets the C allocator) cannot reach the next."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(grpo_seconds_per_step, *args, **kwargs).result()


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
    ap.add_argument("--base", help="a trained nano checkpoint: GRPO steps only, variants v6 on")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="NAME",
                    help=f"with --base: only these variants (ratios to the first); of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    if args.variants and not args.base:
        ap.error("--variants needs --base (without it every variant is measured, the build included).")
    if args.base:
        trained_base(args)
        return
    res: dict[str, dict[str, list[float]]] = {v: {"grpo": [], "vision": [], "instruct": []} for v in VARIANTS}
    built: dict[str, str] = {}  # nano overrides (as text) -> the first variant measured with them
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, (nano_over, grpo_over) in VARIANTS.items():
                cfg = dataclasses.replace(nano.NanoConfig(), **nano_over)
                res[name]["grpo"].append(isolated_grpo_seconds_per_step(cfg, args.grpo_steps,
                                                                        Path(tmp) / f"{name}-{r}", grpo_over))
                owner = built.setdefault(repr(sorted(nano_over.items())), name)
                if owner == name:
                    v, i = build_seconds_per_step(cfg, args.build_steps)
                    res[name]["vision"].append(v)
                    res[name]["instruct"].append(i)
                else:  # the same nano configuration: the same build
                    v, i = res[owner]["vision"][-1], res[owner]["instruct"][-1]
                print(f"repeat {r} {name}: GRPO {res[name]['grpo'][-1]:.2f} s/step, vision {v:.3f} s/step, "
                      f"instruction {i:.3f} s/step" + ("" if owner == name else f" (build as {owner})"), flush=True)
    med = {v: {k: statistics.median(x) for k, x in d.items() if x} for v, d in res.items()}
    for v, d in med.items():
        if "vision" not in d:
            owner = built[repr(sorted(VARIANTS[v][0].items()))]
            d.update(vision=med[owner]["vision"], instruct=med[owner]["instruct"])
        d["build"] = d["vision"] * 1200 + d["instruct"] * 600  # the same work for all: v4's step counts
    names = list(VARIANTS)
    print("\n| measure | " + " | ".join(names) + " | " + " | ".join(f"v4 / {n}" for n in names[1:]) + " |")
    print("|---" * (2 * len(names)) + "|")
    for key, label in (("grpo", "GRPO step (16 prompts x 8), s"), ("vision", "vision-stage step, s"),
                       ("instruct", "instruction-stage step, s"), ("build", "build at v4's steps (1,200 + 600), s")):
        print(f"| {label} | " + " | ".join(f"{med[n][key]:.3f}" for n in names) + " | "
              + " | ".join(f"{med['v4'][key] / med[n][key]:.2f}x" for n in names[1:]) + " |")


def trained_base(args) -> None:
    """GRPO seconds per step from ``args.base`` for the variants of the current nano configuration, alternating."""
    names = [n for n, (nano_over, _) in VARIANTS.items() if not nano_over]
    if args.variants:
        other = [n for n in args.variants if n not in names]
        if other:
            raise SystemExit(f"--variants {' '.join(other)}: these change the nano configuration, so they have no "
                             f"trained base; with --base choose among {', '.join(names)}.")
        names = list(dict.fromkeys(args.variants))
    res: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in names:
                res[name].append(isolated_grpo_seconds_per_step(nano.NanoConfig(), args.grpo_steps,
                                                                Path(tmp) / f"{name}-{r}", VARIANTS[name][1],
                                                                base=args.base))
                print(f"repeat {r} {name}: GRPO {res[name][-1]:.3f} s/step", flush=True)
    med = {n: statistics.median(x) for n, x in res.items()}
    print(f"\n| GRPO step from {args.base} (16 prompts x 8), s | " + " | ".join(names) + " | "
          + " | ".join(f"{names[0]} / {n}" for n in names[1:]) + " |")
    print("|---" * (2 * len(names)) + "|")
    print("| median | " + " | ".join(f"{med[n]:.3f}" for n in names) + " | "
          + " | ".join(f"{med[names[0]] / med[n]:.2f}x" for n in names[1:]) + " |")


if __name__ == "__main__":
    main()
