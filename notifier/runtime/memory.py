"""Keep a long-running daemon's memory flat under glibc's allocator.

The daemon's Python objects do not grow over hours (bench/memprobe.py traces them), but its
RSS did: every aiosqlite connection and every executor thread allocates from a malloc arena
of its own (glibc makes up to 8 per core), and freed memory stays spread over them. Two
settings stop that (docs/benchmarks.md, "Memory over time"):

- at most ``ARENAS`` arenas, set before the first thread starts (the ``MALLOC_ARENA_MAX``
  environment variable, when set, wins);
- ``malloc_trim(0)`` every 10 minutes, which hands the whole free pages inside the heaps
  back to the system (free() alone only shrinks a heap from its top).

Elsewhere (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import platform

__all__ = ["ARENAS", "freeze_heap", "limit_malloc_arenas", "release_free_memory"]

ARENAS = 2
M_ARENA_MAX = -8  # from glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at ``ARENAS``; True when this call set the cap."""
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    # Parse workers are processes of their own: they read the variable when they start.
    os.environ["MALLOC_ARENA_MAX"] = str(ARENAS)
    return bool(libc.mallopt(M_ARENA_MAX, ARENAS))


def release_free_memory() -> bool:
    """Give the allocator's free pages back to the system; True when some were."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


def freeze_heap() -> None:
    """Move the loaded config, subscriber index and caches out of the GC's sight.

    They live as long as the config; with 100,000 subscribers the collector's full passes
    over them cost more than the matching itself (bench/bench_scale.py).
    """
    gc.collect()
    gc.freeze()
