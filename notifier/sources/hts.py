"""``kind = "hts"``: the USITC Harmonized Tariff Schedule REST export.

``…/reststop/exportList?from=8701&to=8716&format=JSON&styles=false`` answers a JSON array of
rows (``htsno``, ``indent``, ``description``, ``units``, ``general``, ``special``,
``other``, ``footnotes``, ``quotaQuantity``, ``additionalDuties``). It serves only the
current release and there is no change feed (PITFALLS.md), so every poll diffs the whole
range: each line with an ``htsno`` is one entry keyed by it, and a line missing from a
full export is ``hts.line.removed``. The body hash skips the parse when the release did
not change. A body that is not such an array fails the source: nothing is withdrawn.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import ijson  # type: ignore[import-untyped]

from notifier.config import FeedSection
from notifier.core import schedule
from notifier.core.model import Entry, Event, isoformat_z, stable_id
from notifier.errors import FetchError
from notifier.sources.base import Change, FetchContext, Fetched, ParseResult, Tagger, Validators
from notifier.sources.http import fetch_feed, one_line, parse_fetched

_REQUIRED_KEYS = ("htsno", "indent", "description")
_ARRAY_START = re.compile(rb"\s{0,64}\[")
_TITLE_MAX_CHARS = 500
_LINK = "https://hts.usitc.gov/search?query="
# The whole schedule (from=0100 to=9999) is ~35,000 lines; more means the format drifted.
MAX_LINES = 200_000
# ~40 MB exports: the default feed cap of 10 MB is too small for a wide range.
DEFAULT_MAX_BYTES = 64 * 2**20


def parse_hts_export(
    body: bytes,
    *,
    content_type: str | None = None,
    base_url: str | None = None,
    max_lines: int = MAX_LINES,
) -> ParseResult:
    """Parse an HTS JSON export into one entry per line with an ``htsno``, in order.

    The rows are streamed with ijson, so memory holds the lines being built, never the
    parsed document too. Each entry's ``summary`` is the canonical JSON of its compared
    fields (what the store keeps, so a later diff can name the fields that changed) and its
    ``content_hash`` the SHA-256 of that JSON. Raises FetchError naming what was expected
    when the body is not a JSON array of rows with ``htsno``, ``indent``, ``description``.
    """
    del content_type, base_url  # the same signature as every parser given to parse_fetched
    if not _ARRAY_START.match(body):  # ijson.items yields nothing for an object: say so
        raise FetchError("HTS export is not a JSON array of rows (expected '[' first)")
    rows: list[_Row] = []
    try:
        for row in _rows(body):
            if len(rows) >= max_lines:
                raise FetchError(f"HTS export has more than {max_lines} lines")
            rows.append(row)
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise FetchError(f"HTS export is not valid JSON: {one_line(exc)}") from None
    if not rows:
        raise FetchError("HTS export has no lines with an `htsno` (expected a non-empty range)")
    applies = schedule.resolve_applies_to((r.htsno, r.description, r.footnotes) for r in rows)
    return ParseResult(entries=tuple(_entry(row, applies[row.htsno]) for row in rows))


class _Row:
    """One line under construction (slots: an export holds tens of thousands)."""

    __slots__ = ("description", "footnotes", "general", "htsno", "other", "special", "units")

    def __init__(self, **fields: str) -> None:
        for name, value in fields.items():
            setattr(self, name, value)

    htsno: str
    description: str
    general: str
    special: str
    other: str
    units: str
    footnotes: str

    def compared(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in schedule.COMPARED_FIELDS}


def _rows(body: bytes) -> Iterator[_Row]:
    path = schedule.DescriptionPath()
    # Rate texts repeat ("Free", "", "25%"): one string object each, not one per line.
    interned: dict[str, str] = {}

    def text(raw: Mapping[str, Any], key: str) -> str:
        value = raw.get(key)
        value = " ".join(value.split()) if isinstance(value, str) else ""
        return interned.setdefault(value, value)

    for number, raw in enumerate(ijson.items(io.BytesIO(body), "item", use_float=True), 1):
        if not isinstance(raw, dict) or any(key not in raw for key in _REQUIRED_KEYS):
            missing = [k for k in _REQUIRED_KEYS if not isinstance(raw, dict) or k not in raw]
            raise FetchError(
                f"HTS export row {number} lacks {', '.join(missing)} "
                f"(expected objects with {', '.join(_REQUIRED_KEYS)})"
            )
        description = path.push(_indent(raw["indent"], number), _str(raw["description"]))
        htsno = _str(raw["htsno"]).strip()
        if not htsno:
            continue  # a description-only row: its text is now on the path
        yield _Row(
            htsno=htsno,
            description=description,
            general=text(raw, "general"),
            special=text(raw, "special"),
            other=text(raw, "other"),
            units=interned.setdefault(u := schedule.units_text(raw.get("units")), u),
            footnotes=interned.setdefault(f := schedule.footnotes_text(raw.get("footnotes")), f),
        )


def _indent(value: object, number: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FetchError(f"HTS export row {number}: `indent` is not a number")
    try:
        indent = int(value)  # a string ("2") in real exports
    except ValueError:
        raise FetchError(f"HTS export row {number}: `indent` is not a number") from None
    if not 0 <= indent <= 20:
        raise FetchError(f"HTS export row {number}: `indent` {indent} out of range 0-20")
    return indent


def _str(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _entry(row: _Row, applies_to: tuple[str, ...]) -> Entry:
    compared = row.compared()
    summary = canonical_json(compared)
    title = row.description
    if len(title) > _TITLE_MAX_CHARS:  # keep the most specific end of the path
        title = "…" + title[-(_TITLE_MAX_CHARS - 1) :]
    line = {
        "htsno": row.htsno,
        **compared,
        "applies_to": applies_to,
        "origins": schedule.origins_named(row.description),
    }
    return Entry(
        key=row.htsno,
        title=title,
        link=_LINK + row.htsno,
        published=None,
        summary=summary,
        content_hash=hashlib.sha256(summary.encode()).hexdigest(),
        details={"line": line},
    )


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_json(fields: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, ASCII (the C encoder's fast path)."""
    return _CANONICAL.encode(fields)


