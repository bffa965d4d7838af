"""Value types of the domain. Pydantic lives at the config boundary only; past it, these.

Event ids are derived from what the event *is* (rule id + transition + instant; feed id +
entry key + content hash). That is what makes "emitted once" and "stable id on retry" hold:
inserting the same event twice is a no-op keyed on its id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

EVENT_TYPES = (
    "tariff.rule.announced",
    "tariff.rule.changed",
    "tariff.rule.withdrawn",
    "tariff.rule.reminder",
    "tariff.rule.effective",
    "tariff.rule.expired",
    "feed.entry.new",
    "feed.entry.updated",
    "hts.line.added",
    "hts.line.changed",
    "hts.line.removed",
    "source.failing",
    "source.recovered",
    "source.held",
)

RuleStatus = Literal["scheduled", "paused", "revoked"]


def stable_id(*parts: str) -> str:
    """A short, stable identifier derived from its parts (hex, 24 chars = 96 bits)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:24]


def isoformat_z(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, seconds precision."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Rule:
    """One dated tariff action from a calendar file."""

    id: str
    title: str
    imposed_by: str
    origins: tuple[str, ...]
    hts: tuple[str, ...]
    rate: str
    effective: datetime
    ends: datetime | None = None
    basis: str = ""
    source: str = ""
    status: RuleStatus = "scheduled"
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``data.rule`` object (datetimes as RFC 3339 with offset)."""
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "imposed_by": self.imposed_by,
            "origins": list(self.origins),
            "hts": list(self.hts),
            "rate": self.rate,
            "effective": self.effective.isoformat(),
            "ends": self.ends.isoformat() if self.ends else None,
            "basis": self.basis,
            "source": self.source,
            "status": self.status,
        }
        if self.notes:
            out["notes"] = self.notes
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Rule:
        return cls(
            id=raw["id"],
            title=raw["title"],
            imposed_by=raw.get("imposed_by", ""),
            origins=tuple(raw.get("origins", ())),
            hts=tuple(raw.get("hts", ())),
            rate=raw.get("rate", ""),
            effective=datetime.fromisoformat(raw["effective"]),
            ends=datetime.fromisoformat(raw["ends"]) if raw.get("ends") else None,
            basis=raw.get("basis", ""),
            source=raw.get("source", ""),
            status=raw.get("status", "scheduled"),
            notes=raw.get("notes", ""),
        )


@dataclass(frozen=True, slots=True)
class Tags:
    """What a feed entry mentions. Codes are upper-case ISO 3166 alpha-2 (``EU`` too)."""

    origins: tuple[str, ...] = ()
    hts: tuple[str, ...] = ()
    rates: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    # Chapter 99 lines named ("9903.94.05"): what they are, additional duties, not goods.
    chapter99: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "origins": list(self.origins),
            "hts": list(self.hts),
            "rates": list(self.rates),
            "dates": list(self.dates),
            "chapter99": list(self.chapter99),
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """One parsed feed entry. ``key`` is guid/id, the link as fallback."""

    key: str
    title: str
    link: str
    published: str | None
    summary: str
    content_hash: str
    # What a structured source knows beyond title and summary, merged into
    # ``data.entry`` (``document`` for the Federal Register, ``csms`` for CBP bulletins,
    # ``line`` for a schedule line). Part of ``content_hash`` where it matters.
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "title": self.title,
            "link": self.link,
            "published": self.published,
            "summary": self.summary,
            **self.details,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """Something a subscriber may want to hear about.

    ``data`` is the JSON-ready ``data`` object of the webhook payload minus ``event_id``.
    ``origins``/``hts`` are what subscriber filters match; ``text`` is what ``keywords``
    match (``None`` for rule events: keywords filter feed entries only).
    """

    id: str
    type: str
    timestamp: datetime
    data: Mapping[str, Any]
    origins: tuple[str, ...] = ()
    hts: tuple[str, ...] = ()
    text: str | None = None

    def payload(self) -> dict[str, Any]:
        """The Standard Webhooks body of the contract."""
        return {
            "type": self.type,
            "timestamp": isoformat_z(self.timestamp),
            "data": {"event_id": self.id, **self.data},
        }


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One ``[[subscriber]]``: where to send and what it wants (filters combine with AND).

    A filter that is ``None`` matches everything. ``config_hash`` fingerprints the config
    entry: a 410 Gone blocks an endpoint until the entry changes (CONTRACT.md).
    """

    id: str
    email: tuple[str, ...] = ()
    webhook: str | None = None
    secret: str | None = field(default=None, repr=False)
    format: Literal["standard", "slack"] = "standard"
    origins: tuple[str, ...] | None = None
    hts: tuple[str, ...] | None = None
    keywords: tuple[str, ...] | None = None
    events: tuple[str, ...] | None = None
    digest: str | None = None
    config_hash: str = ""

    @property
    def targets(self) -> tuple[str, ...]:
        """Every address and endpoint of this subscriber."""
        return (*self.email, *((self.webhook,) if self.webhook else ()))


DeliveryStatus = Literal["queued", "sent", "failed", "dead"]
Channel = Literal["email", "webhook"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt-able unit of the outbox: an event to one target of one subscriber.

    Email deliveries have one recipient each, so a 5xx for one address is final for that
    address only. ``id`` is stable: it is the ``webhook-id`` and the ``Message-ID`` seed.
    """

    id: str
    event_id: str
    subscriber_id: str
    channel: Channel
    target: str
    status: DeliveryStatus
    attempts: int
    next_at: datetime | None
    created_at: datetime
    last_error: str | None = None
    sent_at: datetime | None = None
    digest_at: datetime | None = None

    @staticmethod
    def make_id(event_id: str, subscriber_id: str, channel: str, target: str) -> str:
        return "dlv_" + stable_id(event_id, subscriber_id, channel, target)


Outcome = Literal["sent", "retry", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a channel says about one attempt.

    ``sent``; ``retry`` (a later attempt may succeed, ``retry_after_s`` when the peer said
    when); ``failed`` (final for this delivery); ``gone`` (final, and the endpoint is gone:
    410, so nothing more goes to it until its config entry changes). ``sha256`` is the hash
    of the exact bytes put on the wire (the ledger's record of which version was sent).
    """

    outcome: Outcome
    detail: str = ""
    retry_after_s: float | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """A rendered email, ready for a channel. ``message_id`` includes the angle brackets."""

    message_id: str
    recipient: str
    subject: str
    text: str
    html: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """A rendered webhook call. ``body`` is the exact bytes that are signed and sent."""

    webhook_id: str
    url: str
    body: bytes
    secret: str | None  # None for format = "slack" (unsigned)
