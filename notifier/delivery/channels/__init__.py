"""Delivery channels: SMTP email, a local Maildir, and signed webhooks.

Each implements :class:`~notifier.delivery.channels.base.Channel`; the outbox picks one per
delivery and acts on the :class:`~notifier.core.model.SendResult` it returns.
"""

from notifier.delivery.channels.base import Channel
from notifier.delivery.channels.email import SmtpChannel, build_mime
from notifier.delivery.channels.maildir import MaildirChannel
from notifier.delivery.channels.webhook import WebhookChannel

__all__ = ["Channel", "MaildirChannel", "SmtpChannel", "WebhookChannel", "build_mime"]
