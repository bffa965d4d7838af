"""Realistic sample events, one per event type, for tests, screenshots and ``send-test``.

Facts follow shared/DOMAIN.md (the spring 2025 US auto tariffs and the US-Japan deal).
Built through ``Rule.to_dict()`` and ``Tags.to_dict()`` so they have the contract's shape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from notifier.core.model import Entry, Event, Rule, Tags, stable_id

EDT = timezone(timedelta(hours=-4))
EST = timezone(timedelta(hours=-5))

AUTO_PARTS = Rule(
    id="us-232-auto-parts",
    title="Section 232 tariff on automobile parts",
    imposed_by="US",
    origins=("*",),
    hts=("8708", "8407", "8409"),
    rate="25%",
    effective=datetime(2025, 5, 3, 0, 1, tzinfo=EDT),
    basis="Section 232, Proclamation 10908",
    source="https://www.federalregister.gov/d/2025-05930",
)

JAPAN_AUTOS = Rule(
    id="us-jp-autos-15",
    title="Japanese automobiles and parts: 15% all-in under the US-Japan agreement",
    imposed_by="US",
    origins=("JP",),
    hts=("8703", "870421", "870431", "8708"),
    rate="15%",
    effective=datetime(2025, 9, 16, 0, 1, tzinfo=EDT),
    basis="Executive Order 14345",
    source="https://www.federalregister.gov/documents/2025/09/25/2025-17908/"
    "implementing-certain-tariff-related-elements-of-the-agreement-between-the-united-"
    "states-of-america-and-japan",
)

IEEPA_BASELINE = Rule(
    id="us-ieepa-baseline",
    title='IEEPA "reciprocal" baseline tariff',
    imposed_by="US",
    origins=("*",),
    hts=("*",),
    rate="10%",
    effective=datetime(2025, 4, 5, 0, 1, tzinfo=EDT),
    ends=datetime(2026, 2, 24, 0, 1, tzinfo=EST),
    basis="IEEPA, Executive Order 14257",
    source="https://www.federalregister.gov/d/2025-06063",
    status="revoked",
)

JAPAN_24 = Rule(
    id="us-ieepa-jp-24",
    title="Japan country rate under Executive Order 14257",
    imposed_by="US",
    origins=("JP",),
    hts=("*",),
    rate="24%",
    effective=datetime(2025, 4, 9, 0, 1, tzinfo=EDT),
    ends=datetime(2025, 4, 10, 0, 1, tzinfo=EDT),
    basis="IEEPA, Executive Order 14257 Annex I",
    source="https://www.federalregister.gov/d/2025-06063",
)

UPI_ENTRY = Entry(
    key="https://www.upi.com/Top_News/World-News/2025/04/17/japan-us-tariff-talks/",
    title="Japan, U.S. begin tariff talks as 25% auto duties bite",
    link="https://www.upi.com/Top_News/World-News/2025/04/17/japan-us-tariff-talks/",
    published="2025-04-17T02:30:00Z",
    summary=(
        "Japan's economic revitalization minister Ryosei Akazawa met U.S. officials in "
        "Washington on Wednesday for the first round of talks on the tariffs, including the "
        "25% duty on cars and the auto-parts levy due on May 3.\n\n"
        "Autos & parts make up about a third of Japan's exports to the United States."
    ),
    content_hash="c0ffee01",
)
UPI_TAGS = Tags(origins=("JP", "US"), hts=("8703", "8708"), rates=("25%",), dates=("2025-05-03",))

FR_ENTRY = Entry(
    key="https://www.federalregister.gov/documents/2025/04/03/2025-05930/adjusting-imports-"
    "of-automobiles-and-automobile-parts-into-the-united-states",
    title=(
        "Adjusting Imports of Automobiles and Automobile Parts Into the United States: "
        "Inclusions Process for Automobile Parts"
    ),
    link="https://www.federalregister.gov/documents/2025/04/03/2025-05930/adjusting-imports-"
    "of-automobiles-and-automobile-parts-into-the-united-states",
    published="2025-04-03T14:15:00Z",
    summary=(
        "By the authority vested in me as President by the Constitution and the laws of the "
        "United States, including section 232 of the Trade Expansion Act of 1962, imports of "
        "automobile parts classified under heading 8708 are subject to an additional 25% "
        "ad valorem duty from 12:01 a.m. eastern daylight time on May 3, 2025."
    ),
    content_hash="c0ffee02",
)
FR_TAGS = Tags(hts=("8703", "8708"), rates=("25%",), dates=("2025-05-03",))


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def rule_event(event_type: str, rule: Rule, *, timestamp: datetime, **extra: Any) -> Event:
    """A ``tariff.rule.*`` event for ``rule``; ``extra`` lands in ``data`` (``changes``…)."""
    data: dict[str, Any] = {"late": False, "rule": rule.to_dict(), "changes": [], **extra}
    instant = data.get("transition_at") or timestamp.isoformat()
    return Event(
        id="evt_" + stable_id(rule.id, event_type, instant),
        type=event_type,
        timestamp=timestamp,
        data=data,
        origins=rule.origins,
        hts=rule.hts,
    )


def entry_event(
    event_type: str,
    entry: Entry,
    tags: Tags,
    *,
    timestamp: datetime,
    feed: str = "federal-register-tariffs",
    feed_title: str | None = "Federal Register tariff documents",
    changes: list[dict[str, Any]] | None = None,
) -> Event:
    """A ``feed.entry.*`` event for ``entry``."""
    data = {
        "feed": feed,
        "feed_title": feed_title,
        "entry": entry.to_dict(),
        "tags": tags.to_dict(),
        "changes": changes or [],
    }
    return Event(
        id="evt_" + stable_id(feed, entry.key, entry.content_hash),
        type=event_type,
        timestamp=timestamp,
        data=data,
        origins=tags.origins,
        hts=tags.hts,
        text=f"{entry.title}\n{entry.summary}",
    )


def sample_events() -> list[Event]:
    """One realistic event of every type, in ``EVENT_TYPES`` order."""
    return [
        rule_event("tariff.rule.announced", AUTO_PARTS, timestamp=_utc(2025, 3, 27, 14, 0)),
        rule_event(
            "tariff.rule.changed",
            JAPAN_AUTOS,
            timestamp=_utc(2025, 9, 25, 13, 45),
            changes=[
                {"field": "rate", "from": "25%", "to": "15%"},
                {"field": "basis", "from": "Section 232", "to": "Executive Order 14345"},
            ],
        ),
        rule_event(
            "tariff.rule.withdrawn",
            IEEPA_BASELINE,
            timestamp=_utc(2026, 2, 21, 15, 0),
            reason="revoked",
        ),
        rule_event(
            "tariff.rule.reminder",
            AUTO_PARTS,
            timestamp=_utc(2025, 4, 26, 4, 1),
            # As the pipeline sends it: the reminder's own instant, a week before.
            transition_at=(AUTO_PARTS.effective - timedelta(days=7)).isoformat(),
            remind_before="7d",
        ),
        rule_event(
            "tariff.rule.effective",
            AUTO_PARTS,
            timestamp=_utc(2025, 5, 3, 4, 1),
            transition_at=AUTO_PARTS.effective.isoformat(),
        ),
        rule_event(
            "tariff.rule.expired",
            JAPAN_24,
            timestamp=_utc(2025, 4, 10, 13, 30),
            transition_at=JAPAN_24.ends.isoformat() if JAPAN_24.ends else None,
            late=True,
        ),
        entry_event(
            "feed.entry.new",
            UPI_ENTRY,
            UPI_TAGS,
            timestamp=_utc(2025, 4, 17, 2, 45),
            feed="upi-world-business",
            feed_title="UPI World News",
        ),
        entry_event(
            "feed.entry.updated",
            FR_ENTRY,
            FR_TAGS,
            timestamp=_utc(2025, 4, 3, 16, 0),
            changes=[
                {
                    "field": "title",
                    "from": "Adjusting Imports of Automobiles and Automobile Parts Into the "
                    "United States",
                    "to": FR_ENTRY.title,
                }
            ],
        ),
    ]


HTS_LINE = {
    "htsno": "8708295160",
    "description": "Parts and accessories of motor vehicles: Other parts: Of iron or steel",
    "general": "2.5%",
    "special": "Free (A,AU,CA)",
    "other": "25%",
    "units": ["kg"],
    "footnotes": "See 9903.94.05.",
    "applies_to": ["8708"],
    "origins": ["*"],
}
DETECTED = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)


def schedule_and_source_events() -> list[Event]:
    """One event of every ``hts.line.*`` and ``source.*`` type, in ``EVENT_TYPES`` order.

    (``sample_events`` covers the rule and entry families.)
    """
    changes = [{"field": "general", "from": "2.5%", "to": "2.5% + 25%"}]
    health = {"source": "usitc-hts", "kind": "hts", "since": "2025-05-02T10:00:00Z"}
    return [
        Event("evt_h1", "hts.line.added", DETECTED, {"line": HTS_LINE, "changes": []}),
        Event("evt_h2", "hts.line.changed", DETECTED, {"line": HTS_LINE, "changes": changes}),
        Event("evt_h3", "hts.line.removed", DETECTED, {"line": HTS_LINE, "changes": []}),
        Event(
            "evt_s1",
            "source.failing",
            DETECTED,
            {**health, "failures": 5, "last_error": "HTTP 503: <b>down</b>"},
        ),
        Event("evt_s2", "source.recovered", DETECTED, {**health, "failures": 0}),
        Event(
            "evt_s3",
            "source.held",
            DETECTED,
            {
                "source": "usitc-hts",
                "kind": "hts",
                "would_emit": {"hts.line.changed": 340, "hts.line.added": 2},
                "examples": ["8708.29.51.60 general 2.5% -> 2.5% + 25%"],
            },
        ),
    ]


def every_sample_event() -> list[Event]:
    """One event of every type in ``EVENT_TYPES``, in that order."""
    return [*sample_events(), *schedule_and_source_events()]


def sample_event(event_type: str) -> Event:
    """The sample of one type (``KeyError`` for an unknown type)."""
    by_type = {event.type: event for event in every_sample_event()}
    return by_type[event_type]


#: The instant the store tests write at (a whole second: SQLite keeps microseconds too).
STORE_NOW = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)


def store_event(n: int = 1) -> Event:
    """A small rule event, ``evt_<n>``, for the store's tests (the queue and its rows)."""
    return Event(
        id=f"evt_{n}",
        type="tariff.rule.effective",
        timestamp=STORE_NOW,
        data={"late": False, "rule": {"id": "r"}, "changes": []},
        origins=("*",),
        hts=("8708",),
    )
