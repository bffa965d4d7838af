"""The delivery side: claim due deliveries, render, send through a channel, record.

A drain (``delivery.drain``) sends claimed deliveries through up to ``[delivery]
concurrency`` long-lived senders, so one slow or dead endpoint holds one sender, never
the queue. A delivery's id is fixed when its row is written (with
the event, in one transaction); it is the ``webhook-id`` and the ``Message-ID`` of every
attempt, so a retry after a crash is recognisably the same message. Digests (one email
for many events) are ``delivery.digests``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from notifier.config import Config
from notifier.core.model import Delivery, Event, SendResult, Subscriber
from notifier.core.planning import next_attempt
from notifier.delivery.channels.base import Channel, Outgoing
from notifier.delivery.channels.mime import DEFAULT_SENDER
from notifier.delivery.channels.registry import Channels, build_channels, channel_key
from notifier.delivery.digests import drain_digests
from notifier.delivery.drain import Drain, DrainReport, delivery_status
from notifier.delivery.masking import mask_target, shown_target
from notifier.delivery.render import Renderer
from notifier.delivery.unsubscribe import unsubscribe_secret, unsubscribe_token
from notifier.errors import NotifierError
from notifier.logs import delivery_fields
from notifier.store import AttemptRecord, Store

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
#: Deliveries claimed ahead of the free senders, as a multiple of ``[delivery]
#: concurrency``: each claim then serves many attempts, and senders do not run dry while
#: a store round commits (``lease`` allows for the wait).
CLAIM_AHEAD = 2
#: Most targets whose shown form is remembered (one per subscriber and target).
_MAX_SHOWN = 100_000
#: The detail of a delivery not sent because its endpoint already answered 410 Gone.
GONE_DETAIL = "not sent: the endpoint answered 410 Gone (until its config entry changes)"


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Outbox:
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
    def lease(self) -> timedelta:
        """How long a claim lasts: the visibility timeout after a worker dies.

        A claimed delivery starts once the ``CLAIM_AHEAD`` rounds of attempts before it
        have finished, and each attempt has a hard deadline of ``timeout``; email
        attempts may first wait for a pooled SMTP connection, up to ``concurrency /
        pool_size`` attempts long.
        """
        delivery = self.config.model.delivery
        waits = 1
        if self.config.model.smtp is not None:
            waits += -(-delivery.concurrency // self.config.model.smtp.pool_size)
        # Claimed ahead: up to CLAIM_AHEAD rounds of attempts may start before this one.
        return delivery.timeout * (waits * (CLAIM_AHEAD + 1) + 1) + timedelta(seconds=5)

    @property
    def sender(self) -> str:
        """The From of email (and the domain of Message-IDs)."""
        smtp = self.config.model.smtp
        return smtp.sender if smtp is not None else DEFAULT_SENDER

    def subscriber(self, subscriber_id: str) -> Subscriber | None:
        return self._subscribers.get(subscriber_id)

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

    # --- recording ---------------------------------------------------------------------

    def _outcome(
        self, delivery: Delivery, result: SendResult, now: datetime, event: Event | None
    ) -> AttemptRecord:
        """The delivery's state after this attempt: sent, failed, queued again, or dead.

        With its ``event``, the record carries the ledger's metadata (no read for it)."""
        attempts = delivery.attempts + 1
        next_at = None
        outcome = result.outcome
        if outcome == "retry":
            next_at = next_attempt(
                attempts=attempts,
                backoff=self.config.model.delivery.backoff,
                now=now,
                retry_after_s=result.retry_after_s,
            )
        return AttemptRecord(
            delivery_id=delivery.id,
            at=now,
            outcome=outcome,
            status=delivery_status(outcome, next_at=next_at),
            attempts=attempts,
            next_at=next_at,
            detail=result.detail or None,
            sha256=result.sha256,
            target_masked=self._shown_target(delivery),
            event_id=delivery.event_id if event is not None else None,
            event_type=event.type if event is not None else None,
            subscriber_id=delivery.subscriber_id,
            channel=delivery.channel,
        )

    def _shown_target(self, delivery: Delivery) -> str:
        """``shown_target`` of a delivery's target, once per subscriber and target."""
        key = (delivery.subscriber_id, delivery.target)
        shown = self._shown.get(key)
        if shown is None:
            if len(self._shown) >= _MAX_SHOWN:
                self._shown.clear()
            shown = self._shown[key] = shown_target(
                delivery.target,
                subscriber=self._subscribers.get(delivery.subscriber_id),
                env_values=self.config.env_values,
            )
        return shown

    async def record(
        self, finished: Sequence[tuple[Delivery, SendResult]], report: DrainReport
    ) -> None:
        """Record a batch of finished attempts in one transaction, then report them."""
        await self.record_and_claim(finished, report, want=0)

    async def record_and_claim(
        self,
        finished: Sequence[tuple[Delivery, SendResult]],
        report: DrainReport,
        *,
        want: int,
        events: Mapping[str, Event] | None = None,
    ) -> list[Delivery]:
        """Record finished attempts and claim up to ``want`` due deliveries, in one
        transaction. A failure to record is logged and reported (the deliveries stay
        claimed and are attempted again, with the same ids); a failure to claim as well
        leaves as the store's error. ``events`` (by id) gives the ledger rows their
        event's type without a read."""
        now = self.clock()
        events = events or {}
        records = [self._outcome(d, r, now, events.get(d.event_id)) for d, r in finished]
        try:
            batch = await self.store.record_and_claim(
                records, now=now, limit=want, worker=self.worker, lease=self.lease
            )
        except NotifierError as exc:
            if records:
                self._not_recorded(finished, records, report, exc)
            if want > 0:
                raise
            return []
        await self._recorded(finished, records, report, now)
        return batch

    @staticmethod
    def _not_recorded(
        finished: Sequence[tuple[Delivery, SendResult]],
        records: Sequence[AttemptRecord],
        report: DrainReport,
        exc: NotifierError,
    ) -> None:
        # The attempts happened but could not be recorded (disk full, database gone):
        # the deliveries stay claimed and are attempted again once their claims
        # expire, with the same ids, so a receiver can tell the repeats.
        ids = ", ".join(r.delivery_id for r in records[:20])
        more = f" and {len(records) - 20} more" if len(records) > 20 else ""
        log.error(
            "delivery results could not be recorded (%s%s): %s; these will be attempted "
            "again, with the same ids",
            ids,
            more,
            exc,
        )
        for delivery, _ in finished:
            report.add(delivery.id, "queued", f"not recorded: {exc}")

    async def _recorded(
        self,
        finished: Sequence[tuple[Delivery, SendResult]],
        records: Sequence[AttemptRecord],
        report: DrainReport,
        now: datetime,
    ) -> None:
        for (delivery, result), rec in zip(finished, records, strict=True):
            if result.outcome == "gone":
                await self._mark_gone(delivery, now)
            if rec.status != "sent":
                log.warning(
                    "delivery %s to %s (%s) %s after attempt %d: %s",
                    delivery.id,
                    delivery.subscriber_id,
                    delivery.channel,
                    {"queued": "will retry", "failed": "failed", "dead": "is dead"}[rec.status],
                    rec.attempts,
                    result.detail,
                    extra=delivery_fields(delivery),
                )
            report.add(delivery.id, rec.status, result.detail)
            if self.on_result is not None:
                latency = (now - delivery.created_at).total_seconds()
                self.on_result(delivery, rec.status, latency)

    async def _mark_gone(self, delivery: Delivery, now: datetime) -> None:
        sub = self.subscriber(delivery.subscriber_id)
        try:
            await self.store.mark_gone(
                delivery.subscriber_id,
                delivery.target,
                config_hash=sub.config_hash if sub else "",
                now=now,
            )
        except NotifierError as exc:
            log.error("could not mark %s gone: %s", mask_target(delivery.target, secret=True), exc)
            return
        if self.on_gone is not None:
            try:
                self.on_gone(delivery.subscriber_id, delivery.target)
            except Exception:  # a failing listener is logged and never breaks the loop
                log.exception("on_gone hook failed")

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
