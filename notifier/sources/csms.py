"""``kind = "csms"``: CBP's Cargo Systems Messaging Service bulletins, via GovDelivery.

Two listing forms are accepted: the bulletins RSS (parsed by the rss kind's parser, then
re-keyed) and the widget feed, ``…/widgets/USDHSCBP_WIDGET_2.json``: JSON, usually wrapped
as JSONP (``GDWidgets[0].update([...])``), whose items carry only ``subject``, ``date``
("07/21/2026 05:26 PM EDT") and ``link`` (PITFALLS.md). Bulletins are keyed by the CSMS
number in the subject ("CSMS # 65794272 - GUIDANCE: …"), by link when there is none.

The listing says nothing of what a bulletin covers, so :meth:`CsmsKind.complete` fetches
the page of each new or changed bulletin (under the same caps as a feed, a few at a time,
a bounded number per poll) and keeps its text and the HTS numbers it names. A bulletin
whose page fails is left ``partial``: not alerted, not remembered, tried again next poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from notifier.config import FeedSection
from notifier.core.model import Entry, Event, isoformat_z
from notifier.errors import FetchError
from notifier.sources.base import (
    Change,
    FetchContext,
    Fetched,
    ParseResult,
    Tagger,
    Validators,
)
from notifier.sources.events import entry_events
from notifier.sources.http import fetch_feed, one_line, parse_fetched
from notifier.sources.rss import parse_feed, plain_text
from notifier.sources.tagging import find_chapter99, find_hts_numbers

#: Bulletin pages fetched per poll; the rest are partial and wait for the next poll.
MAX_PAGES_PER_POLL = 20
PAGE_CONCURRENCY = 4
PAGE_MAX_BYTES = 2 * 2**20
SUMMARY_MAX_CHARS = 2000
# What is kept of a page's text for HTS extraction: bulletins are a few pages; a huge
# page (an HTML dump) is cut, not parsed in full.
TEXT_MAX_CHARS = 100_000
# cbp.gov and GovDelivery answer 403 to generic user agents (PITFALLS.md), so bulletin
# pages are asked for with a browser-like agent that still says who we are and where to
# read about us: nothing is disguised.
PAGE_USER_AGENT = (
    "Mozilla/5.0 (compatible; tariff-notifier/0.1; +https://github.com/tariff-notifier) like Gecko"
)

_CSMS_NUMBER = re.compile(r"\bCSMS\s*(?:#|No\.?|Number)?\s*:?\s*(\d{6,10})\b", re.IGNORECASE)
_JSONP = re.compile(rb"^\s*[A-Za-z_$][\w$.]*(?:\[\d+\])?(?:\.[\w$]+)*\s*\((.*)\)\s*;?\s*$", re.S)
_TIME_ZONES = {"EDT": -4, "EST": -5, "CDT": -5, "CST": -6, "UTC": 0, "GMT": 0}
_EASTERN = ZoneInfo("America/New_York")


def csms_number(subject: str) -> str | None:
    """The CSMS number of a subject ("CSMS # 65794272 - GUIDANCE: …" -> "65794272")."""
    found = _CSMS_NUMBER.search(subject)
    return found.group(1) if found else None


def parse_bulletin_list(
    body: bytes,
    *,
    content_type: str | None = None,
    base_url: str | None = None,
    max_entries: int = 1000,
) -> ParseResult:
    """A GovDelivery bulletins RSS or widget JSON/JSONP listing -> entries keyed by CSMS
    number, with empty summaries (:func:`bulletin_page` fills them in)."""
    if body.lstrip()[:1] == b"<":
        parsed = parse_feed(
            body, content_type=content_type, base_url=base_url, max_entries=max_entries
        )
        items = [(e.title, e.link, e.published) for e in parsed.entries]
        warning = parsed.warning
    else:
        items = [(s, link, _widget_date(d)) for s, d, link in _widget_items(body)]
        warning = None
        if len(items) > max_entries:
            warning = f"{len(items)} bulletins, only the first {max_entries} kept"
            items = items[:max_entries]
    entries = tuple(_listed_entry(subject, link, published) for subject, link, published in items)
    return ParseResult(entries=entries, warning=warning)


def _widget_items(body: bytes) -> list[tuple[str, str, str]]:
    """(subject, date, link) of a widget feed: JSON, or JSONP around it."""
    wrapped = _JSONP.match(body)
    payload = wrapped.group(1) if wrapped else body
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise FetchError(
            f"CSMS listing is neither RSS nor widget JSON/JSONP: {one_line(exc)}"
        ) from None
    if isinstance(raw, dict):  # a plain JSON form that wraps the list in an object
        raw = next((value for value in raw.values() if isinstance(value, list)), None)
    if not isinstance(raw, list):
        raise FetchError("CSMS widget feed is not a list of bulletins (expected subject, link)")
    items = []
    for index, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not isinstance(item.get("subject"), str):
            raise FetchError(f"CSMS widget item {index} has no `subject`")
        link, sent = item.get("link"), item.get("date")
        items.append(
            (
                item["subject"],
                sent if isinstance(sent, str) else "",
                link if isinstance(link, str) else "",
            )
        )
    return items


def _widget_date(value: str) -> str | None:
    """A widget date, "07/21/2026 05:26 PM EDT" -> "2026-07-21T21:26:00Z" (a zone it
    does not name: US Eastern)."""
    parts = value.split()
    zone = (
        parts.pop()
        if parts and parts[-1].isalpha() and parts[-1].upper() not in ("AM", "PM")
        else ""
    )
    try:
        naive = datetime.strptime(" ".join(parts), "%m/%d/%Y %I:%M %p")
    except ValueError:
        return None
    offset = _TIME_ZONES.get(zone.upper())
    tz = timezone(timedelta(hours=offset)) if offset is not None else _EASTERN
    return isoformat_z(naive.replace(tzinfo=tz))


def _listed_entry(subject: str, link: str, published: str | None) -> Entry:
    title = plain_text(subject)
    number = csms_number(title)
    # What the listing says is what identifies a version: a page is fetched once per new
    # or changed bulletin, and its text does not enter the hash (a page that renders a
    # little differently next time is not a new version).
    content_hash = hashlib.sha256(f"{title}\x1f{link}".encode()).hexdigest()
    return Entry(
        key=number or link or "sha256:" + hashlib.sha256(title.encode()).hexdigest(),
        title=title,
        link=link,
        published=published,
        summary="",
        content_hash=content_hash,
        details={"csms": {"number": number, "chapter99": [], "hts": []}},
    )


# ------------------------------------------------------------------------ bulletin pages

_BODY_MARKER = re.compile(
    rb"<(?:div|td|section|article)\b[^>]*\b(?:id|class)=\"[^\"]*bulletin[_-]?body", re.IGNORECASE
)


@dataclasses.dataclass(frozen=True, slots=True)
class BulletinPage:
    """What a bulletin page says (picklable: it comes back from the parse pool)."""

    text: str
    chapter99: tuple[str, ...]
    hts: tuple[str, ...]


def bulletin_page(body: bytes, *, content_type: str | None = None, **_options: Any) -> BulletinPage:
    """A bulletin's HTML page -> its plain text (bounded) and the HTS numbers it names.

    GovDelivery wraps the message in a ``bulletin_body`` element after the page chrome;
    when it is there the text starts at it, so the summary opens with the message.
    """
    marker = _BODY_MARKER.search(body)
    chunk = body[marker.start() :] if marker else body
    charset = _charset(content_type)
    html = chunk[: TEXT_MAX_CHARS * 8].decode(charset, errors="replace")
    text = plain_text(html)[:TEXT_MAX_CHARS]
    return BulletinPage(
        text=text,
        chapter99=tuple(find_chapter99(text)),
        hts=tuple(find_hts_numbers(text)),
    )


def _charset(content_type: str | None) -> str:
    found = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.IGNORECASE)
    if found:
        try:
            "".encode(found.group(1))
        except LookupError:
            return "utf-8"
        return found.group(1)
    return "utf-8"


def completed_entry(entry: Entry, page: BulletinPage) -> Entry:
    """The listed entry with its page's text as summary and ``details["csms"]``."""
    text = page.text
    summary = text if len(text) <= SUMMARY_MAX_CHARS else text[: SUMMARY_MAX_CHARS - 1] + "…"
    details: Mapping[str, Any] = {
        "csms": {
            "number": entry.details.get("csms", {}).get("number"),
            "chapter99": list(page.chapter99),
            "hts": list(page.hts),
        }
    }
    return dataclasses.replace(entry, summary=summary, details=details)


