"""The one seam every delivery channel implements.

A channel is one module that owns three things: building its message from a rendered
alert (``message``), making one attempt (``send``), and mapping the peer's answer to a
:class:`~notifier.core.model.SendResult` (``sent``; ``retry``, with ``retry_after_s`` when
the peer said when; ``failed``, final; ``gone``, final and the endpoint is gone). Delivery
failures are results, never exceptions, so one bad endpoint cannot break the outbox
loop; a result's ``detail`` never carries a password or webhook secret, because it is
stored in the delivery log and shown to users; and ``sha256`` is the hash of the exact
bytes sent, the ledger's record of which version of an alert reached whom.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, TypeVar

from notifier.core.model import Delivery, Event, SendResult, Subscriber
from notifier.delivery.render import Renderer

M = TypeVar("M")

#: Longest ``detail`` a channel stores: enough for a server's reply, bounded for the log.
DETAIL_MAX_CHARS = 300


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One delivery with what a channel needs to build its message for it."""

    delivery: Delivery
    event: Event
    subscriber: Subscriber
    renderer: Renderer
    unsubscribe_url: str | None = None


class Channel(Protocol[M]):
    """Sends messages of one kind. ``open``/``close`` bracket its lifetime."""

    async def open(self) -> None:
        """Acquire long-lived resources (pools, sessions). Calling it twice is harmless."""

    async def close(self) -> None:
        """Release them; in-flight sends may still finish. Calling it twice is harmless."""

    def message(self, outgoing: Outgoing) -> M:
        """The message for one delivery (may raise for a template error: a bug, not an
        answer of the peer; the outbox records it as a retry)."""

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


def sha256_hex(data: bytes) -> str:
    """The ledger hash of bytes put on the wire (or written to a mailbox)."""
    return hashlib.sha256(data).hexdigest()
