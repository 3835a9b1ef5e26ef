"""How fast can a nano build step be on this CPU? A roofline for the issue's build target (≥ 3× build speed).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/nano_build_roofline.py [--steps 40] [--warmup 5] [--profile-steps 8]

Runs the two pretraining stages of the current nano configuration (recipe defaults but no thinking-mode items, as
in ``benchmarks/nano_speed.py``; untrained weights: the arithmetic of a step does not depend on what the weights
learned) for a few steps each, through the real
``perception.pretrain_vision`` / ``perception.pretrain`` code, and

* times the optimisation loop without a profiler (steady state: the difference between ``warmup + steps`` and
  ``warmup`` steps, after one throw-away run; pool generation and evaluation are outside the loop);
* profiles ``profile_steps`` steps with ``torch.profiler`` (``with_flops=True``) for the self CPU time per step of the large
  ops: matrix products (``mm``, ``addmm``, ``bmm``, ``linear``), convolution (the patch embedding, forward and
  backward) and attention (``scaled_dot_product_*``); "rest" is the unprofiled step time less these (small ops,
  item generation, augmentation, tokenisation, the processor, the optimiser). The profiler slows small ops many
  times over, so only the large ops' times are read from it;
* measures this machine's float32 matrix-product rate on a large square product (the peak a build step could
  reach with the same arithmetic);
* prints, per stage (and for a build at the recipe's and at v4's step counts), the step time and its split, the step's matrix-product FLOPs (profiler count; the
  convolution is counted as the matrix product it is, forward and weight gradient), the rate its products ran
  at, ``bound_at_achieved_rate`` (the speedup of a step that did nothing but its products, at today's rate),
  ``bound_products_alone`` (the same with every product timed alone, at its own shapes, on fresh contiguous inputs:
  the best this machine does for exactly this arithmetic) and ``bound`` (at the peak rate of a large square
  product, which these thin products do not reach). A
  speed target above these bounds cannot be met without changing the arithmetic (a smaller model, fewer or
  smaller images, lower precision).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jrl_core import nano, perception  # noqa: E402

KINDS = {  # profiler op name -> kind
    "aten::mm": "matmul", "aten::addmm": "matmul", "aten::bmm": "matmul", "aten::linear": "matmul",
    "aten::mkldnn_convolution": "conv", "aten::convolution_backward": "conv",
}


def _kind(name: str) -> str:
    if "scaled_dot_product" in name:
        return "attention"
    return KINDS.get(name, "other")


def peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 GFLOPS of an ``n × n`` by ``n × n`` matrix product on this machine (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def standalone_seconds(op: str, shapes: list, repeats: int = 5) -> float | None:
    """Best-of-``repeats`` seconds of one matrix product ``op`` (``aten::mm``, ``aten::addmm`` or ``aten::bmm``) on fresh
    contiguous float32 inputs of the profiled ``shapes``; None for an op or shape list it does not know."""
    try:
        if op == "aten::mm":
            a, b = torch.randn(*shapes[0]), torch.randn(*shapes[1])
            fn = lambda: torch.mm(a, b)  # noqa: E731
        elif op == "aten::addmm":
            c, a, b = torch.randn(*shapes[0]), torch.randn(*shapes[1]), torch.randn(*shapes[2])
            fn = lambda: torch.addmm(c, a, b)  # noqa: E731
        elif op == "aten::bmm":
            a, b = torch.randn(*shapes[0]), torch.randn(*shapes[1])
            fn = lambda: torch.bmm(a, b)  # noqa: E731
        else:
            return None
    except (TypeError, RuntimeError, IndexError):
        return None
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


class _FitProbe:
    """Wraps ``perception._fit`` (the optimisation loop both stages share) to time it and, when asked, profile it:
    pool generation and held-out evaluation stay outside both."""

    def __init__(self):
        self.seconds = 0.0
        self.profile = False
        self.events = None
        self._fit = perception._fit

    def __call__(self, *args, **kwargs):
        from torch.profiler import ProfilerActivity, profile

        t = time.perf_counter()
        if self.profile:
            with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
                out = self._fit(*args, **kwargs)
            self.events = prof.key_averages(group_by_input_shape=True)
        else:
            out = self._fit(*args, **kwargs)
        self.seconds = time.perf_counter() - t
        return out


def _run(stage: str, cfg: nano.NanoConfig, steps: int, probe: _FitProbe, *, profile: bool = False) -> float:
    """Seconds of ``steps`` optimisation steps of ``stage`` (a fresh model), profiled into ``probe.events`` if asked."""
    processor = nano.build_processor(cfg)
    model = nano.build_model(cfg, processor.tokenizer)
    small = dataclasses.replace(cfg, vision_pretrain_steps=steps, pretrain_steps=steps, pretrain_think_share=0.0,
                                vision_pretrain_pool=256)
    probe.profile = profile
    perception._fit = probe
    try:
        if stage == "vision":
            perception.pretrain_vision(model, processor, small, progress=False)
        else:
            perception.pretrain(model, processor, small, progress=False)
    finally:
        perception._fit = probe._fit
    return probe.seconds


def stage_figures(stage: str, cfg: nano.NanoConfig, steps: int, warmup: int, peak: float,
                  profile_steps: int = 8) -> dict:
    """One stage's unprofiled step time; per step, the profiled self time of its matrix products, convolution and
    attention (large ops, which the profiler's own overhead barely touches) and the rest of the unprofiled step;
    its matrix-product FLOPs (the convolution's included) and the rate products and convolution ran at together; and
    three bounds: the speedup if the step were only its products at the rate they run now
    (``bound_at_achieved_rate``), each timed alone at its own shapes (``bound_products_alone``; the convolution at
    the products' standalone rate) and at the machine's square-product peak (``bound``)."""
    probe = _FitProbe()
    _run(stage, cfg, 1, probe)  # one-time costs (lazy imports, kernel caches) outside the timing
    step_s = (_run(stage, cfg, warmup + steps, probe) - _run(stage, cfg, warmup, probe)) / steps
    _run(stage, cfg, profile_steps, probe, profile=True)
    by_kind: dict[str, float] = {}  # kind -> profiled self seconds over the profiled steps
    flops = standalone = 0.0  # product FLOPs and standalone product seconds over the profiled steps
    for ev in probe.events:
        kind = _kind(ev.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + ev.self_cpu_time_total / 1e6
        if kind == "matmul":
            flops += ev.flops or 0
            alone = standalone_seconds(ev.key, ev.input_shapes)
            standalone += ev.count * (alone if alone is not None else ev.self_cpu_time_total / 1e6 / ev.count)
    conv = _conv_flops(cfg)  # per step; the profiler does not count convolution FLOPs on CPU
    per_step = flops / profile_steps + conv
    large = {k: by_kind.get(k, 0.0) / profile_steps for k in ("matmul", "conv", "attention")}
    mm_s = large["matmul"] + large["conv"]
    # products alone: every profiled product timed standalone at its own shapes, the patch embedding (profiled as a
    # convolution) at the rate of the step's other products
    alone_s = (standalone / profile_steps) * (1 + conv * profile_steps / flops) if flops else 0.0
    return {
        "stage": stage, "step_s": round(step_s, 4),
        "per_step_s": {k: round(v, 4) for k, v in large.items()} | {"rest": round(step_s - sum(large.values()), 4)},
        "matmul_gflop_per_step": round(per_step / 1e9, 3),
        "matmul_gflops_achieved": round(per_step / mm_s / 1e9, 1) if mm_s else None,
        "ideal_step_s": round(per_step / (peak * 1e9), 4),
        "bound_at_achieved_rate": round(step_s / mm_s, 2) if mm_s else None,
        "products_alone_s": round(alone_s, 4),
        "bound_products_alone": round(step_s / alone_s, 2) if alone_s else None,
        "bound": round(step_s / (per_step / (peak * 1e9)), 2) if per_step else None,
    }


def _conv_flops(cfg: nano.NanoConfig) -> float:
    """Patch embedding FLOPs per step (forward + weight gradient) of a batch of ``cfg.pretrain_batch`` images: each
    image has (image_size / patch_size)² patches of 3 × 2 × patch_size² values projected to ``vision_hidden``."""
    patches = (cfg.image_size // cfg.patch_size) ** 2 * cfg.pretrain_batch
    return 2 * 2 * patches * 3 * 2 * cfg.patch_size ** 2 * cfg.vision_hidden


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per stage (after --warmup)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile-steps", type=int, default=8, help="profiled steps per stage")
    args = ap.parse_args()
    cfg = nano.NanoConfig()
    peak = peak_gflops()
    print(f"float32 matrix-product peak (2048^3, {torch.get_num_threads()} threads): {peak:.0f} GFLOPS", flush=True)
    rows = [stage_figures(s, cfg, args.steps, args.warmup, peak, args.profile_steps) for s in ("vision", "instruction")]
    for r in rows:
        print(json.dumps(r), flush=True)
    build = {r["stage"]: r for r in rows}
    for label, n_vision, n_instruct in (("the recipe's", cfg.vision_pretrain_steps, cfg.pretrain_steps),
                                        ("v4's (benchmarks/nano_speed.py)", 1200, 600)):
        now, alone, ideal = (build["vision"][k] * n_vision + build["instruction"][k] * n_instruct
                             for k in ("step_s", "products_alone_s", "ideal_step_s"))
        print(f"build at {label} step counts ({n_vision:,} + {n_instruct:,}): {now:.0f} s now; {alone:.0f} s if every "
              f"step were only its matrix products, each at its best alone (bound {now / alone:.2f}x); {ideal:.0f} s "
              f"at the square-product peak (bound {now / ideal:.2f}x)")

if __name__ == "__main__":
    main()
