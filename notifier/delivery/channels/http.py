"""HTTP POST for the webhook-shaped channels (``webhook``, ``slack``), and what answers mean.

How answers map to results (the contract's "Webhook deliveries"):

- 2xx: ``sent``.
- 3xx: ``retry``; redirects are never followed (a signed payload must not be replayed
  to wherever a Location points), but a redirect is often a passing misconfiguration
  (a moved endpoint, a maintenance page), so it is retried on the backoff schedule and
  ends ``dead`` like any failure that persists (issue 6; the contract: "a 3xx is a
  failure").
- 410 Gone: ``gone``; the outbox stops delivering to that endpoint until its config
  entry changes.
- 5xx, 408, 429: ``retry``, with ``retry_after_s`` from ``Retry-After`` (capped at a day).
- Other 4xx: ``failed``.
- A timeout or a refused or dropped connection: ``retry``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from notifier.core.model import SendResult
from notifier.delivery.channels.base import clip_detail, sha256_hex

log = logging.getLogger(__name__)

#: Most of a response body we read (and discard): a hostile receiver cannot make us
#: buffer more. Reading it lets a keep-alive connection be reused.
RESPONSE_READ_MAX_BYTES = 64 * 1024
#: Longest ``Retry-After`` we honour; the backoff schedule takes over beyond it.
RETRY_AFTER_MAX_S = 86_400.0
DEFAULT_USER_AGENT = "tariff-notifier/0.1"
_SNIPPET_BYTES = 200  # of a failure's response body, for the delivery log
_RETRY_STATUSES = frozenset({408, 429})
_MAX_HASHED_BODIES = 64


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or ``None``.

    Either delay-seconds or an HTTP-date; clamped to ``[0, RETRY_AFTER_MAX_S]``.
    Garbage is ``None`` (the backoff schedule applies).
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # "-0000" and obsolete forms: HTTP-dates are GMT
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - now).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def is_retry_status(status: int) -> bool:
    """408, 429 and 5xx: the receiver may take it later (and may say when)."""
    return status in _RETRY_STATUSES or 500 <= status <= 599


def classify_status(
    status: int, *, retry_after_s: float | None = None, snippet: str = "", location: str = ""
) -> SendResult:
    """The result of an HTTP answer (pure; see the module docstring).

    ``snippet`` is the start of the response body and ``location`` its ``Location``
    header, both only for the detail.
    """
    said = f"HTTP {status}" + (f" to {location}" if location else "")
    said += f": {snippet}" if snippet else ""
    if 200 <= status <= 299:
        return SendResult("sent", clip_detail(f"HTTP {status}"))
    if status == 410:
        return SendResult("gone", clip_detail(said))
    if 300 <= status <= 399:
        return SendResult("retry", clip_detail(f"redirect not followed: {said}"))
    if is_retry_status(status):
        return SendResult("retry", clip_detail(said), retry_after_s=retry_after_s)
    return SendResult("failed", clip_detail(said))


class HttpPoster:
    """POSTs bodies over one shared aiohttp session, with a total deadline per request.

    Shared by the webhook and Slack channels (one connection pool for both).
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self.timeout_s = timeout_s
        # The deadline of each request, given to aiohttp per request: its own timer costs
        # ~30 µs less per request than an ``asyncio.timeout`` around it (measured, 6,000
        # POSTs in alternating rounds), which a fan-out pays once per webhook. It covers
        # connecting, sending and reading the answer, as the total deadline should.
        # ``ceil_threshold``: the deadline as given (aiohttp rounds longer ones up to the
        # next whole second by default).
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, ceil_threshold=RETRY_AFTER_MAX_S)
        self._session = session
        self._own_session = session is None
        self.base_headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        self._hashes: dict[bytes, str] = {}

    async def open(self) -> None:
        if self._session is None or (self._own_session and self._session.closed):
            # limit=0: the outbox bounds concurrency; a second limit here would only
            # queue requests behind the deadline.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # per request, in post()
                auto_decompress=False,  # we discard bodies; do not inflate them
                cookie_jar=aiohttp.DummyCookieJar(),  # a receiver's cookies are not kept
                trust_env=False,
            )
            self._own_session = True

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """One POST; the result carries the SHA-256 of ``body``. Never raises."""
        digest = self._sha256(body)
        if self._session is None:
            await self.open()
        assert self._session is not None
        # One coroutine around the request (no helper to resume at each of its steps).
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as response:
                status = response.status
                if 200 <= status <= 299:
                    await _drain(response, RESPONSE_READ_MAX_BYTES)
                    return SendResult("sent", f"HTTP {status}", sha256=digest)
                result = await _answer(response)
        except TimeoutError:
            result = SendResult("retry", f"no answer within {self.timeout_s:g}s")
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
            result = SendResult("failed", "invalid webhook URL (http or https only)")
        except aiohttp.ClientConnectorError as exc:
            result = SendResult("retry", clip_detail(f"connection failed: {exc}"))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            result = SendResult("retry", clip_detail(f"connection dropped: {exc}"))
        except (aiohttp.ClientError, OSError) as exc:
            result = SendResult("retry", clip_detail(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a bug must not stop the outbox; keep the message
            log.warning("webhook send failed unexpectedly", exc_info=True)
            result = SendResult("retry", clip_detail(f"unexpected {type(exc).__name__}"))
        return dataclasses.replace(result, sha256=digest)

    def _sha256(self, body: bytes) -> str:
        """``sha256_hex(body)``, once per body: a fan-out sends one body to every
        subscriber (the bytes object caches its hash, so the lookup is cheap)."""
        digest = self._hashes.get(body)
        if digest is None:
            if len(self._hashes) >= _MAX_HASHED_BODIES:
                self._hashes.clear()
            digest = self._hashes[body] = sha256_hex(body)
        return digest


async def _answer(response: aiohttp.ClientResponse) -> SendResult:
    """The result of a non-2xx answer (its body's start and headers in the detail)."""
    status = response.status
    snippet = await response.content.read(_SNIPPET_BYTES)
    await _drain(response, RESPONSE_READ_MAX_BYTES - len(snippet))
    retry_after_s = None
    if is_retry_status(status):
        retry_after_s = parse_retry_after(
            response.headers.get("Retry-After"), now=datetime.now(UTC)
        )
    location = response.headers.get("Location", "") if 300 <= status <= 399 else ""
    text = snippet.decode("utf-8", "replace")
    return classify_status(status, retry_after_s=retry_after_s, snippet=text, location=location)


async def _drain(response: aiohttp.ClientResponse, limit_bytes: int) -> None:
    """Read and drop up to ``limit_bytes``; past that, close instead of reusing.

    A fully read body lets aiohttp return the connection to the pool; a longer one is
    not worth reading, so the connection is closed.
    """
    remaining = limit_bytes
    while remaining > 0:
        chunk = await response.content.read(min(remaining, 16_384))
        if not chunk:
            return
        remaining -= len(chunk)
    if not response.content.at_eof():
        response.close()
