"""Feed parsing off the event loop, in parallel across cores, with a hard deadline.

feedparser is the costly stage and its lenient parser has slow paths on hostile input.
A process pool cannot cancel a running task, so a parse past its deadline would keep its
worker busy and every later parse would queue behind it. Here each worker is a
one-process executor handed out to one parse at a time: the deadline counts parsing, not
queueing, and a parse past its deadline gets exactly its own process killed and replaced;
the other parses carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from notifier.errors import FetchError

log = logging.getLogger("notifier.sources.pool")

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


# A parse worker's address space: a hostile feed that makes feedparser balloon fails its
# poll with MemoryError instead of taking the machine's memory (a 9 MB feed of nested
# tags reached 789 MB in 90 s; see docs/reliability.md).
WORKER_MEMORY_LIMIT_BYTES = 1024 * 2**20


def _die_with_parent() -> None:
    """Pool worker initializer: exit when the daemon is killed, and cap memory.

    Without the first, a SIGKILLed daemon leaves its parse workers running as orphans.
    """
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(
            resource.RLIMIT_AS, (WORKER_MEMORY_LIMIT_BYTES, WORKER_MEMORY_LIMIT_BYTES)
        )
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before prctl took effect.
    if os.getppid() == 1:
        os._exit(0)


def _warm_up() -> None:
    import feedparser  # noqa: F401  (imported by the parser on first use: do it now)

    import notifier.sources.rss  # noqa: F401


class ParsePool:
    """A bounded, self-healing set of parse worker processes."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._idle: asyncio.Queue[ProcessPoolExecutor | None] | None = None
        self._all: set[ProcessPoolExecutor] = set()

    async def _new_worker(self) -> ProcessPoolExecutor:
        # "spawn": the worker is the daemon's own child, so the parent-death signal set
        # by _die_with_parent fires when the daemon is killed.
        worker = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_die_with_parent,
        )
        self._all.add(worker)
        # Start it and import the parser before any deadline runs: a spawned interpreter
        # takes a second or two to come up on a loaded machine.
        await asyncio.get_running_loop().run_in_executor(worker, _warm_up)
        return worker

    async def run(self, fn: Callable[..., T], *args: Any, timeout_s: float) -> T:
        """``fn(*args)`` in a worker; FetchError past ``timeout_s`` of its own run time."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self.workers):
                self._idle.put_nowait(None)  # started on first use
        idle = self._idle
        worker = await idle.get()
        try:
            if worker is None:
                worker = await self._new_worker()
            future = asyncio.get_running_loop().run_in_executor(worker, fn, *args)
            result = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            log.warning("a parse took longer than %g s: its worker is replaced", timeout_s)
            assert worker is not None
            self._kill(worker)
            worker = None
            raise FetchError(f"parsing took longer than {timeout_s:g} s") from None
        except BrokenProcessPool:
            assert worker is not None
            self._kill(worker)
            worker = None
            raise FetchError("the parse worker died (replaced)") from None
        except MemoryError:
            assert worker is not None
            self._kill(worker)
            worker = None
            limit_mb = WORKER_MEMORY_LIMIT_BYTES // 2**20
            raise FetchError(f"parsing needed more than {limit_mb} MB") from None
        except BaseException:
            # Cancelled (shutdown) mid-parse: the worker may still be busy; drop it.
            if worker is not None:
                self._kill(worker)
            worker = None
            raise
        finally:
            idle.put_nowait(worker)
        return result

    def _kill(self, worker: ProcessPoolExecutor) -> None:
        self._all.discard(worker)
        for process in list(getattr(worker, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        worker.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the workers at once: a parse still running is not worth a slow exit (its
        feed is polled again after the restart)."""
        for worker in list(self._all):
            self._kill(worker)
        self._all.clear()
        self._idle = None
