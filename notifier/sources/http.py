"""HTTP for every source kind: a conditional GET under one deadline and one size cap.

feedparser (and every other parser) never sees a URL. ``feedparser.parse(url)`` has no
timeout, no size cap, unbounded gzip, follows redirects to ``file:``/``ftp:`` and may read
a string as a local path (PITFALLS.md), so we fetch with aiohttp under our own limits and
hand the parsers bytes. The caller compares ``body_hash`` with the last one and skips
parsing when it is unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from notifier.errors import FetchError
from notifier.sources.base import FetchContext, Fetched, ParseResult, Validators

DEFAULT_USER_AGENT = "tariff-notifier/0.1 (+https://github.com/tariff-notifier)"
HTTP_SCHEMES = frozenset({"http", "https"})
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
        raise FetchError(f"HTTP {exc.status} {one_line(exc.message)}") from None
    except aiohttp.ClientConnectorDNSError as exc:
        raise FetchError(f"DNS lookup failed for {exc.host}") from None
    except aiohttp.ClientConnectorError as exc:
        raise FetchError(
            f"cannot connect to {exc.host}:{exc.port}: {one_line(exc.strerror or exc)}"
        ) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"{type(exc).__name__}: {one_line(exc)}") from None
    except zlib.error as exc:
        raise FetchError(f"corrupt compressed body: {one_line(exc)}") from None
    except ValueError as exc:  # a URL or host name aiohttp/yarl/IDNA cannot encode
        raise FetchError(f"{type(exc).__name__}: {one_line(exc)}") from None


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
                raise FetchError(f"HTTP {resp.status} {one_line(resp.reason or '')}".rstrip())
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
        raise FetchError(f"{what} is not a valid URL: {one_line(exc)}") from None
    scheme = (url.scheme or "").lower()
    if scheme not in HTTP_SCHEMES:
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
        raise FetchError(f"unsupported Content-Encoding {one_line(encoding)[:40]}")

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


def one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]


async def parse_fetched(
    fetched: FetchResult,
    validators: Validators,
    ctx: FetchContext,
    parser: Callable[..., ParseResult],
    **options: Any,
) -> Fetched:
    """The common second half of a poll: skip parsing when the body is the last one
    (a 304, or the same hash), else parse it off the loop with ``parser``."""
    if fetched.status == 304 or (
        validators.body_hash is not None and fetched.body_hash == validators.body_hash
    ):
        return Fetched(
            unchanged=True,
            etag=fetched.etag or validators.etag,
            last_modified=fetched.last_modified or validators.last_modified,
            body_hash=validators.body_hash if fetched.status == 304 else fetched.body_hash,
        )
    assert fetched.body is not None
    parsed: ParseResult = await ctx.parse(
        parser,
        fetched.body,
        content_type=fetched.content_type,
        base_url=fetched.final_url,
        **options,
    )
    return Fetched(
        unchanged=False,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        body_hash=fetched.body_hash,
        entries=parsed.entries,
        warning=parsed.warning,
        title=parsed.title,
    )
