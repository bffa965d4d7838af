"""Subscriptions: the targets that get nothing more (unsubscribed, or gone with 410)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

from notifier.store import schema as t
from notifier.store.engine import READ, WRITE, Connector, guarded

__all__ = ["SubscriptionQueries"]


class SubscriptionQueries(Connector):
    """``unsubscribes`` and ``gone_endpoints``."""

    @guarded(WRITE)
    async def mark_gone(
        self, subscriber_id: str, url: str, *, config_hash: str, now: datetime
    ) -> None:
        """A 410 Gone from ``url``: nothing more goes there under this config entry."""
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
        config entry). 410 stops deliveries "until the config changes" (CONTRACT.md)."""
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(sa.select(t.unsubscribes)))
            gone = list(await conn.execute(sa.select(t.gone_endpoints)))
        return {(r.subscriber_id, r.target) for r in rows} | {
            (r.subscriber_id, r.url)
            for r in gone
            if config_hashes.get(r.subscriber_id) == r.config_hash
        }
