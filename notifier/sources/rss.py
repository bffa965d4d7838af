"""``kind = "rss"``: RSS 0.9x/1.0/2.0 and Atom, parsed with feedparser from bytes.

Pure and CPU-bound: :func:`parse_feed` runs in the parse pool (notifier/sources/pool.py).
Entries are keyed by guid/id, the link as fallback.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import io
import re
import xml.parsers.expat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

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
from notifier.sources.http import HTTP_SCHEMES, fetch_feed, one_line, parse_fetched

_TITLE_MAX_CHARS = 500
# Entries kept per poll. Not a silent cap: every entry of a feed within `max_bytes` is
# kept (an entry appended at the end of a 20,000-entry feed is still seen); past this
# many the poll warns that the rest were dropped.
MAX_ENTRIES = 100_000
_KEY_MAX_CHARS = 512
_LINK_MAX_CHARS = 2048


def parse_feed(
    body: bytes,
    *,
    content_type: str | None = None,
    base_url: str | None = None,
    summary_max_chars: int = 2000,
    max_entries: int = MAX_ENTRIES,
) -> ParseResult:
    """Parse RSS 0.9x/1.0/2.0 or Atom bytes into plain-text entries, in feed order.

    Titles and summaries become plain text: tags stripped (``script``/``style`` bodies
    dropped), entities decoded, whitespace collapsed. Nothing from a feed is ever rendered
    as HTML, so feedparser's sanitizer (60% of its time) is off; templates escape the text.
    ``base_url`` (the final fetch URL) resolves relative links; it is not given to
    feedparser, which would also resolve relative guids and so change entry keys when a
    feed moves. A defective feed with entries parses with a warning; with none it raises.
    """
    import feedparser  # here: the main process, which hands parsing to the pool, never needs it

    body, defused = _without_entity_declarations(body)
    headers = {"content-type": content_type or "application/xml"}
    try:
        parsed = feedparser.parse(
            io.BytesIO(body),  # never a str: feedparser may open a str as a path or URL
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # a parser bug on hostile input must fail this feed only
        raise FetchError(f"feed parser crashed: {type(exc).__name__}: {one_line(exc)}") from None
    raw_entries: list[Any] = parsed.get("entries") or []
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not raw_entries:
        if problem is not None:
            raise FetchError(f"not a feed: {one_line(problem) or type(problem).__name__}")
        if not parsed.get("version"):
            raise FetchError("not a feed: no RSS or Atom root element")
        return ParseResult(entries=(), title=_feed_title(parsed))
    warnings = ["DTD entity declarations ignored"] if defused else []
    if problem is not None:
        warnings.append(f"feed is not well-formed: {one_line(problem)}")
    if len(raw_entries) > max_entries:
        warnings.append(f"{len(raw_entries)} entries, only the first {max_entries} kept")
        raw_entries = raw_entries[:max_entries]
    entries = tuple(
        _to_entry(raw, base_url=base_url, summary_max_chars=summary_max_chars)
        for raw in raw_entries
    )
    return ParseResult(
        entries=entries, warning="; ".join(warnings) or None, title=_feed_title(parsed)
    )


def _feed_title(parsed: Any) -> str | None:
    """The feed's own ``<title>``, for alerts of a ``[[feed]]`` without a ``title``."""
    feed = parsed.get("feed") or {}
    title = " ".join(plain_text(str(feed.get("title") or "")).split())[:_TITLE_MAX_CHARS]
    return title or None


class _PrologEnd(Exception):
    """Stops the expat pre-pass once the prolog (XML declaration and DTD) is read."""


def _without_entity_declarations(body: bytes) -> tuple[bytes, bool]:
    """The body with its DOCTYPE removed when the DTD declares entities; True if removed.

    feedparser's own defence removes ``<!ENTITY`` only at the start of a line, so a
    billion-laughs DTD written on one line reaches expat, whose amplification limit is
    100x the input: a 1 MB feed took 26 s and 730 MB (10 MB: gigabytes). Feeds have no
    need for custom entities; without the DTD a reference to one is left as text.
    """
    wide = body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]  # UTF-16/32
    if b"<!ENTITY" not in (body.replace(b"\x00", b"") if wide else body):
        return body, False
    parser = xml.parsers.expat.ParserCreate()
    seen: dict[str, int] = {}

    def on_entity(*_args: object) -> None:
        seen["entity"] = 1

    def on_doctype_end() -> None:
        seen["doctype_end"] = parser.CurrentByteIndex  # the "]" or ">" closing the DOCTYPE
        raise _PrologEnd

    def on_element(*_args: object) -> None:
        raise _PrologEnd

    parser.EntityDeclHandler = on_entity
    parser.EndDoctypeDeclHandler = on_doctype_end
    parser.StartElementHandler = on_element
    try:
        parser.Parse(body, True)
    except _PrologEnd:
        pass
    except xml.parsers.expat.ExpatError as exc:
        raise FetchError(f"not a feed: DTD or prolog not well-formed: {exc}") from None
    if "entity" not in seen:
        return body, False  # "<!ENTITY" was only text in the content
    end = seen["doctype_end"]
    start = body.rfind(b"<!DOCTYPE", 0, end)
    close = body.find(b">", end)
    if wide or start < 0 or close < 0:
        raise FetchError("not a feed: DTD entity declarations that cannot be removed")
    return body[:start] + body[close + 1 :], True


