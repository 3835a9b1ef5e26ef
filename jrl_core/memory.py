"""Keep freed memory in the process heap: large CPU tensors reuse pages instead of faulting in new ones.

glibc's ``malloc`` serves every allocation above its mmap threshold (at most 32 MiB by default, dynamically) with a
fresh ``mmap`` and returns it to the kernel on ``free``; the next tensor of that size then page-faults in and
zeroes every page again. A nano GRPO step builds its rollouts' pixel values several times (16 prompts × G = 8 images
of 81 patches × 1,176 values: 48 MB per copy; TRL concatenates them, the image processor's output is concatenated
per rollout), and each such copy cost ~26 ms in fresh pages against ~2 ms in reused ones (one core,
``benchmarks/nano_speed.py``). Raising the mmap and trim thresholds keeps those blocks in the heap after ``free``.

Only where the allocator is glibc's (Linux); elsewhere (macOS, musl, Windows) it does nothing. It changes no value
a program computes, only where its memory comes from; the cost is a resident set that does not shrink back
after a peak. Process-wide and not undoable from Python: call it in processes that train, not in a library import.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["DEFAULT_LIMIT", "keep_freed_memory"]

DEFAULT_LIMIT = 1 << 30
"""Bytes: allocations up to 1 GiB come from the heap, and up to 1 GiB of freed heap top stays mapped."""

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(limit_bytes: int = DEFAULT_LIMIT) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``limit_bytes`` (``mallopt``) for this process.

    Args:
        limit_bytes: allocations up to this size come from the heap, and freed memory at the heap's top is kept
            up to this size; 1 MiB ≤ it ≤ 1 GiB (glibc refuses larger mmap thresholds on some builds).
    Returns:
        True when glibc accepted both settings; False when the C library is not glibc or refused them
        (nothing changed then, or only the first setting).
    Raises:
        ValueError: ``limit_bytes`` outside [1 MiB, 1 GiB].
    """
    if not (1 << 20) <= int(limit_bytes) <= (1 << 30):
        raise ValueError(f"limit_bytes={limit_bytes} must lie in [1 MiB, 1 GiB] (e.g. the default {DEFAULT_LIMIT}).")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it; musl's and others' mallopt differ
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(limit_bytes))) and bool(mallopt(_M_TRIM_THRESHOLD, int(limit_bytes)))
