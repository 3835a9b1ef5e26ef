"""Puzzles per second by grid size on 640x480 photos: jrl_core.puzzles vs straightforward PIL
crop-and-paste, and the share of a nano GRPO step spent making puzzles.

    .venv/bin/python benchmarks/puzzles_speed.py [--seconds 0.5]

"make_row" is a whole dataset row (puzzle + question + prompt); "grid puzzle" is
make_grid_puzzle (which also keeps the cropped original); the baseline crops the original, then
crops and pastes each patch into a new image. A nano GRPO step was measured at ~4 s for 16 prompts
x 8 completions, so one step needs 16 puzzles.
"""

from __future__ import annotations

import argparse
import random
import time

from PIL import Image

from jrl_core.images import load_photos
from jrl_core.puzzles import PuzzleSpec, make_grid_puzzle, make_row

NANO_STEP_S = 4.0
PROMPTS_PER_STEP = 16
SIZES = ((2, 1), (3, 1), (4, 1), (2, 2), (3, 3), (4, 4))


def pil_baseline(image: Image.Image, m: int, n: int, rng: random.Random) -> Image.Image:
    pw, ph = image.width // n, image.height // m
    original = image.crop((0, 0, pw * n, ph * m))
    order = list(range(m * n))
    rng.shuffle(order)
    out = Image.new("RGB", original.size)
    for x, y in enumerate(order):
        (ry, cy), (rx, cx) = divmod(y, n), divmod(x, n)
        out.paste(original.crop((cy * pw, ry * ph, (cy + 1) * pw, (ry + 1) * ph)), (cx * pw, rx * ph))
    return out


def rate(func, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        func(count)
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    photos = [p.image.resize((640, 480)) for p in load_photos("skimage", split="all")]
    print(f"{len(photos)} skimage photos resized to 640x480; {args.seconds:.1f} s per cell\n")
    print(f"{'size':>5} {'PIL baseline/s':>15} {'grid puzzle/s':>14} {'make_row pair/s':>16} "
          f"{'make_row full/s':>16} {'ms/puzzle':>10} {'share of nano step':>19}")
    for m, n in SIZES:
        rng = random.Random(0)
        base = rate(lambda i, m=m, n=n, rng=rng: pil_baseline(photos[i % len(photos)], m, n, rng), args.seconds)
        ours = rate(lambda i, m=m, n=n: make_grid_puzzle(photos[i % len(photos)], m, n, seed=i), args.seconds)
        specs = {q: PuzzleSpec(m=m, n=n, question_type=q) for q in ("pair", "full")}
        rows = {q: rate(lambda i, s=s: make_row(photos[i % len(photos)], s, seed=i), args.seconds)
                for q, s in specs.items()}
        share = PROMPTS_PER_STEP / rows["pair"] / NANO_STEP_S
        print(f"{m}x{n:<3} {base:15.0f} {ours:14.0f} {rows['pair']:16.0f} {rows['full']:16.0f} "
              f"{1000 / rows['pair']:10.2f} {100 * share:18.2f}%")


if __name__ == "__main__":
    main()
