"""The calendar: the stored rules (the baseline a calendar change is diffed against) and
which events were already emitted (what makes a transition fire once)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.model import Rule
from notifier.store import schema as t
from notifier.store.engine import READ, WRITE, Connector, guarded, in_chunks

__all__ = ["CalendarQueries"]


class CalendarQueries(Connector):
    """``rules``, and event ids in ``events``."""

    @guarded(READ)
    async def known_rules(self) -> dict[str, tuple[Rule, datetime]]:
        """The last stored calendar: rule id -> (rule, known since)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t.rules))
            return {r.rule_id: (Rule.from_dict(r.data), r.known_since) for r in rows}

    @guarded(WRITE)
    async def save_rules(
        self, conn: AsyncConnection, current: Sequence[Rule], *, now: datetime
    ) -> None:
        """Make the stored calendar equal ``current``, keeping each rule's ``known_since``."""
        known = {
            r.rule_id: r.data
            for r in await conn.execute(sa.select(t.rules.c.rule_id, t.rules.c.data))
        }
        wanted = {rule.id: rule for rule in current}
        gone = set(known) - set(wanted)
        if gone:
            await conn.execute(t.rules.delete().where(t.rules.c.rule_id.in_(gone)))
        for rule_id, rule in wanted.items():
            data = rule.to_dict()
            if rule_id not in known:
                await conn.execute(
                    self.dialect.insert_ignore(t.rules, "rule_id").values(
                        rule_id=rule_id, data=data, known_since=now, updated_at=now
                    )
                )
            elif known[rule_id] != data:
                await conn.execute(
                    t.rules.update()
                    .where(t.rules.c.rule_id == rule_id)
                    .values(data=data, updated_at=now)
                )

    @guarded(READ)
    async def emitted(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are stored (emitted before)."""
        found: set[str] = set()
        async with self.engine.connect() as conn:
            for chunk in in_chunks(event_ids):
                rows = await conn.execute(sa.select(t.events.c.id).where(t.events.c.id.in_(chunk)))
                found.update(r.id for r in rows)
        return found