# --------------------------------------------------------------------------- events


def line_events(feed: FeedSection, changes: Sequence[Change], *, now: datetime) -> list[Event]:
    """``hts.line.added|changed|removed`` for a diff of schedule lines (pure)."""
    return [_line_event(feed, change, now=now) for change in changes]


_EVENT_KIND = {"new": "added", "updated": "changed", "removed": "removed"}


def _line_event(feed: FeedSection, change: Change, *, now: datetime) -> Event:
    kind = _EVENT_KIND[change.kind]
    entry = change.entry
    previous = _fields_of(change.previous[2]) if change.previous else None
    line = _line_of(entry)
    changes = schedule.field_changes(previous, line) if kind == "changed" else []
    htsno = str(line["htsno"])
    return Event(
        id="evt_" + stable_id(feed.id, htsno, entry.content_hash, kind),
        type=f"hts.line.{kind}",
        timestamp=now,
        data={"feed": feed.id, "line": line, "changes": changes, "detected_at": isoformat_z(now)},
        origins=tuple(line["origins"]),
        hts=(schedule.digits(htsno), *line["applies_to"]),
        text=str(line["description"]),
    )


def _line_of(entry: Entry) -> dict[str, Any]:
    """The line of an entry: its details, or (a removed line, rebuilt by the job from the
    store) its stored fields, with applies_to and origins derived from its description."""
    known = entry.details.get("line")
    if isinstance(known, Mapping):  # tuples in entries (shared, compact), lists in events
        line = dict(known)
        line["applies_to"] = list(line.get("applies_to") or ())
        line["origins"] = list(line.get("origins") or ())
        return line
    fields = _fields_of(entry.summary) or {}
    description = str(fields.get("description", entry.title))
    applies_to = schedule.headings_named(description) if schedule.is_chapter99(entry.key) else []
    return {
        "htsno": entry.key,
        **{name: fields.get(name, "") for name in schedule.COMPARED_FIELDS},
        "description": description,
        "applies_to": applies_to or [schedule.heading_of(entry.key)],
        "origins": list(schedule.origins_named(description)),
    }


def _fields_of(summary: str) -> dict[str, Any] | None:
    try:
        fields = json.loads(summary)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


class HtsKind:
    """The USITC HTS REST export of one range of the schedule (``hts.line.*`` events)."""

    name: ClassVar[str] = "hts"
    reports_removals: ClassVar[bool] = True
    tags_entries: ClassVar[bool] = False

    async def fetch(self, feed: FeedSection, validators: Validators, ctx: FetchContext) -> Fetched:
        fetched = await fetch_feed(
            ctx.session,
            str(feed.url),
            etag=validators.etag,
            last_modified=validators.last_modified,
            timeout_s=feed.timeout.total_seconds(),
            # The feed default (10 MB) would refuse a chapter-wide export; an explicit
            # max_bytes in the config still wins.
            max_bytes=max(feed.max_bytes, DEFAULT_MAX_BYTES)
            if "max_bytes" not in feed.model_fields_set
            else feed.max_bytes,
        )
        return await parse_fetched(fetched, validators, ctx, parse_hts_export)

    async def complete(
        self, feed: FeedSection, entries: Sequence[Entry], ctx: FetchContext
    ) -> tuple[list[Entry], set[str]]:
        return list(entries), set()

    def events(
        self, feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
    ) -> list[Event]:
        return line_events(feed, changes, now=now)
