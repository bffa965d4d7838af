"""The schema of notifier.toml and of the calendar files (pydantic, at the boundary only).

Past :mod:`notifier.config.load`, the rest of the notifier sees core values
(:mod:`notifier.core.model`), never these models.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from notifier.core.durations import parse_duration
from notifier.core.model import Rule, Subscriber

_DIGEST = re.compile(r"^(daily|weekly (MON|TUE|WED|THU|FRI|SAT|SUN)) ([01]\d|2[0-3]):([0-5]\d)$")


def _check_digest(value: str) -> str:
    if not _DIGEST.match(value):
        raise ValueError(
            'expected "daily HH:MM" or "weekly DAY HH:MM" (DAY one of MON TUE WED THU FRI '
            f'SAT SUN, 24-hour time), like "daily 08:00" or "weekly MON 07:30"; got {value!r}'
        )
    return value


_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[\w.\-]+):(\d{1,5})$")


def _check_address(value: str) -> str:
    match = _ADDRESS.match(value)
    if not match or int(match.group(1)) > 65535:
        raise ValueError(
            'expected HOST:PORT like "127.0.0.1:8787" ([::1]:8787 for IPv6; port 0 picks '
            f"a free port); got {value!r}"
        )
    return value


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f'expected an IANA time zone like "America/New_York", got {name!r}'
        ) from exc
    return name


def _check_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "expected a datetime with an offset, like 2025-05-03T00:01:00-04:00 "
            f"(got the local datetime {value.isoformat()})"
        )
    return value


def _check_hts(values: list[str]) -> list[str]:
    out = []
    for value in values:
        code = value.replace(".", "").strip()
        if code != "*" and not (code.isdigit() and 2 <= len(code) <= 10):
            raise ValueError(
                f'expected HTS prefixes of 2-10 digits like "8708" or "7208.10", got {value!r}'
            )
        out.append(code)
    return out


def _check_origins(values: list[str]) -> list[str]:
    out = []
    for value in values:
        code = value.strip().upper()
        if code != "*" and not re.fullmatch(r"[A-Z]{2}", code):
            raise ValueError(f'expected ISO 3166 alpha-2 codes like "JP" or "*", got {value!r}')
        out.append(code)
    return out


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
ZoneName = Annotated[str, AfterValidator(_check_zone)]
AwareDatetime = Annotated[datetime, AfterValidator(_check_aware)]
HtsList = Annotated[list[str], AfterValidator(_check_hts)]
OriginList = Annotated[list[str], AfterValidator(_check_origins)]


def _check_http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value):
        raise ValueError(
            f'expected an http:// or https:// URL like "https://example.org/feed", got {value!r}'
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MIN_RETENTION = timedelta(days=7)


class NotifierSection(_Strict):
    state: str = "sqlite:///state/notifier.db"
    timezone: ZoneName = "UTC"
    templates: str | None = None
    public_url: HttpUrl | None = None
    health: Annotated[str, AfterValidator(_check_address)] | None = None
    late_limit: Duration = timedelta(days=30)
    # How long events, the delivery log and entries gone from their feed are kept.
    retention: Duration = timedelta(days=90)
    # How long the ledger (one row per attempt: who got which version, its SHA-256) is
    # kept; it outlives `retention` so "did the broker get it" has an answer years on.
    ledger_retention: Duration = timedelta(days=730)
    # Signs unsubscribe tokens; when absent one is derived and kept in the state store.
    unsubscribe_secret: str | None = None

    @model_validator(mode="after")
    def _retention_outlives_late_limit(self) -> NotifierSection:
        # A sent transition is remembered by its event: forgotten any sooner, a transition
        # still within late_limit would be sent again.
        if self.retention < MIN_RETENTION:
            raise ValueError(f'expected `retention` of at least "{MIN_RETENTION.days}d"')
        if self.retention <= self.late_limit:
            raise ValueError(
                "expected `retention` longer than `late_limit` (a calendar transition is "
                "remembered as sent for `retention`, and one up to `late_limit` old is "
                "still sent late)"
            )
        if self.ledger_retention < self.retention:
            raise ValueError(
                "expected `ledger_retention` at least as long as `retention` (the ledger is "
                "the record that outlives the delivery log)"
            )
        return self


class SmtpSection(_Strict):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    sender: str
    pool_size: int = Field(default=4, ge=1, le=64)


class DeliverySection(_Strict):
    backoff: list[Duration] = Field(
        default_factory=lambda: [
            parse_duration(v) for v in ("5s", "5m", "30m", "2h", "5h", "10h", "10h")
        ]
    )
    timeout: Duration = timedelta(seconds=15)
    concurrency: int = Field(default=50, ge=1, le=10_000)


_MAX_CHANGES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def _check_max_changes(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and (match := _MAX_CHANGES.match(value)):
        number = float(match.group(1))
        if number > 0 and (not match.group(2) or number <= 100):
            return value.strip()
    raise ValueError(
        f'expected a count like 50 or a share like "25%" of the entries known, got {value!r}'
    )


MaxChanges = Annotated[str, BeforeValidator(_check_max_changes)]


class FeedSection(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    url: HttpUrl
    kind: Literal["rss", "federal-register", "federal-register-inspection", "csms", "hts"] = "rss"
    every: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=30)
    max_bytes: int = Field(default=10 * 2**20, ge=1024)
    title: str | None = None
    # Source health (CONTRACT "Trust"): consecutive failures before source.failing, and
    # how long without a successful poll (default 4 x every, at least a day).
    alert_after: int = Field(default=3, ge=1)
    stale_after: Duration | None = None
    # A poll that would emit more is held for an operator (default "25%", at least 20).
    max_changes: MaxChanges = "25%"

    @property
    def stale_limit(self) -> timedelta:
        return self.stale_after or max(self.every * 4, timedelta(days=1))

    def change_limit(self, known: int) -> int:
        """The most events one poll may emit before it is held, for ``known`` items."""
        text = self.max_changes
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            limit = int(known * share)
            return max(limit, 20) if self.max_changes == "25%" else max(limit, 1)
        return int(float(text))


class CalendarSection(_Strict):
    paths: list[str] = Field(default_factory=lambda: ["calendar/*.toml"])
    # Calendar files served over HTTP(S), same schema, polled with conditional GET.
    urls: list[HttpUrl] = Field(default_factory=list)
    every: Duration = timedelta(hours=1)
    remind: list[Duration] = Field(default_factory=lambda: [timedelta(days=7), timedelta(days=1)])


class TaggingSection(_Strict):
    gazetteer: list[str] = Field(default_factory=list)


class SubscriberSection(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    email: list[Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")]] = Field(
        default_factory=list
    )
    webhook: HttpUrl | None = None
    secret: str | None = Field(default=None, repr=False)
    format: Literal["standard", "slack"] = "standard"
    origins: OriginList | None = None
    hts: HtsList | None = None
    keywords: list[str] | None = None
    events: list[str] | None = None
    digest: Annotated[str, AfterValidator(_check_digest)] | None = None

    @field_validator("events")
    @classmethod
    def _known_event_globs(cls, value: list[str] | None) -> list[str] | None:
        from fnmatch import fnmatchcase

        from notifier.core.model import EVENT_TYPES

        for pattern in value or []:
            if not any(fnmatchcase(t, pattern) for t in EVENT_TYPES):
                raise ValueError(
                    f"expected a glob over event types ({', '.join(EVENT_TYPES)}), "
                    f"{pattern!r} matches none"
                )
        return value

    @model_validator(mode="after")
    def _has_a_channel(self) -> SubscriberSection:
        if not self.email and not self.webhook:
            raise ValueError("expected `email` or `webhook` (a subscriber needs somewhere to send)")
        if self.webhook and self.format == "standard":
            if not self.secret:
                raise ValueError(
                    'expected `secret` ("whsec_…") for a webhook with format "standard"'
                )
            if not self.secret.startswith("whsec_"):
                raise ValueError('expected `secret` to start with "whsec_" (Standard Webhooks)')
        if self.digest and not self.email:
            raise ValueError("expected `email`: a digest is sent by email")
        return self

    def to_subscriber(self) -> Subscriber:
        return Subscriber(
            id=self.id,
            email=tuple(self.email),
            webhook=self.webhook,
            secret=self.secret,
            format=self.format,
            origins=_optional(self.origins),
            hts=_optional(self.hts),
            keywords=_optional(self.keywords),
            events=_optional(self.events),
            digest=self.digest,
            config_hash=subscriber_hash(self),
        )


def subscriber_hash(subscriber: SubscriberSection) -> str:
    """A fingerprint of one subscriber's config entry (a 410 holds until it changes)."""
    import hashlib

    return hashlib.sha256(subscriber.model_dump_json().encode()).hexdigest()[:16]


