"""Real peers for tests: a recording SMTP server and a verifying webhook receiver.

Both listen on 127.0.0.1 and run either in the test's own event loop
(``async with SmtpPeer() as smtp`` / ``await peer.start()``) or in a background thread
with a loop of its own (``peer.start_in_thread()``), for tests that run the daemon as a
subprocess. Waiting is done on a condition with a deadline, never with a fixed sleep:
``await peer.wait_for_count(n)``, or :func:`wait_for` for any predicate.

This module imports neither aiosmtpd nor aiohttp; import ``tests.peers.smtp`` or
``tests.peers.webhook`` for the peers themselves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_POLL_S = 0.005


async def wait_for(
    predicate: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Return as soon as ``predicate()`` is true; ``AssertionError`` after ``timeout_s``.

    Polls every few milliseconds: the peers may run in another thread, where an
    asyncio.Event of this loop could not be set safely.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(_POLL_S)


def wait_for_sync(
    predicate: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """:func:`wait_for` for synchronous tests (for instance around a subprocess)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(_POLL_S)


class LoopThread:
    """An event loop running in a daemon thread, to host a peer beside a subprocess."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self._name} thread is not running")
        return self._loop

    def start(self) -> None:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self._name} thread did not start")

    def run(self, coro: Coroutine[Any, Any, T], *, timeout_s: float = 10.0) -> T:
        """Run ``coro`` in the thread's loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the thread's loop, awaiting it from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None
