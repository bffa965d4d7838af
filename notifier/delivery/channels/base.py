"""The one seam every delivery channel implements.

A channel turns one rendered message into one delivery attempt and says what happened as
a :class:`~notifier.core.model.SendResult`: ``sent``, ``retry`` (a later attempt may succeed;
``retry_after_s`` when the peer said when) or ``failed`` (final). Delivery failures are
results, never exceptions, so one bad endpoint cannot break the outbox loop; and a
result's ``detail`` never carries a password or webhook secret, because it is stored in
the delivery log and shown to users.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from notifier.core.model import EmailMessage, SendResult, WebhookMessage

M = TypeVar("M", bound=EmailMessage | WebhookMessage, contravariant=True)

#: Longest ``detail`` a channel stores: enough for a server's reply, bounded for the log.
DETAIL_MAX_CHARS = 300


class Channel(Protocol[M]):
    """Sends messages of one kind. ``open``/``close`` bracket its lifetime."""

    async def open(self) -> None:
        """Acquire long-lived resources (pools, sessions). Calling it twice is harmless."""

    async def close(self) -> None:
        """Release them; in-flight sends may still finish."""

    async def send(self, message: M) -> SendResult:
        """One attempt. Never raises for a delivery failure: the result says what happened."""


def clip_detail(text: str) -> str:
    """One line of at most :data:`DETAIL_MAX_CHARS` printable characters.

    Peers answer with arbitrary text; the delivery log should stay one readable line.
    """
    line = " ".join(text.split())
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    if len(line) > DETAIL_MAX_CHARS:
        line = line[: DETAIL_MAX_CHARS - 1] + "…"
    return line