def _optional(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


class ConfigModel(_Strict):
    notifier: NotifierSection = Field(default_factory=NotifierSection)
    smtp: SmtpSection | None = None
    delivery: DeliverySection = Field(default_factory=DeliverySection)
    feed: list[FeedSection] = Field(default_factory=list)
    calendar: CalendarSection = Field(default_factory=CalendarSection)
    subscriber: list[SubscriberSection] = Field(default_factory=list)
    tagging: TaggingSection = Field(default_factory=TaggingSection)


class RuleModel(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    title: str = Field(min_length=1)
    imposed_by: str = "US"
    origins: OriginList = Field(default_factory=lambda: ["*"])
    hts: HtsList = Field(default_factory=lambda: ["*"])
    rate: str = ""
    effective: AwareDatetime
    ends: AwareDatetime | None = None
    basis: str = ""
    source: str = ""
    status: Literal["scheduled", "paused", "revoked"] = "scheduled"
    notes: str = ""

    @model_validator(mode="after")
    def _ends_after_effective(self) -> RuleModel:
        if self.ends is not None and self.ends <= self.effective:
            raise ValueError("expected `ends` after `effective`")
        return self

    def to_rule(self) -> Rule:
        return Rule(
            id=self.id,
            title=self.title,
            imposed_by=self.imposed_by,
            origins=tuple(self.origins),
            hts=tuple(self.hts),
            rate=self.rate,
            effective=self.effective,
            ends=self.ends,
            basis=self.basis,
            source=self.source,
            status=self.status,
            notes=self.notes,
        )


class CalendarFile(_Strict):
    # When a person last checked the file against its sources; `check` and start-up warn
    # when a file in use was reviewed more than 90 days ago (CONTRACT: calendar files).
    reviewed: date | None = None
    rule: list[RuleModel] = Field(default_factory=list)