class CsmsKind:
    """CBP CSMS bulletins from a GovDelivery RSS or widget feed; each new bulletin's page
    is read for its text and the 9903.xx.xx lines and HTS numbers it names."""

    name: ClassVar[str] = "csms"
    reports_removals: ClassVar[bool] = False
    tags_entries: ClassVar[bool] = True

    async def fetch(self, feed: FeedSection, validators: Validators, ctx: FetchContext) -> Fetched:
        fetched = await fetch_feed(
            ctx.session,
            str(feed.url),
            etag=validators.etag,
            last_modified=validators.last_modified,
            timeout_s=feed.timeout.total_seconds(),
            max_bytes=feed.max_bytes,
            user_agent=PAGE_USER_AGENT,
        )
        return await parse_fetched(fetched, validators, ctx, parse_bulletin_list)

    async def complete(
        self, feed: FeedSection, entries: Sequence[Entry], ctx: FetchContext
    ) -> tuple[list[Entry], set[str]]:
        """Fetch the pages of these (new or changed) bulletins: at most
        :data:`MAX_PAGES_PER_POLL`, :data:`PAGE_CONCURRENCY` at a time; a page that fails
        (and every bulletin past the bound) is returned in the partial set."""
        gate = asyncio.Semaphore(PAGE_CONCURRENCY)
        partial = {entry.key for entry in entries[MAX_PAGES_PER_POLL:]}

        async def one(entry: Entry) -> Entry | None:
            if not entry.link:
                return entry  # nothing to read: the subject is all there is
            async with gate:
                try:
                    fetched = await fetch_feed(
                        ctx.session,
                        entry.link,
                        etag=None,
                        last_modified=None,
                        timeout_s=feed.timeout.total_seconds(),
                        max_bytes=min(feed.max_bytes, PAGE_MAX_BYTES),
                        user_agent=PAGE_USER_AGENT,
                    )
                    assert fetched.body is not None
                    page: BulletinPage = await ctx.parse(
                        bulletin_page, fetched.body, content_type=fetched.content_type
                    )
                except FetchError:
                    return None
            return completed_entry(entry, page)

        todo = list(entries[:MAX_PAGES_PER_POLL])
        done = await asyncio.gather(*(one(entry) for entry in todo))
        completed = []
        for entry, result in zip(todo, done, strict=True):
            if result is None:
                partial.add(entry.key)
            else:
                completed.append(result)
        return completed, partial

    def events(
        self, feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
    ) -> list[Event]:
        return entry_events(feed, changes, now=now, tagger=tagger)
