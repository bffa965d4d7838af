"""Webhooks (``format = "standard"``): the event's JSON, signed per Standard Webhooks.

The body is the contract's ``{"type", "timestamp", "data"}``, serialised once per event
by the renderer. Each attempt is signed with a fresh ``webhook-timestamp`` (receivers
reject timestamps more than 5 minutes off) and the same ``webhook-id`` (the delivery id),
which receivers use to deduplicate. A subscriber without a secret gets the same body
unsigned. Posting, and what the receiver's answers mean, is ``channels.http``.

The signature is computed here rather than by ``standardwebhooks.Webhook.sign``: the
same HMAC-SHA256 over ``id.timestamp.body`` (a test checks it against the library), but
over the body's bytes joined once, with each secret decoded once, instead of a decode,
a str join and a re-encode of the body per request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable

import aiohttp

from notifier.core.model import SendResult, WebhookMessage
from notifier.delivery.channels.base import Outgoing
from notifier.delivery.channels.http import DEFAULT_USER_AGENT, HttpPoster

_MAX_CACHED_SECRETS = 1024


class WebhookChannel:
    """Signs and POSTs each webhook (over a shared :class:`HttpPoster`)."""

    def __init__(
        self,
        *,
        timeout_s: float = 15.0,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        clock: Callable[[], float] = time.time,
        poster: HttpPoster | None = None,
    ) -> None:
        """``clock`` gives the signing time in epoch seconds (a parameter for tests);
        ``poster`` shares a session with other channels (then ``timeout_s``, ``session``
        and ``user_agent`` are the poster's)."""
        self._clock = clock
        self._poster = poster or HttpPoster(
            timeout_s=timeout_s, session=session, user_agent=user_agent
        )
        self._keys: dict[str, bytes] = {}

    async def open(self) -> None:
        await self._poster.open()

    async def close(self) -> None:
        await self._poster.close()

    def message(self, outgoing: Outgoing) -> WebhookMessage:
        return WebhookMessage(
            webhook_id=outgoing.delivery.id,
            url=outgoing.delivery.target,
            body=outgoing.renderer.webhook_body(outgoing.event),
            secret=outgoing.subscriber.secret,
        )

    async def send(self, message: WebhookMessage) -> SendResult:
        headers = dict(self._poster.base_headers)
        if message.secret is not None:
            refused = self._sign(message, headers)
            if refused is not None:
                return refused
        return await self._poster.post(message.url, message.body, headers)

    def _sign(self, message: WebhookMessage, headers: dict[str, str]) -> SendResult | None:
        """Add the Standard Webhooks headers; a result only when signing is impossible."""
        assert message.secret is not None
        key = self._key(message.secret)
        if key is None:
            # Never echo the secret: the detail lands in the delivery log.
            return SendResult("failed", "invalid webhook secret (expected whsec_ + base64)")
        # A whole-second UTC instant, fresh per attempt: the header and the signed value
        # must be the same number (receivers reject timestamps 5 minutes off).
        seconds = int(self._clock())
        headers["webhook-id"] = message.webhook_id
        headers["webhook-timestamp"] = str(seconds)
        headers["webhook-signature"] = sign(key, message.webhook_id, seconds, message.body)
        return None

    def _key(self, secret: str) -> bytes | None:
        """The HMAC key of a ``whsec_`` secret (decoded once per secret), or None."""
        key = self._keys.get(secret)
        if key is None:
            try:
                key = secret_key(secret)
            except ValueError:
                return None
            if len(self._keys) >= _MAX_CACHED_SECRETS:
                self._keys.clear()
            self._keys[secret] = key
        return key


_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret (``whsec_`` + base64), as
    ``standardwebhooks.Webhook`` reads it; ``ValueError`` when it is not one."""
    encoded = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else secret
    try:
        # As the library does: padding added, since b64decode ignores what is extra.
        key = base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if not key:
        raise ValueError("empty secret")
    return key


def sign(key: bytes, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (Standard Webhooks, the same
    value as ``Webhook.sign``), over the body's bytes as they are sent."""
    signed = b"".join((msg_id.encode(), b".", str(timestamp_s).encode(), b".", body))
    digest = hmac.digest(key, signed, "sha256")  # the one-shot C path (no HMAC object)
    return "v1," + base64.b64encode(digest).decode("ascii")
