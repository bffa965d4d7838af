"""The ``source.*`` events: a source failing, recovered, or holding a mass change (pure).

Their ids name the episode (the last success before it), so each is emitted once per
episode across restarts and instances, like every other event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from notifier.core.decide import HealthView, HoldDecision
from notifier.core.model import Event, isoformat_z, stable_id


def health_event_id(kind: Literal["failing", "recovered"], source_id: str, episode: str) -> str:
    return "evt_" + stable_id(source_id, f"source.{kind}", episode)


def health_event(
    kind: Literal["failing", "recovered"],
    source_id: str,
    source_kind: str,
    episode: str,
    view: HealthView,
    *,
    now: datetime,
) -> Event:
    """``source.failing`` (data: source, kind, since, failures, last_error) or
    ``source.recovered`` for one episode of a source."""
    data: dict[str, Any] = {
        "source": source_id,
        "kind": source_kind,
        "since": isoformat_z(view.last_ok_at) if view.last_ok_at else None,
        "failures": view.failures,
        "last_error": view.last_error,
        "detected_at": isoformat_z(now),
    }
    return Event(
        id=health_event_id(kind, source_id, episode),
        type=f"source.{kind}",
        timestamp=now,
        data=data,
        origins=("*",),
        hts=("*",),
    )


def held_event(source_id: str, source_kind: str, hold: HoldDecision, *, now: datetime) -> Event:
    """``source.held``: what a held poll would have emitted, for an operator to decide."""
    return Event(
        id="evt_" + stable_id(source_id, "source.held", hold.fingerprint),
        type="source.held",
        timestamp=now,
        data={
            "source": source_id,
            "kind": source_kind,
            "would_emit": dict(hold.would_emit),
            "examples": list(hold.examples),
            "detected_at": isoformat_z(now),
        },
        origins=("*",),
        hts=("*",),
    )
