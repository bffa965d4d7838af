"""The channel registry: one entry per channel kind, keyed by the config value.

``email`` (SMTP when ``[smtp]`` is configured, else a Maildir under the state folder),
``webhook`` (``format = "standard"``: Standard Webhooks signed JSON) and ``slack``
(``format = "slack"``: ``{"text": …}``, unsigned). A delivery's channel is chosen once,
by :func:`channel_key`, from its ``channel`` column and its subscriber's ``format``.
Adding a kind takes its module, its template and one line in :data:`CHANNELS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from notifier.config import Config
from notifier.delivery.channels.base import Channel
from notifier.delivery.channels.compose import AnyEmail
from notifier.delivery.channels.email import SmtpChannel
from notifier.delivery.channels.http import HttpPoster
from notifier.delivery.channels.maildir import MaildirChannel
from notifier.delivery.channels.mime import DEFAULT_SENDER
from notifier.delivery.channels.slack import SlackChannel
from notifier.delivery.channels.webhook import WebhookChannel


@dataclass(frozen=True, slots=True)
class Resources:
    """What channels of one config share: settings and one HTTP connection pool."""

    config: Config
    timeout_s: float
    http: HttpPoster


def _email(res: Resources) -> Channel[AnyEmail]:
    smtp = res.config.model.smtp
    if smtp is None:
        return MaildirChannel(res.config.state_dir / "maildir", sender=DEFAULT_SENDER)
    return SmtpChannel(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        username=smtp.username,
        password=smtp.password,
        sender=smtp.sender,
        timeout_s=res.timeout_s,
        pool_size=smtp.pool_size,
    )


#: Channel kind -> how to build it for a config.
CHANNELS: dict[str, Callable[[Resources], Channel[Any]]] = {
    "email": _email,
    "webhook": lambda res: WebhookChannel(poster=res.http),
    "slack": lambda res: SlackChannel(poster=res.http),
}

#: A webhook subscriber's ``format`` -> its channel kind.
WEBHOOK_FORMATS = {"standard": "webhook", "slack": "slack"}


def channel_key(channel: str, *, format: str) -> str:
    """The registry key of a delivery: its ``channel`` column (``email``/``webhook``)
    with the subscriber's ``format`` (``standard``/``slack``) for webhooks.

    ``KeyError`` for a format no channel serves (the config schema rejects it first).
    """
    if channel == "webhook":
        return WEBHOOK_FORMATS[format]
    return channel


class Channels(Mapping[str, Channel[Any]]):
    """The channels of one config, by kind; opened and closed together."""

    def __init__(self, channels: Mapping[str, Channel[Any]]) -> None:
        self._channels = dict(channels)

    def __getitem__(self, key: str) -> Channel[Any]:
        return self._channels[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def email(self) -> Channel[AnyEmail]:
        """The email channel (digests are always email)."""
        channel: Channel[AnyEmail] = self._channels["email"]
        return channel

    async def open(self) -> None:
        for channel in self._channels.values():
            await channel.open()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


def build_channels(config: Config) -> Channels:
    """Every registered channel for ``config``; webhook and Slack share one HTTP pool."""
    timeout_s = config.model.delivery.timeout.total_seconds()
    res = Resources(config=config, timeout_s=timeout_s, http=HttpPoster(timeout_s=timeout_s))
    return Channels({kind: build(res) for kind, build in CHANNELS.items()})
