"""The allocator settings that keep the daemon's memory flat (notifier/memory.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from notifier.runtime import memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_the_arena_cap_is_set_and_passed_to_child_processes() -> None:
    # In a child: the cap must be set before the first thread, and must not leak into
    # this test process's environment.
    code = (
        "import os, subprocess, sys\n"
        "from notifier.runtime.memory import limit_malloc_arenas\n"
        "assert limit_malloc_arenas() is True\n"
        "out = subprocess.run([sys.executable, '-c', "
        "'import os; print(os.environ[\"MALLOC_ARENA_MAX\"])'], capture_output=True, text=True)\n"
        "print(out.stdout.strip())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == str(memory.ARENAS)


@glibc
def test_an_arena_cap_set_by_the_operator_wins() -> None:
    code = "from notifier.runtime.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {**os.environ, "MALLOC_ARENA_MAX": "4"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "False"


# Run in a fresh interpreter: a test process that has already freed memory (any earlier
# test in the same worker) would hand the 64 MiB below from its free lists, not from new
# pages, and RSS would not show the growth this test needs.
_TRIM_PROBE = """
import json
from notifier.runtime import memory


def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# 64 MiB of mid-sized blocks (below the mmap threshold: they come from the heap), then one
# small block after them, so the heap cannot simply shrink when they are freed: their pages
# stay resident until trimmed.
before = rss_kb()
blocks = [bytearray(64 * 1024) for _ in range(1024)]
pin = bytearray(64 * 1024)
grown = rss_kb()
del blocks
freed = rss_kb()
released = memory.release_free_memory()
print(json.dumps({"before": before, "grown": grown, "freed": freed,
                  "trimmed": rss_kb(), "released": released}))
"""


@glibc
def test_free_memory_goes_back_to_the_system() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _TRIM_PROBE], capture_output=True, text=True, check=True
    )
    kb = json.loads(result.stdout)
    assert kb["released"] is True
    assert kb["grown"] > kb["before"] + 48 * 1024
    assert kb["freed"] > kb["grown"] - 16 * 1024  # free() alone kept the pages
    assert kb["trimmed"] < kb["freed"] - 48 * 1024  # the trim gave them back
