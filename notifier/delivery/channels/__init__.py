"""Delivery channels: SMTP email, a local Maildir, signed webhooks and Slack.

Each implements :class:`~notifier.delivery.channels.base.Channel` (message, send, and the
mapping of answers to a :class:`~notifier.core.model.SendResult`); ``registry`` maps the
config value to a channel, and the outbox acts on the result.
"""

from notifier.delivery.channels.base import Channel, Outgoing
from notifier.delivery.channels.email import SmtpChannel, build_mime
from notifier.delivery.channels.maildir import MaildirChannel
from notifier.delivery.channels.slack import SlackChannel
from notifier.delivery.channels.webhook import WebhookChannel

__all__ = [
    "Channel",
    "MaildirChannel",
    "Outgoing",
    "SlackChannel",
    "SmtpChannel",
    "WebhookChannel",
    "build_mime",
]
