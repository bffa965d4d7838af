"""Subscriptions: the targets that get nothing more (unsubscribed, or gone with 410)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from notifier.core.planning import GONE_PREFIX, BlockedTargets
from notifier.delivery.masking import mask_target
from notifier.store import schema as t
from notifier.store.engine import READ, WRITE, Connector, guarded

__all__ = ["GoneEndpoint", "SubscriptionQueries", "Unblocked"]

log = logging.getLogger("notifier.store.subscriptions")


@dataclass(frozen=True, slots=True)
class GoneEndpoint:
    """An endpoint that answered 410 Gone, and the config entry it answered for."""

    subscriber_id: str
    url: str
    config_hash: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Unblocked:
    """What ``unblock`` did: the gone endpoints it forgot, the deliveries it re-queued."""

    endpoints: tuple[str, ...]
    requeued: tuple[str, ...]


class SubscriptionQueries(Connector):
    """``unsubscribes`` and ``gone_endpoints``."""

    @guarded(WRITE)
    async def mark_gone(
        self, subscriber_id: str, url: str, *, config_hash: str, now: datetime
    ) -> None:
        """A 410 Gone from ``url``: nothing more goes there under this config entry.

        Logged here, once per 410 (later deliveries to it are recorded as ``failed``
        with a ``gone:`` reason, without a line each)."""
        g = t.gone_endpoints.c
        async with self.transaction() as tx:
            await tx.execute(
                t.gone_endpoints.delete().where((g.subscriber_id == subscriber_id) & (g.url == url))
            )
            await tx.execute(
                t.gone_endpoints.insert().values(
                    subscriber_id=subscriber_id, url=url, config_hash=config_hash, at=now
                )
            )
        log.warning(
            "webhook %s of subscriber %s answered 410 Gone: nothing more is sent there until "
            "its config entry changes or `tariff-notifier subscribers unblock %s`",
            mask_target(url, secret=True),
            subscriber_id,
            subscriber_id,
            extra={"subscriber": subscriber_id},
        )

    @guarded(WRITE)
    async def unsubscribe(self, subscriber_id: str, target: str, *, now: datetime) -> int:
        """Record an unsubscribe and fail what is still queued for it; returns that count."""
        c = t.deliveries.c
        async with self.transaction() as tx:
            await tx.execute(
                self.dialect.insert_ignore(t.unsubscribes, "subscriber_id", "target").values(
                    subscriber_id=subscriber_id, target=target, at=now
                )
            )
            done = await tx.execute(
                t.deliveries.update()
                .where(
                    (c.subscriber_id == subscriber_id)
                    & (c.target == target)
                    & (c.status == "queued")
                )
                .values(status="failed", last_error="unsubscribed", next_at=None, updated_at=now)
            )
            return int(done.rowcount or 0)

    @guarded(READ)
    async def blocked_targets(self, config_hashes: Mapping[str, str]) -> set[tuple[str, str]]:
        """(subscriber, target) pairs that get nothing: unsubscribed, or gone (410) under
        the subscriber's current config (``config_hashes``: subscriber id -> hash of its
        config entry). 410 stops deliveries "until the config changes" (CONTRACT.md).

        The answer is a :class:`~notifier.core.planning.BlockedTargets`: its ``gone``
        pairs get a ``failed`` delivery row rather than none (planning)."""
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(sa.select(t.unsubscribes)))
            gone = list(await conn.execute(sa.select(t.gone_endpoints)))
        return BlockedTargets(
            unsubscribed=((r.subscriber_id, r.target) for r in rows),
            gone={
                (r.subscriber_id, r.url): r.at
                for r in gone
                if config_hashes.get(r.subscriber_id) == r.config_hash
            },
        )

    @guarded(READ)
    async def gone_endpoints(
        self, config_hashes: Mapping[str, str] | None = None
    ) -> list[GoneEndpoint]:
        """The endpoints that answered 410 Gone, oldest first; with ``config_hashes``
        only those still blocked (their subscriber's config entry has not changed)."""
        async with self.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    sa.select(t.gone_endpoints).order_by(
                        t.gone_endpoints.c.at, t.gone_endpoints.c.subscriber_id
                    )
                )
            )
        return [
            GoneEndpoint(r.subscriber_id, r.url, r.config_hash, r.at)
            for r in rows
            if config_hashes is None or config_hashes.get(r.subscriber_id) == r.config_hash
        ]

    @guarded(WRITE)
    async def unblock(
        self, subscriber_id: str, *, now: datetime, url: str | None = None
    ) -> Unblocked:
        """Lift a 410 block: forget the subscriber's gone endpoints (only ``url`` when
        given) and re-queue, for now, the deliveries to them that failed since the 410
        (the one that got it and those recorded ``gone:`` after it)."""
        g, c = t.gone_endpoints.c, t.deliveries.c
        which = g.subscriber_id == subscriber_id
        if url is not None:
            which &= g.url == url
        async with self.transaction() as tx:
            gone = list(await tx.execute(sa.select(g.url, g.at).where(which)))
            await tx.execute(t.gone_endpoints.delete().where(which))
            requeued: list[str] = []
            for row in gone:
                failed = (
                    (c.subscriber_id == subscriber_id)
                    & (c.target == row.url)
                    & (c.status == "failed")
                    & ((c.updated_at >= row.at) | c.last_error.startswith(GONE_PREFIX))
                )
                ids = [r.id for r in await tx.execute(sa.select(c.id).where(failed))]
                if ids:
                    await tx.execute(
                        t.deliveries.update()
                        .where(c.id.in_(ids))
                        .values(status="queued", attempts=0, next_at=now, updated_at=now)
                    )
                requeued += ids
        return Unblocked(endpoints=tuple(r.url for r in gone), requeued=tuple(requeued))
