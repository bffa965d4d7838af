"""Slack incoming webhooks (``format = "slack"``): ``{"text": <mrkdwn>}``, unsigned.

The text comes from ``templates/slack/<family>.txt``. Slack URLs carry their secret in
the path, so the delivery log masks them (``notifier.delivery.masking``). Posting, and
what Slack's answers mean, is ``channels.http`` (shared with the webhook channel).
"""

from __future__ import annotations

from notifier.core.model import SendResult, WebhookMessage
from notifier.delivery.channels.base import Outgoing
from notifier.delivery.channels.http import HttpPoster


class SlackChannel:
    """POSTs Slack messages over a (shared) :class:`HttpPoster`."""

    def __init__(self, *, poster: HttpPoster | None = None, timeout_s: float = 15.0) -> None:
        self._poster = poster or HttpPoster(timeout_s=timeout_s)

    async def open(self) -> None:
        await self._poster.open()

    async def close(self) -> None:
        await self._poster.close()

    def message(self, outgoing: Outgoing) -> WebhookMessage:
        return WebhookMessage(
            webhook_id=outgoing.delivery.id,
            url=outgoing.delivery.target,
            body=outgoing.renderer.slack_body(outgoing.event),
            secret=None,
        )

    async def send(self, message: WebhookMessage) -> SendResult:
        # Unsigned even when the config names a secret: Slack would not check it.
        return await self._poster.post(message.url, message.body, self._poster.base_headers)
