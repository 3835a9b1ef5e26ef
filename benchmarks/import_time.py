"""Benchmark: a study process's import of the training stack, with and without the bytecode cache.

Times ``import torch, transformers, trl, datasets, peft`` (and ``jrl_core.train``) in fresh child
processes, side by side in one run:

1. ``PYTHONDONTWRITEBYTECODE=1`` and no prefix (what each process of a study paid before
   :func:`jrl_core.study.enable_bytecode_cache`, in an environment installed with ``pip --no-compile``);
2. the first process with the cache (compiles and writes into an empty prefix);
3. later processes with the cache (read it).

Usage: ``.venv/bin/python benchmarks/import_time.py [--repeats 2]``. Prints each figure in seconds and
the ratio (1) / (3). Run it alone: a second CPU-heavy job spoils the timings. The prefix is a
temporary directory, deleted afterwards. In an environment whose site-packages already hold bytecode
(pip without ``--no-compile``), figure (1) reads that bytecode and the ratio is ~1 by construction.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from jrl_core.study import enable_bytecode_cache

CODE = "import torch, transformers, trl, datasets, peft; import jrl_core.train"


def _time_import(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CODE], env=env, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="processes timed per figure (after the first write)")
    args = ap.parse_args()
    plain = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    plain.pop("PYTHONPYCACHEPREFIX", None)
    plain.pop("JRL_BYTECODE_CACHE", None)
    with tempfile.TemporaryDirectory(prefix="jrl-pyc-") as tmp:
        cached = dict(plain)
        enable_bytecode_cache(cached, tmp)
        no_cache = [_time_import(plain) for _ in range(args.repeats)]
        write = _time_import(cached)
        read = [_time_import(cached) for _ in range(args.repeats)]
    a, b = statistics.median(no_cache), statistics.median(read)
    print(f"no bytecode (PYTHONDONTWRITEBYTECODE=1): {', '.join(f'{t:.2f}' for t in no_cache)} s (median {a:.2f} s)")
    print(f"bytecode cache, first process (writes):  {write:.2f} s")
    print(f"bytecode cache, later processes (read):  {', '.join(f'{t:.2f}' for t in read)} s (median {b:.2f} s)")
    print(f"ratio (no bytecode / cache read): {a / b:.2f}x")


if __name__ == "__main__":
    main()
