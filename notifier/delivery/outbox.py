"""The delivery side: claim due deliveries, render, send through a channel, record.

Each delivery is its own task under a concurrency bound, so one slow or dead endpoint
holds one slot, never the queue. A delivery's id is fixed when its row is written (with
the event, in one transaction); it is the ``webhook-id`` and the ``Message-ID`` of every
attempt, so a retry after a crash is recognisably the same message.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from notifier.config import Config
from notifier.core.model import (
    Delivery,
    EmailMessage,
    Event,
    SendResult,
    Subscriber,
    WebhookMessage,
    stable_id,
)
from notifier.core.planning import next_attempt
from notifier.delivery.channels.base import Channel
from notifier.delivery.channels.email import SmtpChannel
from notifier.delivery.channels.maildir import MaildirChannel
from notifier.delivery.channels.webhook import WebhookChannel
from notifier.delivery.render import Renderer
from notifier.delivery.unsubscribe import unsubscribe_secret, unsubscribe_token
from notifier.errors import NotifierError
from notifier.store import AttemptRecord, Store

log = logging.getLogger("notifier.delivery.outbox")

DEFAULT_SENDER = "tariff-notifier <tariff-notifier@localhost>"


@functools.lru_cache(maxsize=8)
def _sender_domain(sender: str) -> str:
    """The Message-ID domain: the sender's (parsing an address costs ~0.1 ms)."""
    return parseaddr(sender)[1].rpartition("@")[2] or "tariff-notifier.local"


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass
class DrainReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    dead: int = 0
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (id, outcome, detail)

    def add(self, delivery_id: str, status: str, detail: str) -> None:
        counter = "retry" if status == "queued" else status
        setattr(self, counter, getattr(self, counter) + 1)
        self.outcomes.append((delivery_id, status, detail))


@dataclass
class Channels:
    email: Channel[EmailMessage]
    webhook: Channel[WebhookMessage]

    async def open(self) -> None:
        await self.email.open()
        await self.webhook.open()

    async def close(self) -> None:
        await self.email.close()
        await self.webhook.close()


def build_channels(config: Config) -> Channels:
    """SMTP when ``[smtp]`` is configured, else a Maildir under the state folder."""
    smtp = config.model.smtp
    timeout_s = config.model.delivery.timeout.total_seconds()
    email: Channel[EmailMessage]
    if smtp is not None:
        email = SmtpChannel(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=smtp.password,
            sender=smtp.sender,
            timeout_s=timeout_s,
            pool_size=smtp.pool_size,
        )
    else:
        email = MaildirChannel(config.state_dir / "maildir", sender=DEFAULT_SENDER)
    return Channels(email=email, webhook=WebhookChannel(timeout_s=timeout_s))


