"""Delivery channels: SMTP email, a local Maildir, and signed webhooks.

Each implements :class:`~notifier.channels.base.Channel`; the outbox picks one per
delivery and acts on the :class:`~notifier.model.SendResult` it returns.
"""

from notifier.channels.base import Channel
from notifier.channels.email import SmtpChannel, build_mime
from notifier.channels.maildir import MaildirChannel
from notifier.channels.webhook import WebhookChannel

__all__ = ["Channel", "MaildirChannel", "SmtpChannel", "WebhookChannel", "build_mime"]