def _to_entry(raw: Mapping[str, Any], *, base_url: str | None, summary_max_chars: int) -> Entry:
    title = plain_text(_str(_field(raw, "title")))
    summary_html = _str(_field(raw, "summary"))
    if not summary_html and _field(raw, "content"):  # Atom with <content> only
        summary_html = _str(_field(raw, "content")[0].get("value"))
    summary = plain_text(summary_html)
    # Hash the full normalized text, before truncation: changing summary_max_chars must
    # not turn every long entry into an "updated" one.
    content_hash = hashlib.sha256(f"{title}\x1f{summary}".encode()).hexdigest()
    return Entry(
        key=_entry_key(raw),
        title=_truncate(title, _TITLE_MAX_CHARS),
        link=_http_link(raw, base_url=base_url),
        published=_published(raw),
        summary=_truncate(summary, summary_max_chars),
        content_hash=content_hash,
    )


def _entry_key(raw: Mapping[str, Any]) -> str:
    """guid/id, else the link as written, else a hash of title and date.

    A key longer than 512 chars (a hostile feed) is replaced by its hash so store rows
    stay small.
    """
    key = _str(_field(raw, "id")).strip() or _str(_field(raw, "link")).strip()
    if not key:
        seed = "\x1f".join(
            (_str(_field(raw, "title")), _str(_field(raw, "published") or _field(raw, "updated")))
        )
        return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    if len(key) > _KEY_MAX_CHARS:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _http_link(raw: Mapping[str, Any], *, base_url: str | None) -> str:
    """The entry's link if it is an absolute http(s) URL (after resolving), else ""."""
    candidates = [_str(_field(raw, "link"))]
    candidates += [
        _str(link.get("href"))
        for link in _field(raw, "links") or ()
        if link.get("rel", "alternate") == "alternate"
    ]
    for candidate in candidates:
        href = candidate.strip()
        if not href or len(href) > _LINK_MAX_CHARS or _UNSAFE_IN_URL.search(href):
            continue
        if base_url:
            try:
                href = urljoin(base_url, href)
            except ValueError:
                continue
        try:
            parts = urlsplit(href)
        except ValueError:
            continue
        if parts.scheme.lower() in HTTP_SCHEMES and parts.hostname:
            return href
    return ""


def _published(raw: Mapping[str, Any]) -> str | None:
    """ISO 8601 UTC (``…Z``) from the published date, else the updated date."""
    parsed = _field(raw, "published_parsed") or _field(raw, "updated_parsed")
    if not parsed:
        return None
    try:  # feedparser's struct_time is UTC
        return isoformat_z(datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC))
    except (ValueError, OverflowError, OSError, TypeError):
        return None


# --- plain text ---------------------------------------------------------------------------

_DROPPED_ELEMENTS = re.compile(
    r"<(script|style|template|noscript)\b[^<>]*>.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)",
    re.IGNORECASE | re.DOTALL,
)
# Block-level tags become a space so "<p>a</p><p>b</p>" reads "a b"; inline tags vanish.
_BLOCK_TAG = re.compile(
    r"</?(?:address|article|aside|blockquote|br|d[dlt]|div|fig(?:caption|ure)|footer|h[1-6r]"
    r"|header|li|main|nav|ol|p|pre|section|t(?:able|body|d|foot|h|head|r)|ul)\b[^<>]*>"
    r"|<[!?][^<>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
# C0/C1 controls that str.split() does not treat as whitespace (ESC, NUL, DEL, …).
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x9f]")
_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f]")


def plain_text(value: str) -> str:
    """Markup or escaped text -> one line of plain text.

    Two rounds of strip-then-unescape: the Federal Register escapes its abstracts twice
    (``&amp;#39;`` in the XML, ``&#39;`` after XML parsing), and some feeds put escaped
    markup (``&lt;p&gt;``) inside HTML. Text that only looks like a tag (``<b>`` in a
    plain-text title) is stripped too: a safe loss, as nothing here is meant to be markup.
    """
    text = value
    for _round in range(2):
        if "<" not in text and "&" not in text:
            break
        text = _TAG.sub("", _BLOCK_TAG.sub(" ", _DROPPED_ELEMENTS.sub(" ", text)))
        if "&" not in text:
            break
        text = html.unescape(text)
    return " ".join(_CONTROLS.sub("", text).split())


def _truncate(text: str, max_chars: int) -> str:
    """At most ``max_chars``, ending in "…" when cut, at a word break when one is near."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return "…"[:max_chars]
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space >= max_chars * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _field(raw: Mapping[str, Any], key: str) -> Any:
    """``raw[key]`` without FeedParserDict's key aliases, which emit DeprecationWarnings
    (``published_parsed`` falls back to ``updated_parsed`` with a warning)."""
    return dict.get(raw, key) if isinstance(raw, dict) else raw.get(key)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


class RssKind:
    """RSS 0.9x/1.0/2.0 and Atom (the default kind)."""

    name: ClassVar[str] = "rss"
    reports_removals: ClassVar[bool] = False
    tags_entries: ClassVar[bool] = True

    async def fetch(self, feed: FeedSection, validators: Validators, ctx: FetchContext) -> Fetched:
        fetched = await fetch_feed(
            ctx.session,
            feed.url,
            etag=validators.etag,
            last_modified=validators.last_modified,
            timeout_s=feed.timeout.total_seconds(),
            max_bytes=feed.max_bytes,
        )
        return await parse_fetched(fetched, validators, ctx, parse_feed)

    async def complete(
        self, feed: FeedSection, entries: Sequence[Entry], ctx: FetchContext
    ) -> tuple[list[Entry], set[str]]:
        return list(entries), set()

    def events(
        self, feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
    ) -> list[Event]:
        return entry_events(feed, changes, now=now, tagger=tagger)