class Outbox:
    """Drains due deliveries through the channels."""

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
        self._unsubscribe_secret: str | None = None
        self._subscribers = {s.id: s for s in config.subscribers}
        self._payloads: dict[str, bytes] = {}
        self.on_result: Callable[[Delivery, str, float], None] | None = None

    def reconfigure(self, config: Config, renderer: Renderer) -> None:
        self.config, self.renderer = config, renderer
        self._subscribers = {s.id: s for s in config.subscribers}

    @property
    def lease(self) -> timedelta:
        """How long a claim lasts: the visibility timeout after a worker dies.

        Every claimed delivery starts at once (claims never exceed free slots) and each
        attempt has a hard deadline of ``timeout``; email attempts may first wait for a
        pooled SMTP connection, up to ``concurrency / pool_size`` attempts long.
        """
        delivery = self.config.model.delivery
        waits = 1
        if self.config.model.smtp is not None:
            waits += -(-delivery.concurrency // self.config.model.smtp.pool_size)
        return delivery.timeout * (waits + 1) + timedelta(seconds=5)

    def _subscriber(self, subscriber_id: str) -> Subscriber | None:
        return self._subscribers.get(subscriber_id)

    async def _unsubscribe_url(self, sub: Subscriber, target: str) -> str | None:
        base = self.config.model.notifier.public_url
        if not base:
            return None
        if self._unsubscribe_secret is None:
            self._unsubscribe_secret = await unsubscribe_secret(self.config, self.store)
        token = unsubscribe_token(self._unsubscribe_secret, sub.id, target)
        return f"{base.rstrip('/')}/unsubscribe/{sub.id}/{token}"

    def _message_id(self, seed: str) -> str:
        sender = self.config.model.smtp.sender if self.config.model.smtp else DEFAULT_SENDER
        return f"<{seed}@{_sender_domain(sender)}>"

    async def _email_headers(self, unsubscribe: str | None) -> dict[str, str]:
        if not unsubscribe:
            return {}
        return {
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    # --- one delivery ------------------------------------------------------------------

    async def attempt(self, delivery: Delivery, event: Event) -> SendResult:
        """Render and send one delivery (no bookkeeping)."""
        sub = self._subscriber(delivery.subscriber_id)
        if sub is None:
            return SendResult("failed", "subscriber is no longer in the config")
        if delivery.channel == "email":
            unsubscribe = await self._unsubscribe_url(sub, delivery.target)
            rendered = self.renderer.render_email(
                event, subscriber_id=sub.id, unsubscribe_url=unsubscribe
            )
            message = EmailMessage(
                message_id=self._message_id(delivery.id),
                recipient=delivery.target,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                headers=await self._email_headers(unsubscribe),
            )
            return await self.channels.email.send(message)
        if sub.format == "slack":
            body = json.dumps({"text": self.renderer.render_slack(event)}).encode()
            secret = None
        else:
            body = self._payload(event)
            secret = sub.secret
        hook = WebhookMessage(webhook_id=delivery.id, url=delivery.target, body=body, secret=secret)
        return await self.channels.webhook.send(hook)

    def _payload(self, event: Event) -> bytes:
        """The Standard Webhooks body, serialised once per event for a whole fan-out."""
        body = self._payloads.get(event.id)
        if body is None:
            body = json.dumps(event.payload(), separators=(",", ":")).encode()
            if len(self._payloads) >= 64:
                self._payloads.pop(next(iter(self._payloads)))
            self._payloads[event.id] = body
        return body

    def _outcome(self, delivery: Delivery, result: SendResult, now: datetime) -> AttemptRecord:
        """The delivery's state after this attempt: sent, failed, queued again, or dead."""
        attempts = delivery.attempts + 1
        next_at = None
        if result.outcome == "sent":
            status = "sent"
        elif result.outcome == "failed":
            status = "failed"
        else:
            next_at = next_attempt(
                attempts=attempts,
                backoff=self.config.model.delivery.backoff,
                now=now,
                retry_after_s=result.retry_after_s,
            )
            status = "queued" if next_at is not None else "dead"
        return AttemptRecord(
            delivery_id=delivery.id,
            at=now,
            outcome=result.outcome,
            status=status,
            attempts=attempts,
            next_at=next_at,
            detail=result.detail or None,
        )

    async def _record(
        self, finished: Sequence[tuple[Delivery, SendResult]], report: DrainReport
    ) -> None:
        """Record a batch of finished attempts in one transaction, then report them."""
        now = self.clock()
        records = [self._outcome(d, r, now) for d, r in finished]
        try:
            await self.store.record_attempts(records)
        except NotifierError as exc:
            # The attempts happened but could not be recorded (disk full, database
            # gone): the deliveries stay claimed and are attempted again once their
            # claims expire, with the same ids, so a receiver can tell the repeats.
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
            return
        for (delivery, result), record in zip(finished, records, strict=True):
            if result.outcome == "failed" and result.detail.startswith("gone:"):
                try:
                    sub = self._subscriber(delivery.subscriber_id)
                    await self.store.mark_gone(
                        delivery.subscriber_id,
                        delivery.target,
                        config_hash=sub.config_hash if sub else "",
                        now=now,
                    )
                except NotifierError as exc:
                    log.error("could not mark %s gone: %s", delivery.target, exc)
            if record.status != "sent":
                log.warning(
                    "delivery %s to %s (%s) %s after attempt %d: %s",
                    delivery.id,
                    delivery.subscriber_id,
                    delivery.channel,
                    {"queued": "will retry", "failed": "failed", "dead": "is dead"}[record.status],
                    record.attempts,
                    result.detail,
                )
            report.add(delivery.id, record.status, result.detail)
            if self.on_result is not None:
                latency = (now - delivery.created_at).total_seconds()
                self.on_result(delivery, record.status, latency)

    async def _attempt_safely(self, delivery: Delivery, event: Event | None) -> SendResult:
        try:
            if event is None:
                return SendResult("failed", "event missing from the store")
            return await self.attempt(delivery, event)
        except Exception as exc:  # a bug or a template error must not stop the others
            log.exception("delivery %s raised", delivery.id)
            return SendResult("retry", f"internal error: {type(exc).__name__}: {exc}"[:500])

    # --- draining ----------------------------------------------------------------------

    async def drain(
        self, *, stop: asyncio.Event | None = None, report: DrainReport | None = None
    ) -> DrainReport:
        """Send everything due now; return when nothing due is left or ``stop`` is set.

        Keeps up to ``[delivery] concurrency`` attempts in flight, claiming more as slots
        free up, so a slow endpoint delays only its own deliveries. Attempts that finish
        together are recorded together, in one transaction.
        """
        report = report if report is not None else DrainReport()
        limit = self.config.model.delivery.concurrency
        # Finished attempts arrive on a queue: waiting on it costs the same whatever the
        # number in flight (asyncio.wait on 50 tasks re-arms 50 callbacks per wake-up).
        finished: asyncio.Queue[tuple[Delivery, SendResult]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        async def attempt(delivery: Delivery, event: Event | None) -> None:
            finished.put_nowait((delivery, await self._attempt_safely(delivery, event)))

        # Claimed ahead (at most `limit`), so a claim transaction serves many attempts.
        ready: deque[Delivery] = deque()
        events: dict[str, Event] = {}
        exhausted = False
        while True:
            stopping = stop is not None and stop.is_set()
            if not stopping and not exhausted and len(ready) < limit // 2 + 1:
                want = limit - len(ready)
                batch = await self.store.claim_due(
                    now=self.clock(), limit=want, worker=self.worker, lease=self.lease
                )
                exhausted = len(batch) < want
                missing = {d.event_id for d in batch} - events.keys()
                if missing:
                    events.update(await self.store.events_by_id(missing))
                ready.extend(batch)
            while ready and len(tasks) < limit and not stopping:
                delivery = ready.popleft()
                task = asyncio.create_task(attempt(delivery, events.get(delivery.event_id)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if not tasks and finished.empty():
                break
            results = [await finished.get()]
            while not finished.empty():
                results.append(finished.get_nowait())
            await self._record(results, report)
        # Stopped with claims not started: they return to the queue at the release of
        # this worker's claims on shutdown, or when their lease runs out.
        await self.drain_digests(report)
        return report

    async def drain_digests(self, report: DrainReport) -> None:
        """Send the digests whose time has come: one email per subscriber address."""
        batch = await self.store.claim_due(
            now=self.clock(), limit=10_000, worker=self.worker, lease=self.lease, digest=True
        )
        if not batch:
            return
        events = await self.store.events_by_id(d.event_id for d in batch)
        groups: dict[tuple[str, str, Any], list[Delivery]] = defaultdict(list)
        for delivery in batch:
            groups[(delivery.subscriber_id, delivery.target, delivery.digest_at)].append(delivery)
        for (subscriber_id, target, _), members in groups.items():
            result = await self._send_digest(subscriber_id, target, members, events)
            await self._record([(delivery, result) for delivery in members], report)

    async def _send_digest(
        self,
        subscriber_id: str,
        target: str,
        members: Sequence[Delivery],
        events: dict[str, Event],
    ) -> SendResult:
        sub = self._subscriber(subscriber_id)
        if sub is None or not sub.digest:
            return SendResult("failed", "subscriber or its digest is no longer in the config")
        ordered = sorted(
            (events[d.event_id] for d in members if d.event_id in events),
            key=lambda e: (e.timestamp, e.id),
        )
        try:
            unsubscribe = await self._unsubscribe_url(sub, target)
            rendered = self.renderer.render_digest(
                ordered, subscriber_id=sub.id, unsubscribe_url=unsubscribe, period=sub.digest
            )
            seed = "dig_" + stable_id(*sorted(d.id for d in members))
            message = EmailMessage(
                message_id=self._message_id(seed),
                recipient=target,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                headers=await self._email_headers(unsubscribe),
            )
            return await self.channels.email.send(message)
        except Exception as exc:
            log.exception("digest for %s raised", subscriber_id)
            return SendResult("retry", f"internal error: {type(exc).__name__}: {exc}"[:500])
