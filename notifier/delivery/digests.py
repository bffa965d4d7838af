"""Digests: the due digest deliveries of one address, sent as one email.

A digest subscriber's email deliveries wait for their ``digest_at`` (``core.planning``);
when it comes they are claimed together, grouped per subscriber, address and instant, and
each group becomes one message whose Message-ID derives from its members' ids (stable
if the same group is retried). Every member is recorded with the group's result.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from notifier.core.model import Delivery, EmailMessage, Event, SendResult, Subscriber, stable_id
from notifier.delivery.channels.mime import message_id_for, unsubscribe_headers
from notifier.delivery.render import Renderer

if TYPE_CHECKING:
    from notifier.delivery.outbox import DrainReport, Outbox

log = logging.getLogger("notifier.delivery.digests")

#: Most digest deliveries claimed in one pass.
DIGEST_CLAIM_LIMIT = 10_000

DigestKey = tuple[str, str, datetime | None]  # (subscriber, address, digest instant)


def group_digests(batch: Iterable[Delivery]) -> dict[DigestKey, list[Delivery]]:
    """Deliveries grouped into one digest per subscriber, address and instant (pure)."""
    groups: dict[DigestKey, list[Delivery]] = defaultdict(list)
    for delivery in batch:
        groups[(delivery.subscriber_id, delivery.target, delivery.digest_at)].append(delivery)
    return dict(groups)


def digest_seed(members: Iterable[Delivery]) -> str:
    """The Message-ID seed of a digest: the same members give the same id."""
    return "dig_" + stable_id(*sorted(d.id for d in members))


def digest_message(
    sub: Subscriber,
    target: str,
    members: Sequence[Delivery],
    events: Mapping[str, Event],
    *,
    renderer: Renderer,
    unsubscribe_url: str | None,
    sender: str,
) -> EmailMessage:
    """The one email of a digest, its events oldest first."""
    assert sub.digest is not None
    ordered = sorted(
        (events[d.event_id] for d in members if d.event_id in events),
        key=lambda e: (e.timestamp, e.id),
    )
    rendered = renderer.render_digest(
        ordered, subscriber_id=sub.id, unsubscribe_url=unsubscribe_url, period=sub.digest
    )
    return EmailMessage(
        message_id=message_id_for(digest_seed(members), sender=sender),
        recipient=target,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers=unsubscribe_headers(unsubscribe_url),
    )


async def drain_digests(outbox: Outbox, report: DrainReport) -> None:
    """Send the digests whose time has come, recording each group in one transaction."""
    batch = await outbox.store.claim_due(
        now=outbox.clock(),
        limit=DIGEST_CLAIM_LIMIT,
        worker=outbox.worker,
        lease=outbox.lease,
        digest=True,
    )
    if not batch:
        return
    events = await outbox.store.events_by_id(d.event_id for d in batch)
    for (subscriber_id, target, _), members in group_digests(batch).items():
        result = await _send_digest(outbox, subscriber_id, target, members, events)
        await outbox.record([(delivery, result) for delivery in members], report)


async def _send_digest(
    outbox: Outbox,
    subscriber_id: str,
    target: str,
    members: Sequence[Delivery],
    events: Mapping[str, Event],
) -> SendResult:
    sub = outbox.subscriber(subscriber_id)
    if sub is None or not sub.digest:
        return SendResult("failed", "subscriber or its digest is no longer in the config")
    try:
        message = digest_message(
            sub,
            target,
            members,
            events,
            renderer=outbox.renderer,
            unsubscribe_url=await outbox.unsubscribe_url(sub, target),
            sender=outbox.sender,
        )
        return await outbox.channels.email.send(message)
    except Exception as exc:  # a template error must not stop the other digests
        log.exception("digest for %s raised", subscriber_id, extra={"subscriber": subscriber_id})
        return SendResult("retry", f"internal error: {type(exc).__name__}: {exc}"[:500])


# --- the operator's commands: `digests --preview` and `digests send` --------------------


async def preview_digests(
    outbox: Outbox, subscriber_id: str
) -> list[tuple[DigestKey, list[Delivery], EmailMessage]]:
    """The digests waiting for one subscriber, each as the email it would be now
    (nothing is claimed or sent). Raises for a template error, like a send would."""
    sub = outbox.subscriber(subscriber_id)
    if sub is None or not sub.digest:
        return []
    waiting = await outbox.store.queued_digests(subscriber_id=subscriber_id)
    events = await outbox.store.events_by_id(d.event_id for d in waiting)
    out: list[tuple[DigestKey, list[Delivery], EmailMessage]] = []
    for key, members in group_digests(waiting).items():
        message = digest_message(
            sub,
            key[1],
            members,
            events,
            renderer=outbox.renderer,
            unsubscribe_url=await outbox.unsubscribe_url(sub, key[1]),
            sender=outbox.sender,
        )
        out.append((key, members, message))
    return out


async def send_digests_now(outbox: Outbox, subscriber_id: str, report: DrainReport) -> int:
    """``digests send``: one subscriber's waiting digest deliveries, due or not, as one
    email per address (all digest instants together), through the real channel, each
    member recorded with the result. Returns how many emails were attempted."""
    batch = await outbox.store.claim_digests_of(
        subscriber_id, now=outbox.clock(), worker=outbox.worker, lease=outbox.lease
    )
    if not batch:
        return 0
    events = await outbox.store.events_by_id(d.event_id for d in batch)
    by_address: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in batch:
        by_address[delivery.target].append(delivery)
    for target, members in by_address.items():
        result = await _send_digest(outbox, subscriber_id, target, members, events)
        await outbox.record([(delivery, result) for delivery in members], report)
    return len(by_address)
