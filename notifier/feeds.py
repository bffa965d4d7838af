"""Feeds: fetch (validators, caps, deadline) and parse into entries; a pure entry diff.

feedparser never sees a URL. ``feedparser.parse(url)`` has no timeout, no size cap,
unbounded gzip, follows redirects to ``file:``/``ftp:`` and may read a string as a local
path (PITFALLS.md), so we fetch with aiohttp under our own limits and hand it the bytes.

The three stages are separate so the caller can skip the costly one: ``fetch_feed``
(async, I/O) -> compare ``body_hash`` with the last one -> ``parse_feed`` (pure, CPU, run
in a process pool) -> ``diff_entries`` (pure).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import html
import io
import re
import xml.parsers.expat
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import aiohttp
import feedparser
from yarl import URL

from notifier.errors import FetchError
from notifier.model import Entry, isoformat_z

DEFAULT_USER_AGENT = "tariff-notifier/0.1 (+https://github.com/tariff-notifier)"
_HTTP_SCHEMES = frozenset({"http", "https"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
# Only encodings we decode ourselves, so the decompressed size is capped (see _Inflater).
_ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One HTTP exchange. ``status`` is 304 (``body`` None) or the 2xx status with a body."""

    status: int
    body: bytes | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None  # sha256 hex of the decoded body; None on 304
    final_url: str
    content_type: str | None


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Entries in feed order, and a warning when the feed was parsed despite defects.

    ``warning`` is set for a not-well-formed feed that still yielded entries (feedparser's
    ``bozo``) and when entries past ``max_entries`` were dropped: log it, do not fail.
    """

    entries: tuple[Entry, ...]
    warning: str | None = None


# ---------------------------------------------------------------------------------------
# Fetch


async def fetch_feed(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    timeout_s: float = 30,
    max_bytes: int = 10 * 2**20,
    max_redirects: int = 5,
    user_agent: str = DEFAULT_USER_AGENT,
) -> FetchResult:
    """GET a feed conditionally, within one deadline and one size cap.

    ``timeout_s`` bounds the whole exchange (connect, redirects, headers, body), so a
    server trickling a byte a second cannot hold a poll open. ``max_bytes`` caps the bytes
    received and, separately, the decoded body. Redirects are followed by hand, to http(s)
    only. Every failure is a ``FetchError`` with a one-line reason that does not repeat the
    feed URL (it may carry a token): the caller knows which feed it polled. A 304 is
    returned as such even when no validator was sent.
    """
    start = _http_url(url, what="feed URL")
    headers = {"User-Agent": user_agent, "Accept": _ACCEPT, "Accept-Encoding": _ACCEPT_ENCODING}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(
                session, start, headers, max_bytes=max_bytes, max_redirects=max_redirects
            )
    except TimeoutError:  # also aiohttp's own socket timeouts (ServerTimeoutError)
        raise FetchError(f"no complete answer within {timeout_s:g} s") from None
    except aiohttp.ClientResponseError as exc:  # a session made with raise_for_status=True
        raise FetchError(f"HTTP {exc.status} {_one_line(exc.message)}") from None
    except aiohttp.ClientConnectorDNSError as exc:
        raise FetchError(f"DNS lookup failed for {exc.host}") from None
    except aiohttp.ClientConnectorError as exc:
        raise FetchError(
            f"cannot connect to {exc.host}:{exc.port}: {_one_line(exc.strerror or exc)}"
        ) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"{type(exc).__name__}: {_one_line(exc)}") from None
    except zlib.error as exc:
        raise FetchError(f"corrupt compressed body: {_one_line(exc)}") from None
    except ValueError as exc:  # a URL or host name aiohttp/yarl/IDNA cannot encode
        raise FetchError(f"{type(exc).__name__}: {_one_line(exc)}") from None


async def _exchange(
    session: aiohttp.ClientSession,
    url: URL,
    headers: Mapping[str, str],
    *,
    max_bytes: int,
    max_redirects: int,
) -> FetchResult:
    visited = {url}
    for _hop in range(max_redirects + 1):
        async with session.get(
            url, headers=headers, allow_redirects=False, auto_decompress=False
        ) as resp:
            if resp.status in _REDIRECT_STATUSES:
                url = _redirect_target(resp, url)
                if url in visited:
                    raise FetchError("redirect loop")
                visited.add(url)
                continue
            etag_out = resp.headers.get("ETag")
            modified_out = resp.headers.get("Last-Modified")
            content_type = resp.headers.get("Content-Type")
            if resp.status == 304:
                # RFC 9110 §15.4.5: a 304 may omit the validators; the sent ones still hold.
                return FetchResult(
                    status=304,
                    body=None,
                    etag=etag_out or headers.get("If-None-Match"),
                    last_modified=modified_out or headers.get("If-Modified-Since"),
                    body_hash=None,
                    final_url=str(url),
                    content_type=content_type,
                )
            if not 200 <= resp.status < 300:
                raise FetchError(f"HTTP {resp.status} {_one_line(resp.reason or '')}".rstrip())
            body = await _read_body(resp, max_bytes=max_bytes)
            return FetchResult(
                status=resp.status,
                body=body,
                etag=etag_out,
                last_modified=modified_out,
                body_hash=hashlib.sha256(body).hexdigest(),
                final_url=str(url),
                content_type=content_type,
            )
    raise FetchError(f"more than {max_redirects} redirects")


def _http_url(raw: str, *, what: str) -> URL:
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError) as exc:
        raise FetchError(f"{what} is not a valid URL: {_one_line(exc)}") from None
    scheme = (url.scheme or "").lower()
    if scheme not in _HTTP_SCHEMES:
        raise FetchError(
            f"{what} scheme {scheme + ':' if scheme else '(none)'} refused: http(s) only"
        )
    if not url.host:
        raise FetchError(f"{what} has no host")
    return url


def _redirect_target(resp: aiohttp.ClientResponse, current: URL) -> URL:
    location = resp.headers.get("Location")
    if not location:
        raise FetchError(f"HTTP {resp.status} redirect without a Location")
    try:
        target = current.join(URL(location.strip()))
    except (ValueError, TypeError):
        raise FetchError(f"HTTP {resp.status} redirect to an invalid Location") from None
    return _http_url(str(target), what="redirect target")


async def _read_body(resp: aiohttp.ClientResponse, *, max_bytes: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise FetchError(f"Content-Length {declared} exceeds the {max_bytes}-byte cap")
    inflater = _Inflater.for_encoding(resp.headers.get("Content-Encoding"))
    parts: list[bytes] = []
    received = 0
    size = 0
    async for chunk in resp.content.iter_any():
        received += len(chunk)
        if received > max_bytes:
            raise FetchError(f"body exceeds the {max_bytes}-byte cap")
        data = inflater.feed(chunk, budget=max_bytes - size) if inflater else chunk
        size += len(data)
        if size > max_bytes:
            raise FetchError(f"decompressed body exceeds the {max_bytes}-byte cap")
        parts.append(data)
    return b"".join(parts)


class _Inflater:
    """gzip/deflate decoding that never produces more than the remaining budget.

    We ask aiohttp not to decompress (``auto_decompress=False``): older aiohttp versions
    inflate each network chunk in full, so a few KB of gzip could become gigabytes in
    memory before any size check ran. ``zlib``'s ``max_length`` stops output at the cap.
    """

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._obj = zlib.decompressobj(wbits)
        self._head: bytes | None = b"" if wbits == zlib.MAX_WBITS else None  # deflate sniffing

    @classmethod
    def for_encoding(cls, header: str | None) -> _Inflater | None:
        encoding = (header or "").strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip"):
            return cls(16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return cls(zlib.MAX_WBITS)  # RFC 9110 §8.4.1.2: zlib-wrapped; raw tolerated below
        raise FetchError(f"unsupported Content-Encoding {_one_line(encoding)[:40]}")

    def feed(self, data: bytes, *, budget: int) -> bytes:
        """Decode ``data``; the result exceeds ``budget`` only by one byte, to signal it."""
        if self._head is not None:
            # RFC 1950 §2.2 header check; servers (IIS) also send raw deflate as "deflate".
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            self._head = None
            if data[0] & 0x0F != 8 or (data[0] << 8 | data[1]) % 31:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        out = bytearray()
        while data:
            # max_length stops inflation one byte past the budget: a bomb never expands.
            out += self._obj.decompress(data, budget - len(out) + 1)
            if len(out) > budget:
                break
            data = self._obj.unused_data if self._obj.eof else b""
            if data[:2] != b"\x1f\x8b" or self._wbits == zlib.MAX_WBITS:
                break  # trailing bytes that are not another gzip member are ignored
            self._obj = zlib.decompressobj(self._wbits)  # multi-member gzip (RFC 1952 §2.2)
        return bytes(out)


# ---------------------------------------------------------------------------------------
# Parse (pure: runs in a worker process, so it takes and returns picklable values)

_TITLE_MAX_CHARS = 500
_KEY_MAX_CHARS = 512
_LINK_MAX_CHARS = 2048


def parse_feed(
    body: bytes,
    *,
    content_type: str | None = None,
    base_url: str | None = None,
    summary_max_chars: int = 2000,
    max_entries: int = 1000,
) -> ParseResult:
    """Parse RSS 0.9x/1.0/2.0 or Atom bytes into plain-text entries, in feed order.

    Titles and summaries become plain text: tags stripped (``script``/``style`` bodies
    dropped), entities decoded, whitespace collapsed. Nothing from a feed is ever rendered
    as HTML, so feedparser's sanitizer (60% of its time) is off; templates escape the text.
    ``base_url`` (the final fetch URL) resolves relative links; it is not given to
    feedparser, which would also resolve relative guids and so change entry keys when a
    feed moves. A defective feed with entries parses with a warning; with none it raises.
    """
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
        raise FetchError(f"feed parser crashed: {type(exc).__name__}: {_one_line(exc)}") from None
    raw_entries: list[Any] = parsed.get("entries") or []
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not raw_entries:
        if problem is not None:
            raise FetchError(f"not a feed: {_one_line(problem) or type(problem).__name__}")
        if not parsed.get("version"):
            raise FetchError("not a feed: no RSS or Atom root element")
        return ParseResult(entries=())
    warnings = ["DTD entity declarations ignored"] if defused else []
    if problem is not None:
        warnings.append(f"feed is not well-formed: {_one_line(problem)}")
    if len(raw_entries) > max_entries:
        warnings.append(f"{len(raw_entries)} entries, only the first {max_entries} kept")
        raw_entries = raw_entries[:max_entries]
    entries = tuple(
        _to_entry(raw, base_url=base_url, summary_max_chars=summary_max_chars)
        for raw in raw_entries
    )
    return ParseResult(entries=entries, warning="; ".join(warnings) or None)


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
        if parts.scheme.lower() in _HTTP_SCHEMES and parts.hostname:
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


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]


# ---------------------------------------------------------------------------------------
# Diff (pure)


def diff_entries(
    seen: Mapping[str, str], entries: Sequence[Entry]
) -> list[tuple[Literal["new", "updated"], Entry]]:
    """What changed since the store's view: ``seen`` maps entry key -> content hash.

    An unseen key is "new"; a seen key with a different hash is "updated"; the same hash
    is nothing. Feed order is kept. When one feed repeats a key, the first entry wins
    (feeds list newest first), so a duplicate cannot flip-flop an entry every poll.
    """
    changes: list[tuple[Literal["new", "updated"], Entry]] = []
    taken: set[str] = set()
    for entry in entries:
        if entry.key in taken:
            continue
        taken.add(entry.key)
        previous = seen.get(entry.key)
        if previous is None:
            changes.append(("new", entry))
        elif previous != entry.content_hash:
            changes.append(("updated", entry))
    return changes
