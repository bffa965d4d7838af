"""One drain of the outbox: claimed deliveries sent by long-lived senders.

Up to ``[delivery] concurrency`` senders each take the next claimed delivery, attempt
it and put the result on the finished list, then take the next; a sender with nothing
to take parks until the next claim arrives. So one slow or dead endpoint holds one
sender, never the queue, and a fan-out costs no task per delivery. Beside them, one
store round at a time (``Outbox.record_and_claim``) records what finished and claims
what is next, so senders keep working while it commits. What a drain did is its
``DrainReport``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from notifier.core.model import Delivery, Event, SendResult

if TYPE_CHECKING:
    from notifier.delivery.outbox import Outbox

__all__ = ["Drain", "DrainReport", "delivery_status"]


@dataclass
class DrainReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    dead: int = 0
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (id, outcome, detail)

    def add(self, delivery_id: str, status: str, detail: str) -> None:
        if status == "sent":
            self.sent += 1
        else:
            counter = "retry" if status == "queued" else status
            setattr(self, counter, getattr(self, counter) + 1)
        self.outcomes.append((delivery_id, status, detail))


def delivery_status(outcome: str, *, next_at: datetime | None) -> str:
    """The delivery's status after an attempt with this outcome (pure).

    ``gone`` is final like ``failed``; a ``retry`` is ``queued`` again while the backoff
    schedule has a next time, else ``dead``.
    """
    if outcome == "sent":
        return "sent"
    if outcome in ("failed", "gone"):
        return "failed"
    return "queued" if next_at is not None else "dead"


class Drain:
    """The state of one :meth:`Outbox.drain`; :meth:`run` it once.

    ``refill_s``, ``record_every_s`` and ``claim_ahead`` are the outbox's ``REFILL_S``,
    ``RECORD_EVERY_S`` and ``CLAIM_AHEAD`` (explained there).
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        stop: asyncio.Event | None,
        report: DrainReport,
        refill_s: float,
        record_every_s: float,
        claim_ahead: int,
    ) -> None:
        self.outbox = outbox
        self.stop = stop
        self.report = report
        self.refill_s = refill_s
        self.record_every_s = record_every_s
        self.limit = outbox.config.model.delivery.concurrency
        self.ahead = self.limit * claim_ahead
        # Claim again when half the claimed-ahead work is left: a store round takes a
        # few turns of the busy event loop, and the senders must not run dry meanwhile.
        self.low = self.ahead // 2
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        # Claimed, not started (at most `ahead`): a claim transaction serves many attempts.
        self.ready: deque[Delivery] = deque()
        self.events: dict[str, Event] = {}
        # Finished attempts, recorded by the next store round.
        self.done: list[tuple[Delivery, SendResult]] = []
        self.busy = 0  # senders in an attempt
        self.senders: set[asyncio.Task[None]] = set()
        self.parked: list[asyncio.Future[None]] = []  # senders waiting for a claim
        self.closing = False
        self.writer: asyncio.Task[list[Delivery]] | None = None  # the store round
        self.wants = 0  # what the running store round claims
        self.more = True
        self.written_at = 0.0

    @property
    def stopping(self) -> bool:
        return self.closing or (self.stop is not None and self.stop.is_set())

    async def run(self) -> None:
        """Send everything due; return when nothing due is left, or once stopped and the
        attempts in flight are recorded."""
        relay = None
        if self.stop is not None:
            relay = asyncio.create_task(_set_when(self.stop, self.wake))
        try:
            await self._loop()
        finally:
            self.closing = True
            self._unpark(len(self.parked))
            if relay is not None:
                relay.cancel()
            writer = self.writer
            if writer is not None and not writer.done():
                with contextlib.suppress(Exception):
                    await writer
            if not self.busy:  # idle senders end now; busy ones (after an error) later
                await asyncio.gather(*self.senders, return_exceptions=True)

    async def _loop(self) -> None:
        loop, outbox = self.loop, self.outbox
        self.more = True  # the last claim may have left due work behind
        self.written_at = looked_at = loop.time()
        while True:
            stopping = self.stopping
            await self._store_round(stopping=stopping)
            if stopping:
                self._unpark(len(self.parked))
            else:
                self._dispatch()
            idle = not self.busy and not self.done and self.writer is None
            if idle and (stopping or not self.ready):
                return
            # Wait for a finished attempt or store round, new work, or the next write.
            timeout_s = max(0.0, looked_at + self.refill_s - loop.time())
            if self.done and self.writer is None:
                record_at = self.written_at + self.record_every_s
                timeout_s = min(timeout_s, max(0.0, record_at - loop.time()))
            await _wait(self.wake, timeout_s)
            # Due work appears through notify() or another instance: look for it when
            # told, and every refill_s (a finished attempt alone adds none due now).
            if outbox.take_notified() or loop.time() - looked_at >= self.refill_s:
                self.more = True
                looked_at = loop.time()

    async def _store_round(self, *, stopping: bool) -> None:
        """Take in the finished store round; start the next when one is due: a claim
        when the claimed-ahead work runs low, a record when results wait."""
        writer = self.writer
        if writer is not None and writer.done():
            batch = writer.result()  # a failed claim leaves as the store's error
            self.writer = None
            if self.wants:
                self.more = len(batch) == self.wants
                await self._add_events(batch)
                self.ready.extend(batch)
        if self.writer is not None:
            return
        claim = self.more and not stopping and len(self.ready) <= self.low
        done = self.done
        due = self.loop.time() - self.written_at >= self.record_every_s
        if claim or (done and (due or stopping or not self.busy or len(done) >= self.ahead)):
            self.done = []
            self.wants = self.ahead - len(self.ready) if claim else 0
            self.writer = asyncio.create_task(
                self.outbox.record_and_claim(done, self.report, want=self.wants, events=self.events)
            )
            self.writer.add_done_callback(lambda _task: self.wake.set())
            self.written_at = self.loop.time()

    def _dispatch(self) -> None:
        """Parked senders for the claimed deliveries, and new ones up to the limit."""
        waiting = len(self.ready)
        woken = self._unpark(min(waiting, len(self.parked)))
        for _ in range(min(waiting - woken, self.limit - len(self.senders))):
            task = asyncio.create_task(self._sender())
            self.senders.add(task)
            task.add_done_callback(self.senders.discard)

    def _unpark(self, count: int) -> int:
        for _ in range(count):
            parked = self.parked.pop()
            if not parked.done():
                parked.set_result(None)
        return count

    async def _sender(self) -> None:
        """Attempt claimed deliveries one after another until the drain ends."""
        ready, events, attempt = self.ready, self.events, self.outbox._attempt_safely
        while not self.stopping:
            if not ready:
                parked = self.loop.create_future()
                self.parked.append(parked)
                await parked
                continue
            delivery = ready.popleft()
            self.busy += 1
            try:
                result = await attempt(delivery, events.get(delivery.event_id))
            finally:
                self.busy -= 1
            done = self.done
            done.append((delivery, result))
            # The loop has work when a store round can start (the first result to
            # record, claims running low, a full batch) or when every sender is idle.
            if not self.busy or (
                self.writer is None
                and (len(done) == 1 or len(ready) <= self.low or len(done) >= self.ahead)
            ):
                self.wake.set()

    async def _add_events(self, batch: list[Delivery]) -> None:
        missing = {d.event_id for d in batch} - self.events.keys()
        if missing:
            self.events.update(await self.outbox.store.events_by_id(missing))


async def _wait(wake: asyncio.Event, timeout_s: float) -> None:
    """Until ``wake`` is set or ``timeout_s`` passes; then clear it."""
    if timeout_s > 0 and not wake.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await wake.wait()
    wake.clear()


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
