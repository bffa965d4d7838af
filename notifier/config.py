"""notifier.toml and the calendar files -> validated, typed models.

Every problem becomes a :class:`ConfigError` that names the file, the key path
(``feed[2].every``), the line where it can be found and what was expected: a user should
never have to guess which of 40 feeds is wrong.
"""

from __future__ import annotations

import glob
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from notifier.errors import ConfigError
from notifier.model import Rule

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DIGEST = re.compile(r"^(daily|weekly (MON|TUE|WED|THU|FRI|SAT|SUN)) ([01]\d|2[0-3]):([0-5]\d)$")


def parse_duration(value: Any) -> timedelta:
    """``"30s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1w"`` (or a number of seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f'expected a duration like "30s", "15m", "2h" or "1d", got {value!r}')
        seconds = float(match.group(1)) * _UNITS_S[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form: ``timedelta(days=7)`` -> ``"7d"``."""
    seconds = delta.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


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
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MIN_RETENTION = timedelta(days=7)


class NotifierSection(_Strict):
    state: str = "sqlite:///state/notifier.db"
    timezone: ZoneName = "UTC"
    templates: str | None = None
    public_url: HttpUrl | None = None
    health: str | None = Field(default=None, pattern=r"^[\w.\-\[\]:]+:\d{1,5}$")
    late_limit: Duration = timedelta(days=30)
    # How long events, the delivery log and entries gone from their feed are kept.
    retention: Duration = timedelta(days=90)
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


class FeedSection(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    url: HttpUrl
    every: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=30)
    max_bytes: int = Field(default=10 * 2**20, ge=1024)
    title: str | None = None


class CalendarSection(_Strict):
    paths: list[str] = Field(default_factory=lambda: ["calendar/*.toml"])
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
    digest: str | None = Field(default=None, pattern=_DIGEST.pattern)

    @field_validator("events")
    @classmethod
    def _known_event_globs(cls, value: list[str] | None) -> list[str] | None:
        from fnmatch import fnmatchcase

        from notifier.model import EVENT_TYPES

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


def subscriber_hash(subscriber: SubscriberSection) -> str:
    """A fingerprint of one subscriber's config entry (a 410 holds until it changes)."""
    import hashlib

    return hashlib.sha256(subscriber.model_dump_json().encode()).hexdigest()[:16]


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


class Config:
    """A loaded config: the validated model plus where it came from."""

    def __init__(
        self, model: ConfigModel, *, path: Path, rules: list[Rule], state_base: Path | None = None
    ) -> None:
        self.model = model
        self.path = path
        self.base_dir = path.parent
        self.rules = rules
        # Relative state paths resolve against the config's folder, except for the
        # config shipped inside an installed package: its state goes to the cwd.
        self.state_base = state_base or self.base_dir

    @property
    def subscribers(self) -> list[SubscriberSection]:
        return self.model.subscriber

    @property
    def feeds(self) -> list[FeedSection]:
        return self.model.feed

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.model.notifier.timezone)

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def state_url(self) -> str:
        """The SQLAlchemy URL with a relative SQLite path made absolute."""
        url = self.model.notifier.state
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.state_base / url[len(prefix) :])
        return url

    @property
    def state_dir(self) -> Path:
        """Where file-based state lives (the SQLite file's folder; Maildir goes under it)."""
        url = self.state_url
        if url.startswith("sqlite:///") and ":memory:" not in url:
            return Path(url[len("sqlite:///") :]).parent
        return self.state_base / "state"


# --- loading ---------------------------------------------------------------------------


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", file=str(path), line=int(line.group(1)) if line else None
        ) from None


