"""Evaluation throughput: batched greedy generation vs a per-sample loop on the nano model.

    .venv/bin/python benchmarks/eval_throughput.py [--model nano|untrained|FOLDER] [--n 128]
        [--batch 64] [--question pair|full] [--think] [--max-new-tokens 4] [--repeats 1] [--threads 0]

Both paths are ``jrl_core.evaluate.generate`` on the same fixed test puzzles (``test_rows``, 2x1):
``batch_size=--batch`` (left padding, one ``model.generate`` per batch) against ``batch_size=1``.
``--model nano`` uses the pretrained nano checkpoint (built once, ~7 min, then cached under
.cache/); ``untrained`` a random-init model of the default NanoConfig (no pretraining: it never
emits end-of-sequence early, so every completion runs to --max-new-tokens); a folder opens any
checkpoint. Issue target: batched >= 5x per-sample. Wall-clock figures on a shared CPU are noisy:
run with --repeats 3 and read the best.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from jrl_core import evaluate, nano
from jrl_core.puzzles import PuzzleSpec


def load(model: str):
    """(model, processor, label) for --model."""
    if model == "untrained":
        cfg = nano.NanoConfig(pretrain_steps=0, vision_pretrain_steps=0)
        processor = nano.build_processor(cfg)
        return nano.build_model(cfg, processor.tokenizer), processor, "untrained nano (random init, default size)"
    folder = nano.resolve_model(model)
    m, processor = nano.load_model(folder)
    return m, processor, f"{'pretrained nano' if model == 'nano' else 'checkpoint'} {folder}"


def best_rate(func, n: int, repeats: int) -> tuple[float, list[str]]:
    """Best samples/s over ``repeats`` runs of ``func()`` (which returns the n completions)."""
    best, out = 0.0, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = func()
        best = max(best, n / (time.perf_counter() - start))
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nano", help="nano | untrained | a checkpoint folder")
    parser.add_argument("--n", type=int, default=128, help="test puzzles")
    parser.add_argument("--batch", type=int, default=64, help="batch size of the batched path")
    parser.add_argument("--question", default="pair", choices=("pair", "full"))
    parser.add_argument("--think", action="store_true",
                        help="thinking prompts (<think>...</think><answer>...</answer>); use with --max-new-tokens 64, "
                             "the nano thinking budget")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="runs per path; the best is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, processor, label = load(args.model)
    size = model.config.vision_config.window_size if hasattr(model.config, "vision_config") else 112
    rows = evaluate.test_rows(PuzzleSpec(m=2, n=1, question_type=args.question, think=args.think), n_items=args.n, image_size=size)
    device = next(model.parameters()).device
    print(f"model: {label}; {nano.count_parameters(model):,} parameters on {device}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs visible (shared: figures are noisy)")
    print(f"{args.n} 2x1 {args.question} {'thinking' if args.think else 'non-thinking'} test puzzles, greedy, max_new_tokens={args.max_new_tokens}, "
          f"best of {args.repeats}\n")
    evaluate.generate(model, processor, rows[:2], batch_size=2, max_new_tokens=2, progress=False)  # warm-up

    def run(batch_size: int) -> list[str]:
        return evaluate.generate(model, processor, rows, batch_size=batch_size,
                                 max_new_tokens=args.max_new_tokens, progress=False)

    batched, out_b = best_rate(lambda: run(args.batch), args.n, args.repeats)
    single, out_s = best_rate(lambda: run(1), args.n, args.repeats)
    same = sum(a == b for a, b in zip(out_b, out_s, strict=True)) / args.n
    print(f"{'path':<22} {'samples/s':>10}")
    print(f"{f'batched (batch {args.batch})':<22} {batched:>10.1f}")
    print(f"{'per-sample (batch 1)':<22} {single:>10.1f}")
    print(f"\nratio batched / per-sample: {batched / single:.1f}x (target >= 5x); "
          f"identical completions: {same:.0%}")


if __name__ == "__main__":
    main()
