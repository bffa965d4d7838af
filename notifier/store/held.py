"""Held changes: what a mass change would have emitted, kept until an operator decides.

A held poll leaves the source's baseline as it was; its events (with their ids and the
``detected_at`` of the poll that found them) and the state it would have written wait
in ``held_changes``, one row per source. The same change found again keeps its row (the
fingerprint names it); a different one replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.core.model import Entry, Event
from notifier.store import schema as t
from notifier.store.engine import READ, WRITE, Connector, guarded

__all__ = ["HeldChange", "HeldQueries"]


@dataclass(frozen=True, slots=True)
class HeldChange:
    source_id: str
    fingerprint: str
    detected_at: datetime
    would_emit: Mapping[str, int]
    events: tuple[Event, ...]
    remember: tuple[Entry, ...]
    touch: frozenset[str]
    forget: frozenset[str]
    validators: Mapping[str, str | None]
    rules: tuple[Mapping[str, Any], ...] | None = None  # a held calendar URL's new rules


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "timestamp": event.timestamp.isoformat(),
        "data": dict(event.data),
        "origins": list(event.origins),
        "hts": list(event.hts),
        "text": event.text,
    }


def _event_of(raw: Mapping[str, Any]) -> Event:
    return Event(
        id=raw["id"],
        type=raw["type"],
        timestamp=datetime.fromisoformat(raw["timestamp"]),
        data=raw["data"],
        origins=tuple(raw["origins"]),
        hts=tuple(raw["hts"]),
        text=raw.get("text"),
    )


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "title": entry.title,
        "link": entry.link,
        "published": entry.published,
        "summary": entry.summary,
        "content_hash": entry.content_hash,
        "details": dict(entry.details),
    }


def _entry_of(raw: Mapping[str, Any]) -> Entry:
    return Entry(
        key=raw["key"],
        title=raw["title"],
        link=raw["link"],
        published=raw["published"],
        summary=raw["summary"],
        content_hash=raw["content_hash"],
        details=raw.get("details") or {},
    )


class HeldQueries(Connector):
    """``held_changes``."""

    async def hold_change(
        self,
        tx: AsyncConnection,
        source_id: str,
        *,
        fingerprint: str,
        detected_at: datetime,
        events: Sequence[Event],
        would_emit: Mapping[str, int] | None = None,
        remember: Iterable[Entry] = (),
        touch: Iterable[str] = (),
        forget: Iterable[str] = (),
        validators: Mapping[str, str | None] | None = None,
        rules: Sequence[Mapping[str, Any]] | None = None,
    ) -> bool:
        """Keep a held change (in the caller's transaction); False when this very change
        is held already (it is not held twice, and keeps its first ``detected_at``)."""
        c = t.held_changes.c
        current = await tx.scalar(sa.select(c.fingerprint).where(c.source_id == source_id))
        if current == fingerprint:
            return False
        counts: dict[str, int] = dict(would_emit or {})
        if not counts:
            for event in events:
                counts[event.type] = counts.get(event.type, 0) + 1
        row = {
            "source_id": source_id,
            "fingerprint": fingerprint,
            "detected_at": detected_at,
            "would_emit": counts,
            "events": [_event_json(e) for e in events],
            "state": {
                "remember": [_entry_json(e) for e in remember],
                "touch": sorted(touch),
                "forget": sorted(forget),
                "validators": dict(validators or {}),
                "rules": list(rules) if rules is not None else None,
            },
        }
        if current is not None:
            await tx.execute(t.held_changes.delete().where(c.source_id == source_id))
        await tx.execute(t.held_changes.insert().values(**row))
        return True

    @guarded(READ)
    async def held_changes(self) -> dict[str, HeldChange]:
        """Every held change, by source id."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.held_changes))).all()
        return {row.source_id: _held_of(row) for row in rows}

    async def take_held(self, tx: AsyncConnection, source_id: str) -> HeldChange | None:
        """Remove and return a source's held change (in the caller's transaction)."""
        c = t.held_changes.c
        row = (await tx.execute(sa.select(t.held_changes).where(c.source_id == source_id))).first()
        if row is None:
            return None
        await tx.execute(t.held_changes.delete().where(c.source_id == source_id))
        return _held_of(row)

    @guarded(WRITE)
    async def drop_held(self, source_ids: Iterable[str]) -> None:
        """Forget held changes of sources that left the config."""
        ids = list(source_ids)
        if ids:
            async with self.transaction() as tx:
                await tx.execute(t.held_changes.delete().where(t.held_changes.c.source_id.in_(ids)))


def _held_of(row: Any) -> HeldChange:
    state = row.state
    return HeldChange(
        source_id=row.source_id,
        fingerprint=row.fingerprint,
        detected_at=row.detected_at,
        would_emit=row.would_emit,
        events=tuple(_event_of(e) for e in row.events),
        remember=tuple(_entry_of(e) for e in state.get("remember", [])),
        touch=frozenset(state.get("touch", [])),
        forget=frozenset(state.get("forget", [])),
        validators=state.get("validators") or {},
        rules=tuple(state["rules"]) if state.get("rules") is not None else None,
    )
