"""The outbox's recording half: a finished attempt's outcome (sent, failed, queued again
or dead), its delivery log and ledger rows written with the next claim in one store
round, and what is reported of it. Part of :class:`notifier.delivery.outbox.Outbox`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from notifier.config import Config
from notifier.core.model import Delivery, Event, SendResult, Subscriber
from notifier.core.planning import next_attempt
from notifier.delivery.drain import DrainReport, delivery_status
from notifier.delivery.masking import mask_target, shown_target
from notifier.errors import NotifierError
from notifier.logs import delivery_fields
from notifier.store import AttemptRecord, Store

log = logging.getLogger("notifier.delivery.outbox")

#: Deliveries claimed ahead of the free senders, as a multiple of ``[delivery]
#: concurrency``: each claim then serves many attempts, and senders do not run dry while
#: a store round commits (``lease`` allows for the wait).
CLAIM_AHEAD = 2
#: Most targets whose shown form is remembered (one per subscriber and target).
_MAX_SHOWN = 100_000


class Recording:
    """Part of :class:`notifier.delivery.outbox.Outbox`: recording finished attempts."""

    config: Config
    store: Store
    clock: Callable[[], datetime]
    worker: str
    on_result: Callable[[Delivery, str, float], None] | None
    on_gone: Callable[[str, str], None] | None
    _subscribers: dict[str, Subscriber]
    _shown: dict[tuple[str, str], str]

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

    def subscriber(self, subscriber_id: str) -> Subscriber | None:
        return self._subscribers.get(subscriber_id)
