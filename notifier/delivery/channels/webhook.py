"""Webhooks: an HTTP POST of JSON, signed per Standard Webhooks when there is a secret.

How answers map to results (the contract's "Webhook deliveries"):

- 2xx: ``sent``.
- 3xx: ``retry``; redirects are never followed (a signed payload must not be replayed
  to wherever a Location points), but a redirect is often a passing misconfiguration
  (a moved endpoint, a maintenance page), so it is retried on the backoff schedule and
  ends ``dead`` like any failure that persists (issue 6; the contract: "a 3xx is a
  failure").
- 410 Gone: ``failed`` with a detail starting ``gone:``; the outbox stops delivering to
  that endpoint.
- 5xx, 408, 429: ``retry``, with ``retry_after_s`` from ``Retry-After`` (capped at a day).
- Other 4xx: ``failed``.
- A timeout or a refused or dropped connection: ``retry``.

Each attempt is signed with a fresh ``webhook-timestamp`` (receivers reject timestamps
more than 5 minutes off) and the same ``webhook-id``, which receivers use to deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from standardwebhooks import Webhook

from notifier.core.model import SendResult, WebhookMessage
from notifier.delivery.channels.base import clip_detail

log = logging.getLogger(__name__)

#: Most of a response body we read (and discard): a hostile receiver cannot make us
#: buffer more. Reading it lets a keep-alive connection be reused.
RESPONSE_READ_MAX_BYTES = 64 * 1024
#: Longest ``Retry-After`` we honour; the backoff schedule takes over beyond it.
RETRY_AFTER_MAX_S = 86_400.0
_SNIPPET_BYTES = 200  # of a failure's response body, for the delivery log
_RETRY_STATUSES = frozenset({408, 429})
_MAX_CACHED_SECRETS = 1024


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
        return SendResult("failed", clip_detail(f"gone: {said}"))
    if 300 <= status <= 399:
        return SendResult("retry", clip_detail(f"redirect not followed: {said}"))
    if status in _RETRY_STATUSES or 500 <= status <= 599:
        return SendResult("retry", clip_detail(said), retry_after_s=retry_after_s)
    return SendResult("failed", clip_detail(said))


class WebhookChannel:
    """POSTs each webhook over one shared aiohttp session."""

    def __init__(
        self,
        *,
        timeout_s: float,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = "tariff-notifier/0.1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` gives the signing time in epoch seconds (a parameter for tests)."""
        self._timeout_s = timeout_s
        self._clock = clock
        self._session = session
        self._own_session = session is None
        self._base_headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        self._signers: dict[str, Webhook] = {}

    async def open(self) -> None:
        if self._session is None or (self._own_session and self._session.closed):
            # limit=0: the outbox bounds concurrency; a second limit here would only
            # queue requests behind the deadline.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout in send()
                auto_decompress=False,  # we discard bodies; do not inflate them
                trust_env=False,
            )
            self._own_session = True

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: WebhookMessage) -> SendResult:
        headers = dict(self._base_headers)
        if message.secret is not None:
            signed = self._sign(message, headers)
            if signed is not None:
                return signed
        if self._session is None:
            await self.open()
        assert self._session is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._post(self._session, message, headers)
        except TimeoutError:
            return SendResult("retry", f"no answer within {self._timeout_s:g}s")
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
            return SendResult("failed", "invalid webhook URL (http or https only)")
        except aiohttp.ClientConnectorError as exc:
            return SendResult("retry", clip_detail(f"connection failed: {exc}"))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            return SendResult("retry", clip_detail(f"connection dropped: {exc}"))
        except (aiohttp.ClientError, OSError) as exc:
            return SendResult("retry", clip_detail(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a bug must not stop the outbox; keep the message
            log.warning("webhook send failed unexpectedly", exc_info=True)
            return SendResult("retry", clip_detail(f"unexpected {type(exc).__name__}"))

    def _sign(self, message: WebhookMessage, headers: dict[str, str]) -> SendResult | None:
        """Add the Standard Webhooks headers; a result only when signing is impossible."""
        assert message.secret is not None
        signer = self._signer(message.secret)
        if signer is None:
            # Never echo the secret: the detail lands in the delivery log.
            return SendResult("failed", "invalid webhook secret (expected whsec_ + base64)")
        try:
            body = message.body.decode("utf-8")
        except UnicodeDecodeError:
            return SendResult("failed", "webhook body is not UTF-8")
        # A whole-second UTC instant: the header and the signed value must be the same
        # number, and sign() reads a naive datetime as UTC (PITFALLS: standardwebhooks).
        seconds = int(self._clock())
        moment = datetime.fromtimestamp(seconds, UTC)
        headers["webhook-id"] = message.webhook_id
        headers["webhook-timestamp"] = str(seconds)
        headers["webhook-signature"] = signer.sign(message.webhook_id, moment, body)
        return None

    def _signer(self, secret: str) -> Webhook | None:
        signer = self._signers.get(secret)
        if signer is None:
            try:
                signer = Webhook(secret)
            except Exception:  # binascii.Error, EmptyWebhookSecretError…
                return None
            if len(self._signers) >= _MAX_CACHED_SECRETS:
                self._signers.clear()
            self._signers[secret] = signer
        return signer

    async def _post(
        self, session: aiohttp.ClientSession, message: WebhookMessage, headers: dict[str, str]
    ) -> SendResult:
        async with session.post(
            message.url, data=message.body, headers=headers, allow_redirects=False
        ) as response:
            status = response.status
            snippet = b""
            if not 200 <= status <= 299:
                snippet = await response.content.read(_SNIPPET_BYTES)
            await _drain(response, RESPONSE_READ_MAX_BYTES - len(snippet))
            retry_after_s = None
            if status in _RETRY_STATUSES or 500 <= status <= 599:
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
