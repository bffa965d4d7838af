"""The delivery side: claim due deliveries, render, send through a channel, record.

A drain (``delivery.drain``) sends claimed deliveries through up to ``[delivery]
concurrency`` long-lived senders, so one slow or dead endpoint holds one sender, never
the queue. A delivery's id is fixed when its row is written (with
the event, in one transaction); it is the ``webhook-id`` and the ``Message-ID`` of every
attempt, so a retry after a crash is recognisably the same message. What a finished
attempt writes (its status, delivery log and ledger rows) is ``delivery.recording``;
digests (one email for many events) are ``delivery.digests``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from notifier.config import Config
from notifier.core.model import Delivery, Event, SendResult, Subscriber
from notifier.delivery.channels.base import Channel, Outgoing
from notifier.delivery.channels.mime import DEFAULT_SENDER
from notifier.delivery.channels.registry import Channels, build_channels, channel_key
from notifier.delivery.digests import drain_digests
from notifier.delivery.drain import Drain, DrainReport, delivery_status
from notifier.delivery.recording import CLAIM_AHEAD, Recording
from notifier.delivery.render import Renderer
from notifier.delivery.unsubscribe import unsubscribe_secret, unsubscribe_token
from notifier.logs import delivery_fields
from notifier.store import Store

__all__ = [
    "Channels",
    "DrainReport",
    "Outbox",
    "build_channels",
    "delivery_status",
    "worker_name",
]

log = logging.getLogger("notifier.delivery.outbox")

#: While attempts are in flight and none finishes, look for newly due work this often
#: (retries whose time came, rows another instance committed): a slow endpoint must not
#: hold back the others' next attempts until it times out.
REFILL_S = 1.0
#: Finished attempts are recorded at most this long after they finish, together (and
#: with the next claim when one is due): one commit per ~100 ms of a fan-out, not one per
#: wake-up (a write transaction costs ~1 ms of the event loop's time, whatever its size).
#: A crash in between loses no delivery: the unrecorded ones are attempted again, with
#: the same ids.
RECORD_EVERY_S = 0.1
#: The detail of a delivery not sent because its endpoint already answered 410 Gone.
GONE_DETAIL = "not sent: the endpoint answered 410 Gone (until its config entry changes)"


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Outbox(Recording):
    """Drains due deliveries through the channels.

    Hooks for the runtime: ``on_result(delivery, status, latency_s)`` after each recorded
    attempt; ``on_gone(subscriber_id, target)`` right after an endpoint is marked gone;
    :meth:`notify` after committing new deliveries, so a running drain claims them now.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        renderer: Renderer,
        channels: Channels,
        clock: Callable[[], datetime],
        worker: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.channels = channels
        self.clock = clock
        self.worker = worker or worker_name()
        self.on_result: Callable[[Delivery, str, float], None] | None = None
        self.on_gone: Callable[[str, str], None] | None = None
        self._unsubscribe_secret: str | None = None
        self._subscribers = {s.id: s for s in config.subscribers}
        self._shown: dict[tuple[str, str], str] = {}  # (subscriber, target) -> shown
        self._channel_of: dict[tuple[str, str], Channel[Any]] = {}  # (channel, format)
        # (subscriber, target) -> the subscriber's config hash when the endpoint said 410.
        self._gone: dict[tuple[str, str], str] = {}
        self._wake: asyncio.Event | None = None  # set while a drain runs
        self._notified = False

    def reconfigure(self, config: Config, renderer: Renderer) -> None:
        self.config, self.renderer = config, renderer
        self._subscribers = {s.id: s for s in config.subscribers}
        self._shown.clear()  # a subscriber's format or ${VAR} values may have changed

    def notify(self) -> None:
        """New deliveries were committed: a running drain claims them into free slots now
        (without it, at the next finished attempt or within ``REFILL_S``)."""
        self._notified = True
        if self._wake is not None:
            self._wake.set()

    @property
    def sender(self) -> str:
        """The From of email (and the domain of Message-IDs)."""
        smtp = self.config.model.smtp
        return smtp.sender if smtp is not None else DEFAULT_SENDER

    async def unsubscribe_url(self, sub: Subscriber, target: str) -> str | None:
        base = self.config.model.notifier.public_url
        if not base:
            return None
        if self._unsubscribe_secret is None:
            self._unsubscribe_secret = await unsubscribe_secret(self.config, self.store)
        token = unsubscribe_token(self._unsubscribe_secret, sub.id, target)
        return f"{base.rstrip('/')}/unsubscribe/{sub.id}/{token}"

    # --- one delivery ------------------------------------------------------------------

    async def attempt(self, delivery: Delivery, event: Event) -> SendResult:
        """Render and send one delivery through its channel (no bookkeeping)."""
        prepared = await self._prepare(delivery, event)
        if isinstance(prepared, SendResult):
            return prepared
        channel, message = prepared
        result: SendResult = await channel.send(message)
        return result

    async def _prepare(
        self, delivery: Delivery, event: Event
    ) -> tuple[Channel[Any], Any] | SendResult:
        """The channel and message of one delivery, or the result when it cannot go."""
        sub = self._subscribers.get(delivery.subscriber_id)
        if sub is None:
            return SendResult("failed", "subscriber is no longer in the config")
        if self._gone and self._gone.get((sub.id, delivery.target)) == sub.config_hash:
            return SendResult("failed", GONE_DETAIL)
        channel = self._channel_of.get((delivery.channel, sub.format))
        if channel is None:
            try:
                channel = self.channels[channel_key(delivery.channel, format=sub.format)]
            except KeyError:
                return SendResult("failed", f"no {sub.format!r} channel for {delivery.channel}")
            self._channel_of[(delivery.channel, sub.format)] = channel
        unsubscribe = None  # only email carries the link (RFC 8058)
        if delivery.channel == "email":
            unsubscribe = await self.unsubscribe_url(sub, delivery.target)
        outgoing = Outgoing(
            delivery=delivery,
            event=event,
            subscriber=sub,
            renderer=self.renderer,
            unsubscribe_url=unsubscribe,
        )
        return channel, channel.message(outgoing)

    async def _attempt_safely(self, delivery: Delivery, event: Event | None) -> SendResult:
        # `attempt` inlined: the send is awaited here, one coroutine fewer to resume
        # at each step of every request.
        try:
            if event is None:
                return SendResult("failed", "event missing from the store")
            prepared = await self._prepare(delivery, event)
            if isinstance(prepared, SendResult):
                return prepared
            channel, message = prepared
            result: SendResult = await channel.send(message)
        except Exception as exc:  # a bug or a template error must not stop the others
            log.exception("delivery %s raised", delivery.id, extra=delivery_fields(delivery, event))
            return SendResult("retry", f"internal error: {type(exc).__name__}: {exc}"[:500])
        if result.outcome == "gone":
            # Before it is recorded: deliveries to it claimed in this drain stay unsent.
            sub = self.subscriber(delivery.subscriber_id)
            self._gone[(delivery.subscriber_id, delivery.target)] = sub.config_hash if sub else ""
        return result

    # --- draining ----------------------------------------------------------------------

    async def drain(
        self, *, stop: asyncio.Event | None = None, report: DrainReport | None = None
    ) -> DrainReport:
        """Send everything due now; return when nothing due is left or ``stop`` is set.

        Keeps up to ``[delivery] concurrency`` attempts in flight (``delivery.drain``).
        Free senders take claimed work as soon as it is claimed; claims are made when the
        claimed-ahead work runs low, :meth:`notify` says new work was committed, or
        ``REFILL_S`` passes, so a slow endpoint delays only its own deliveries. The store
        is written at most once per ``RECORD_EVERY_S`` while attempts run: the attempts
        that finished meanwhile are recorded, and the next claim made, in one
        transaction.
        """
        report = report if report is not None else DrainReport()
        # Endpoints seen gone are remembered within one drain only: planning records
        # later deliveries to them as failed, and an operator's `subscribers unblock` or
        # `deliveries retry` (another process) must take effect at the next drain.
        self._gone.clear()
        drain = Drain(
            self,
            stop=stop,
            report=report,
            refill_s=REFILL_S,
            record_every_s=RECORD_EVERY_S,
            claim_ahead=CLAIM_AHEAD,
        )
        self._wake = drain.wake
        try:
            await drain.run()
        finally:
            self._wake = None
        # Stopped with claims not started: they return to the queue at the release of
        # this worker's claims on shutdown, or when their lease runs out.
        await self.drain_digests(report)
        return report

    def take_notified(self) -> bool:
        """Whether :meth:`notify` was called since the last call (for the drain)."""
        notified, self._notified = self._notified, False
        return notified

    async def drain_digests(self, report: DrainReport) -> None:
        """Send the digests whose time has come: one email per subscriber address."""
        await drain_digests(self, report)
