"""Run a tariff-notifier command in this process with memory probes, for the soak.

    python bench/memprobe.py OUT.jsonl [--every S] [--baseline S] -- run -c notifier.toml

Every ``--every`` seconds one JSON line goes to OUT.jsonl with where the process's memory
is: RSS, what Python allocated (tracemalloc), what SQLite holds (``sqlite3_memory_used``),
glibc's heap in use and free (``mallinfo2``), and the count of live Python objects. From
``--baseline`` seconds on, each line also carries the ten source lines whose Python
allocations grew most since then, so a leak names the line that holds it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    return libc


def _sqlite() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")  # the library _sqlite3 links to
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return None
    return lib


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


ARENA_ALIGN = 64 * 2**20  # glibc's per-thread malloc heaps are 64 MiB-aligned mappings


def _mappings_kb() -> dict[str, int]:
    """RSS by kind of mapping: the main malloc heap, the per-thread malloc arenas, other
    anonymous memory (Python's object arenas, thread stacks), and mapped files."""
    kinds = {"heap": 0, "thread_arenas": 0, "anon": 0, "files": 0}
    kind = "files"
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=6)
            if "-" in first[0] and len(first) >= 5 and ":" in first[3]:
                start = int(first[0].split("-")[0], 16)
                name = first[5].strip() if len(first) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif not name:
                    kind = "thread_arenas" if start % ARENA_ALIGN == 0 else "anon"
                else:
                    kind = "files"
            elif line.startswith("Rss:"):
                kinds[kind] += int(line.split()[1])
    return kinds


def probe(
    out: Path, every_s: float, baseline_s: float, trace: bool, trim: bool, stop: threading.Event
) -> None:
    libc, sqlite = _libc(), _sqlite()
    started = time.monotonic()
    baseline: tracemalloc.Snapshot | None = None
    with out.open("a") as sink:
        while not stop.wait(every_s):
            elapsed = time.monotonic() - started
            if trim and libc is not None:
                libc.malloc_trim(0)
            line: dict[str, object] = {"t": round(elapsed, 1), "rss_kb": _rss_kb()}
            line.update({f"{k}_kb": v for k, v in _mappings_kb().items()})
            line["objects"] = len(gc.get_objects())
            line["threads"] = threading.active_count()
            line["sqlite_connections_opened"] = OPENED[0]
            if trace:
                line["py_traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
            if sqlite is not None:
                line["sqlite_kb"] = sqlite.sqlite3_memory_used() // 1024
            if libc is not None:
                info = libc.mallinfo2()
                line["heap_used_kb"] = info.uordblks // 1024
                line["heap_free_kb"] = info.fordblks // 1024
                line["mmap_kb"] = info.hblkhd // 1024
            if trace and elapsed >= baseline_s:
                snapshot = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)]
                )
                if baseline is None:
                    baseline = snapshot
                else:
                    top = snapshot.compare_to(baseline, "lineno")[:10]
                    line["grew"] = [
                        [str(stat.traceback[0]), stat.size_diff // 1024, stat.count_diff]
                        for stat in top
                    ]
            sink.write(json.dumps(line) + "\n")
            sink.flush()


OPENED = [0]  # SQLite connections opened since start


def _count_sqlite_connections() -> None:
    import aiosqlite.core

    init = aiosqlite.core.Connection.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        OPENED[0] += 1
        init(self, *args, **kwargs)

    aiosqlite.core.Connection.__init__ = counting_init  # type: ignore[method-assign]


def _limit_sqlite_cache(kib: int) -> None:
    """Give every SQLite connection a page cache of ``kib`` KiB (an experiment: does the
    daemon's SQLite memory level off sooner?)."""
    from sqlalchemy import event

    import notifier.store as store

    configure = store._configure_sqlite

    def configure_with_cache(engine: Any) -> None:
        configure(engine)

        @event.listens_for(engine.sync_engine, "connect")
        def _cache(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA cache_size=-{kib}")
            cursor.close()

    store._configure_sqlite = configure_with_cache


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--every", type=float, default=60)
    parser.add_argument("--baseline", type=float, default=600)
    parser.add_argument(
        "--trace",
        action="store_true",
        help="trace Python allocations (tracemalloc; its snapshots inflate RSS themselves)",
    )
    parser.add_argument(
        "--trim", action="store_true", help="call malloc_trim(0) before each sample"
    )
    parser.add_argument(
        "--sqlite-cache-kib", type=int, help="PRAGMA cache_size for each connection"
    )
    args = parser.parse_args(argv[:split])
    if args.trace:
        tracemalloc.start(1)
    _count_sqlite_connections()
    if args.sqlite_cache_kib:
        _limit_sqlite_cache(args.sqlite_cache_kib)
    stop = threading.Event()
    thread = threading.Thread(
        target=probe,
        args=(args.out, args.every, args.baseline, args.trace, args.trim, stop),
        daemon=True,
    )
    thread.start()
    from notifier.cli import main as notifier_main

    try:
        return notifier_main(argv[split + 1 :])
    finally:
        stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
