"""Webhooks (``format = "standard"``): the event's JSON, signed per Standard Webhooks.

The body is the contract's ``{"type", "timestamp", "data"}``, serialised once per event
by the renderer. Each attempt is signed with a fresh ``webhook-timestamp`` (receivers
reject timestamps more than 5 minutes off) and the same ``webhook-id`` (the delivery id),
which receivers use to deduplicate. A subscriber without a secret gets the same body
unsigned. Posting, and what the receiver's answers mean, is ``channels.http``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
from standardwebhooks import Webhook

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
        self._signers: dict[str, Webhook] = {}

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
