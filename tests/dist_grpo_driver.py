"""A tiny multi-process GRPO run, launched by ``accelerate launch`` from tests/test_distributed.py.

Each process loads (or builds) a tiny nano model, builds a few 2x1 pair puzzle rows from the
training photos, trains GRPO through :func:`jrl_core.train.train_grpo` for a few steps and writes
``<out>/rank<r>.json`` with what the test compares across processes: rank, world size, global
step, the effective batch, and a SHA-256 of every parameter after training (data parallelism
must keep the replicas identical). The main process alone writes ``<out>/run/final/`` (TRL's
``save_model``).

Run by hand (two CPU processes, gloo)::

    ACCELERATE_USE_CPU=true CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no tests/dist_grpo_driver.py --out /tmp/dist
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import sys
from pathlib import Path

import torch


def parameter_hash(model) -> str:
    """SHA-256 over every parameter's name and float32 bytes, in name order."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def tiny_model(model_dir: str | None, cache: Path, state):
    """(model, processor): from ``model_dir`` if given, else a random-init tests/conftest.py TINY build.

    The main process builds first and the others then find the finished folder: concurrent
    ``build_nano`` calls would replace the folder while another process reads it.
    """
    from jrl_core import nano

    if model_dir is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from conftest import TINY

        with state.main_process_first():
            model_dir = str(nano.build_nano(dataclasses.replace(TINY, pretrain_steps=0, vision_pretrain_steps=0), cache_dir=cache,
                                            progress=False))
    return nano.load_model(model_dir)


SEEN_IMAGES: list[str] = []
"""``image_id`` of every completion this process scored (TRL scores each process's own slice)."""


def length_reward(completions, image_id=None, **kwargs) -> list[float]:
    """A rule-based reward that varies within a group (non-zero advantages even for a random model)."""
    SEEN_IMAGES.extend(image_id or [])
    return [float(len(str(c)) % 3) / 2 for c in completions]


def main(argv: list[str] | None = None) -> None:
    from accelerate import PartialState

    from jrl_core import train
    from jrl_core.images import load_photos, sample_views
    from jrl_core.puzzles import PuzzleSpec, build_rows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for rank<r>.json and run/")
    ap.add_argument("--model", default=None, help="checkpoint folder; default: build a random TINY nano model")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=56, help="view side in pixels (TINY.image_size)")
    ap.add_argument("--per-device-batch", type=int, default=4, help="completions per forward/backward per process")
    args = ap.parse_args(argv)

    # Without CUDA, accelerate's MULTI_CPU (gloo) needs cpu=True; TrainingArguments reads the same flag from
    # ACCELERATE_USE_CPU, so set it for both (a PartialState made with cpu=False would claim a single process).
    if not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"
    state = PartialState(cpu=not torch.cuda.is_available())
    world, rank = state.num_processes, state.process_index
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, processor = tiny_model(args.model, out / "cache", state)
    settings = dataclasses.replace(
        train.NANO, steps=args.steps, prompts_per_step=args.prompts_per_step, num_generations=args.num_generations,
        per_device_batch=args.per_device_batch, warmup_ratio=0.0, report_to=(), save_fraction=0.0,
    )
    init_hash = parameter_hash(model)
    views = sample_views(load_photos("skimage", "train"), 8, seed=0, size=args.image_size)
    rows = build_rows(views, PuzzleSpec(m=2, n=1, question_type="pair"), n_items=args.steps * args.prompts_per_step,
                      seed=0)
    trainer, log = train.train_grpo(
        model, processor, rows, settings, out / "run", reward_names=("accuracy", length_reward),
    )
    a = trainer.args
    record = {
        "rank": rank,
        "world_size": world,
        "trainer_world_size": a.world_size,
        "global_step": trainer.state.global_step,
        "per_device_batch": a.per_device_train_batch_size,
        "gradient_accumulation_steps": a.gradient_accumulation_steps,
        "effective_batch": a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size,
        "generation_batch_size": a.generation_batch_size,
        "completions_per_step": settings.completions_per_step(),
        "distributed_type": str(state.distributed_type),
        "backend": state.backend,
        "init_param_hash": init_hash,
        "param_hash": parameter_hash(trainer.model),
        "images_scored": sorted(set(SEEN_IMAGES)),
        "logged_steps": len(log),
        "train_runtime_s": next((h["train_runtime"] for h in trainer.state.log_history if "train_runtime" in h), None),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record, indent=1))
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    main()
