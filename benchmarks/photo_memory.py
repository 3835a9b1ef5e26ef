"""Peak memory of building training rows from a photo folder: flat in the folder size (issue 18, item 5).

    .venv/bin/python benchmarks/photo_memory.py [--sizes 200 2000] [--eager]

For each size N, writes N random 640x480 JPEGs (smooth noise, quality 85, ~60-100 KB each) into a
temporary folder, then, in a fresh Python process per folder (so peaks do not mix):

1. ``load_photos(folder, "train")`` (lists files, reads headers; ~80% of N in the train split), and
2. ``curriculum_rows(photos, PuzzleSpec(), Curriculum(((2, 1),)), seed=0, prompts_per_step=16, steps=10,
   view_size=126)``: 160 training rows, views cut at 126 px (decoding one photo per view, through the
   LRU cache of ``jrl_core.images``).

Printed per folder: peak RSS during 1+2 (Linux ``VmHWM``, reset after imports through
``/proc/self/clear_refs``) and its growth over the RSS after imports, the tracemalloc peak (Python
allocations only; PIL's pixel buffers are C allocations and show in RSS, not here), and the time.
The target is peak RSS growth for 2,000 photos within 2x of that for 200.

``--eager`` also runs the old behaviour for comparison (every listed photo decoded and kept).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_folder(folder: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` random 640x480 JPEGs into ``folder``; returns the total size in bytes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((640, 480),
                                                                                          Image.Resampling.BICUBIC)
        arr = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (480, 640, 3), dtype=np.int16)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=85)
        total += path.stat().st_size
    return total


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(folder: str, eager: bool) -> None:
    """Measure one folder in this (fresh) process; prints one JSON line."""
    import tracemalloc

    from jrl_core.images import load_photos
    from jrl_core.puzzles import PuzzleSpec
    from jrl_core.schedules import Curriculum, curriculum_rows

    base_kb = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    tracemalloc.start()
    t0 = time.perf_counter()
    photos = load_photos(folder, "train")
    t_list = time.perf_counter() - t0
    kept = [p.image for p in photos] if eager else None  # the old behaviour: every photo decoded up front
    rows = curriculum_rows(photos, PuzzleSpec(), Curriculum(((2, 1),)), seed=0, prompts_per_step=16, steps=10,
                           view_size=126)
    wall = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_kb = _status_kb("VmHWM")
    del kept
    print(json.dumps({"photos": len(photos), "rows": len(rows), "base_rss_mb": base_kb / 1024,
                      "peak_rss_mb": peak_kb / 1024, "growth_mb": (peak_kb - base_kb) / 1024,
                      "tracemalloc_peak_mb": py_peak / 2**20, "list_s": t_list, "wall_s": wall}))


def measure(folder: Path, eager: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder)] + (["--eager"] if eager else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000], help="folder sizes (files)")
    parser.add_argument("--eager", action="store_true", help="also measure decoding every photo up front")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.eager)
        return

    modes = ["streamed"] + (["eager"] if args.eager else [])
    results: dict[str, dict[int, dict]] = {m: {} for m in modes}
    with tempfile.TemporaryDirectory(prefix="photo_memory_") as tmp:
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            t0 = time.perf_counter()
            size = make_folder(folder, n)
            print(f"generated {n} JPEGs 640x480 ({size / 2**20:.0f} MB on disk) in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            for mode in modes:
                results[mode][n] = measure(folder, eager=mode == "eager")

    header = f"{'mode':9} {'files':>6} {'train':>6} {'rows':>5} {'RSS after imports':>18} {'peak RSS':>9} " \
             f"{'growth':>8} {'tracemalloc peak':>17} {'listing':>8} {'total':>7}"
    print(header)
    for mode in modes:
        for n, r in results[mode].items():
            print(f"{mode:9} {n:>6} {r['photos']:>6} {r['rows']:>5} {r['base_rss_mb']:>15.0f} MB "
                  f"{r['peak_rss_mb']:>6.0f} MB {r['growth_mb']:>5.0f} MB {r['tracemalloc_peak_mb']:>14.1f} MB "
                  f"{r['list_s']:>7.2f}s {r['wall_s']:>6.2f}s")
    lo, hi = min(args.sizes), max(args.sizes)
    if lo != hi:
        for mode in modes:
            a, b = results[mode][lo], results[mode][hi]
            ratio = b["growth_mb"] / max(a["growth_mb"], 1e-9)
            ratio_peak = b["peak_rss_mb"] / a["peak_rss_mb"]
            ratio_py = b["tracemalloc_peak_mb"] / max(a["tracemalloc_peak_mb"], 1e-9)
            verdict = "within 2x" if ratio <= 2 else "NOT within 2x"
            print(f"{mode}: {hi} vs {lo} files: RSS growth x{ratio:.2f} ({verdict}), peak RSS x{ratio_peak:.2f}, "
                  f"tracemalloc peak x{ratio_py:.2f}")


if __name__ == "__main__":
    main()