def expand_env(raw: Any, *, file: str, environ: Mapping[str, str], key: str = "") -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is an error naming it."""
    if isinstance(raw, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    f"environment variable {name} is not set (referenced as ${{{name}}})",
                    file=file,
                    key=key or None,
                )
            return environ[name]

        return _ENV_REF.sub(substitute, raw)
    if isinstance(raw, dict):
        return {
            k: expand_env(v, file=file, environ=environ, key=f"{key}.{k}" if key else k)
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return [
            expand_env(v, file=file, environ=environ, key=f"{key}[{i}]") for i, v in enumerate(raw)
        ]
    return raw


def _key_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def locate_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line of a key path in a TOML text (tomllib keeps no positions).

    Understands ``[table]``, ``[[array]]`` headers and ``key = value`` lines, which is the
    shape of our files; returns the header's line when the key itself is absent.
    """
    names = [p for p in loc if isinstance(p, str)]
    if not names:
        return None
    table, index = names[0], next((p for p in loc[1:2] if isinstance(p, int)), None)
    leaf = next((p for p in reversed(loc) if isinstance(p, str) and p != table), None)
    header_line, seen, inside = None, -1, False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[] \t").split("#")[0].strip()
            is_array = stripped.startswith("[[")
            if name == table:
                seen += 1 if is_array else 0
                inside = index is None or seen == index
                if inside:
                    header_line = number
            else:
                inside = False
            continue
        if inside and leaf and re.match(rf"^{re.escape(leaf)}\s*=", stripped):
            return number
    return header_line


def _raise_validation(exc: ValidationError, *, file: str, text: str) -> None:
    error = exc.errors()[0]
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against the documentation)"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif "input" in error and error["type"] not in ("value_error",):
        message += f" (got {error['input']!r})"
    count = len(exc.errors())
    if count > 1:
        message += f" (and {count - 1} more problem{'s' if count > 2 else ''})"
    raise ConfigError(
        message, file=file, key=_key_path(loc) or None, line=locate_line(text, loc)
    ) from None


def _check_unique(items: list[Any], *, table: str, file: str, text: str) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            raise ConfigError(
                f"duplicate id {item.id!r} (also {table}[{seen[item.id]}])",
                file=file,
                key=f"{table}[{index}].id",
                line=locate_line(text, (table, index, "id")),
            )
        seen[item.id] = index


def load_calendar(paths: list[Path]) -> list[Rule]:
    """Load calendar files; rule ids must be unique across all of them."""
    rules: list[Rule] = []
    origin: dict[str, str] = {}
    for path in paths:
        raw, text = _read_toml(path)
        try:
            model = CalendarFile.model_validate(raw)
        except ValidationError as exc:
            _raise_validation(exc, file=str(path), text=text)
            raise  # unreachable; keeps type checkers calm
        for index, rule in enumerate(model.rule):
            if rule.id in origin:
                raise ConfigError(
                    f"duplicate rule id {rule.id!r} (also in {origin[rule.id]})",
                    file=str(path),
                    key=f"rule[{index}].id",
                    line=locate_line(text, ("rule", index, "id")),
                )
            origin[rule.id] = str(path)
            rules.append(rule.to_rule())
    return rules


def calendar_files(model: ConfigModel, *, base_dir: Path, file: str) -> list[Path]:
    """Expand ``[calendar] paths`` globs relative to the config file's folder."""
    found: list[Path] = []
    for index, pattern in enumerate(model.calendar.paths):
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base_dir / full
        if glob.has_magic(str(full)):
            found.extend(sorted(Path(p) for p in glob.glob(str(full))))
        elif full.is_file():
            found.append(full)
        else:
            raise ConfigError(
                f"calendar file {full} does not exist",
                file=file,
                key=f"calendar.paths[{index}]",
            )
    return list(dict.fromkeys(found))


def load_config(
    path: Path, *, environ: Mapping[str, str] | None = None, state_base: Path | None = None
) -> Config:
    """Read, expand and validate a config file and every calendar file it names."""
    raw, text = _read_toml(path)
    raw = expand_env(raw, file=str(path), environ=os.environ if environ is None else environ)
    try:
        model = ConfigModel.model_validate(raw)
    except ValidationError as exc:
        _raise_validation(exc, file=str(path), text=text)
        raise
    _check_unique(model.feed, table="feed", file=str(path), text=text)
    _check_unique(model.subscriber, table="subscriber", file=str(path), text=text)
    rules = load_calendar(calendar_files(model, base_dir=path.parent, file=str(path)))
    return Config(model, path=path.resolve(), rules=rules, state_base=state_base)
