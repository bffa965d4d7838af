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
P = TypeVar("P", bound="Peer")

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


class Peer:
    """Start/stop in this loop or in a thread of its own; restartable on the same port.

    Subclasses implement ``_start`` and ``_stop`` (run on the peer's loop) and
    ``running``; ``thread_name`` names the background thread.
    """

    thread_name = "peer"
    _thread: LoopThread | None = None

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        if self._thread is not None:
            await self._thread.run_async(self._start())
        else:
            await self._start()

    async def stop(self) -> None:
        """Stop listening and drop open connections, as a crashed server would."""
        if self._thread is not None:
            await self._thread.run_async(self._stop())
        else:
            await self._stop()

    def start_in_thread(self) -> None:
        """Run the peer in a background thread with its own loop (for subprocess tests)."""
        self._thread = LoopThread(self.thread_name)
        self._thread.start()
        self._thread.run(self._start())

    def stop_in_thread(self) -> None:
        if self._thread is None:
            return
        self._thread.run(self._stop())
        self._thread.stop()
        self._thread = None

    async def __aenter__(self: P) -> P:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
