"""The daemon's delivery worker: drain the outbox, idle until something is due, survive
the state store's outages (one log line per state change, a bounded back-off) and pick
up work another process queued (`deliveries retry`, `sources release`) within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from notifier.core.model import Delivery
from notifier.errors import NotifierError

if TYPE_CHECKING:
    from notifier.runtime.jobs import Jobs
    from notifier.runtime.metrics import Metrics
    from notifier.runtime.runtime import Notifier

log = logging.getLogger("notifier.runtime.daemon")

# The first wait after a state-store error; doubled per error, up to MAX_IDLE_S.
STORE_RETRY_S = 0.5
# The longest back-off of the delivery worker after state-store errors: short, so that
# delivery resumes within seconds of the database coming back (a retry while it is down
# is one refused connection; it is logged once, on the state change).
MAX_IDLE_S = 5.0
# How often an idle delivery worker looks for work queued by another process.
IDLE_CHECK_S = 1.0


class DeliveryWorker:
    """Part of :class:`notifier.runtime.daemon.Daemon`: its delivery loop."""

    notifier: Notifier
    jobs: Jobs
    metrics: Metrics
    stop_event: asyncio.Event
    _draining: asyncio.Future[Any] | None
    _store_down: bool

    clock: Callable[[], datetime]

    # --- state-store outages: one line per state change --------------------------------

    def _store_unreachable(self, exc: BaseException, *, what: str = "state store") -> None:
        if not self._store_down:
            self._store_down = True
            log.error("state store unreachable (%s): %s; retrying", what, exc)

    def _store_reachable(self) -> None:
        if self._store_down:
            self._store_down = False
            log.info("state store reachable again")

    # --- the delivery worker -----------------------------------------------------------

    def _observe_delivery(self, delivery: Delivery, status: str, latency_s: float) -> None:
        outcome = "retry" if status == "queued" else status
        self.metrics.observe_delivery(
            delivery.channel, outcome, latency_s, subscriber=delivery.subscriber_id
        )

    async def _delivery_worker(self) -> None:
        """Drain the outbox, then idle until something is due, a wake-up or a stop.

        A state-store error never ends the worker: it is logged once, the worker backs
        off (0.5 s, doubling to 5 s) and delivery resumes by itself when the store
        answers again, with nothing lost (claims expire, rows stay)."""
        backoff = STORE_RETRY_S
        while not self.stop_event.is_set():
            self.notifier.wake.clear()
            runtime = self.notifier.runtime
            runtime.outbox.on_result = self._observe_delivery
            runtime.outbox.on_gone = lambda _sub, _target: self.jobs.forget_blocked()
            try:
                self._draining = asyncio.ensure_future(self.jobs.drain())
                await self._draining
                counts = await self.notifier.store.counts()
                self.metrics.set_queue(counts.get("queued", 0), counts.get("dead", 0))
                self._store_reachable()
                backoff = STORE_RETRY_S
                await self._idle()
            except NotifierError as exc:
                self._store_unreachable(exc, what="delivery")
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_IDLE_S)
            except Exception:  # a bug must not silently end delivery for good
                log.exception("delivery worker: unexpected error; continuing")
                await self._sleep(backoff)
            finally:
                self._draining = None

    async def _idle(self) -> None:
        """Wait until a delivery is due. Work queued here wakes us at once; work queued
        by another process (`deliveries retry`, `sources release`, another instance) is
        seen within ``IDLE_CHECK_S`` by one cheap read of the earliest due time."""
        while not self.stop_event.is_set():
            next_due = await self.notifier.store.next_due_at()
            wait_s = IDLE_CHECK_S
            if next_due is not None:
                ahead = (next_due - self.clock()).total_seconds()
                if ahead <= 0:
                    # Due; but maybe claimed by another instance: do not spin on it.
                    await self._sleep(0.2)
                    return
                wait_s = min(ahead, IDLE_CHECK_S)
            if await self._sleep(wait_s):
                return

    async def _sleep(self, wait_s: float) -> bool:
        """Sleep up to ``wait_s``; True when woken (new work) or stopped."""
        waker = asyncio.ensure_future(self.notifier.wake.wait())
        stopper = asyncio.ensure_future(self.stop_event.wait())
        done, _ = await asyncio.wait(
            {waker, stopper}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
        )
        waker.cancel()
        stopper.cancel()
        return bool(done)

    async def _drain_finished(self) -> None:
        draining = self._draining
        if draining is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(draining)
