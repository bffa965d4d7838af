"""Logging: readable lines by default, JSON lines with ``--log-format json``.

Secrets from the config (SMTP password, webhook secrets) are registered here once loaded
and masked in every record, whatever code path formats them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifier.core.model import Delivery, Event

_SECRETS: set[str] = set()


def register_secrets(*values: str | None) -> None:
    """Mask these values in every log line from now on (ignores short/empty values)."""
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


#: Fields a log call may pass with ``extra=``; JSON lines carry them as keys, so a log
#: pipeline can filter on a source, a delivery or a subscriber without parsing text.
STRUCTURED_FIELDS = ("feed", "source", "delivery_id", "subscriber", "event_type", "event_id")


def source_fields(source_id: str, kind: str) -> dict[str, str]:
    """``extra=`` for a line about a source: ``source`` always, ``feed`` for a ``[[feed]]``
    (a calendar URL is a source but not a feed)."""
    if kind == "calendar-url":
        return {"source": source_id}
    return {"source": source_id, "feed": source_id}


def delivery_fields(delivery: Delivery, event: Event | None = None) -> dict[str, str]:
    """``extra=`` for a line about one delivery: its id, subscriber and event."""
    fields = {
        "delivery_id": delivery.id,
        "subscriber": delivery.subscriber_id,
        "event_id": delivery.event_id,
    }
    if event is not None:
        fields["event_type"] = event.type
    return fields


class _RedactingFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # Local time with its offset: a line read next to another host's log is unambiguous.
        moment = datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STRUCTURED_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


def configure_logging(*, level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter stays at warning unless debugging.
    for noisy in ("aiosqlite", "asyncio", "aiosmtplib", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    # APScheduler warns whenever a poll outlasts its interval ("maximum number of running
    # instances reached"): expected under backoff, and our own logs say what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
