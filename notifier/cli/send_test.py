"""``send-test SUBSCRIBER_ID``: a sample alert that the subscriber's filters match, sent at
once through the real channels and marked as a test everywhere.

The sample is a rule of the calendar, as one of the event types the subscriber takes,
when the subscriber's own index (the real :class:`SubscriberIndex`) matches it; else a
synthetic alert built from the subscriber's filters, which says it is synthetic. Marks:
``[TEST]`` at the start of the subject and a banner in both email bodies (the templates
read ``data.test``), ``"test": true`` in the webhook data, and an
``X-Tariff-Notifier-Test: 1`` header on email. Webhooks carry no test header: their
headers are the Standard Webhooks ones the channel signs, and the data flag is part of
the signed body. Nothing is stored: a test is not an event of the delivery log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.config import Config
from notifier.core.durations import duration_label
from notifier.core.matching import SubscriberIndex
from notifier.core.model import Delivery, EmailMessage, Event, Rule, SendResult, Subscriber
from notifier.core.model import isoformat_z as _z
from notifier.core.planning import plan_deliveries
from notifier.errors import ConfigError
from notifier.logs import register_secrets

EXIT_OK, EXIT_FAILURE = 0, 1

#: The email header that marks a test (RFC 6648: no ``X-`` registry; a private name).
TEST_HEADER = "X-Tariff-Notifier-Test"

# The rule event types, in the order a sample is picked (the most telling first).
_RULE_KINDS = ("effective", "announced", "changed", "reminder", "expired", "withdrawn")


def _event_id(now: datetime) -> str:
    return "evt_test_" + now.strftime("%Y%m%dT%H%M%S") + os.urandom(4).hex()


def rule_sample(
    rule: Rule, kind: str, *, now: datetime, remind: timedelta, synthetic: bool
) -> Event:
    """A ``tariff.rule.<kind>`` test event for ``rule``."""
    data: dict[str, Any] = {
        "late": False,
        "rule": rule.to_dict(),
        "changes": [],
        "detected_at": _z(now),
        "test": True,
    }
    if synthetic:
        data["synthetic"] = True
    if kind == "effective":
        data["transition_at"] = rule.effective.isoformat()
    elif kind == "expired":
        data["transition_at"] = (rule.ends or now).isoformat()
    elif kind == "reminder":
        data["transition_at"] = (rule.effective - remind).isoformat()
        data["remind_before"] = duration_label(remind)
    elif kind == "withdrawn":
        data["reason"] = "removed"
    return Event(
        id=_event_id(now),
        type=f"tariff.rule.{kind}",
        timestamp=now,
        data=data,
        origins=rule.origins,
        hts=rule.hts,
    )


def _synthetic_rule(sub: Subscriber, now: datetime) -> Rule:
    origins = sub.origins or ("*",)
    hts = sub.hts or ("*",)
    return Rule(
        id="send-test-sample",
        title="Sample tariff rule (synthetic: no calendar rule matches this subscription)",
        imposed_by="US",
        origins=tuple(origins),
        hts=tuple(hts),
        rate="25%",
        effective=now.replace(microsecond=0),
        basis="send-test",
        source="",
    )


def _synthetic_others(sub: Subscriber, now: datetime) -> Iterator[Event]:
    """Samples of the other families, built from the subscriber's filters."""
    origins = tuple(sub.origins or ())
    hts = tuple(sub.hts or ())
    words = " ".join(sub.keywords or ())
    title = "Sample notice (synthetic, sent by send-test)" + (f": {words}" if words else "")
    summary = "A synthetic notice built from this subscription's filters; no real entry."
    yield Event(
        id=_event_id(now),
        type="feed.entry.new",
        timestamp=now,
        data={
            "feed": "send-test",
            "feed_title": "tariff-notifier send-test",
            "entry": {
                "id": "send-test-sample",
                "title": title,
                "link": "",
                "published": now.replace(microsecond=0).isoformat(),
                "summary": summary,
            },
            "tags": {
                "origins": list(origins),
                "hts": list(hts),
                "rates": ["25%"],
                "dates": [],
                "chapter99": [],
            },
            "changes": [],
            "detected_at": _z(now),
            "test": True,
            "synthetic": True,
        },
        origins=origins,
        hts=hts,
        text=f"{title}\n{summary}",
    )
    code = next((c for c in hts if c.isdigit()), "8708")
    yield Event(
        id=_event_id(now),
        type="hts.line.added",
        timestamp=now,
        data={
            "line": {
                "htsno": code,
                "description": "Sample line (synthetic, sent by send-test)",
                "general": "25%",
                "special": "",
                "other": "",
                "units": [],
                "footnotes": "",
                "applies_to": [code],
                "origins": list(origins) or ["*"],
            },
            "changes": [],
            "detected_at": _z(now),
            "test": True,
            "synthetic": True,
        },
        origins=origins or ("*",),
        hts=(code,),
        text=f"Sample line {words}",
    )
    yield Event(
        id=_event_id(now),
        type="source.failing",
        timestamp=now,
        data={
            "source": "send-test",
            "kind": "rss",
            "since": _z(now),
            "failures": 3,
            "last_error": "a synthetic failure (send-test)",
            "detected_at": _z(now),
            "test": True,
            "synthetic": True,
        },
    )


def sample_event(config: Config, sub: Subscriber, now: datetime) -> Event:
    """A test alert ``sub`` would receive: a calendar rule its filters match, as the first
    rule event type it takes; else a synthetic one from its filters (``data.synthetic``)."""
    index = SubscriberIndex([sub])
    remind = max(config.model.calendar.remind, default=timedelta(days=7))
    rules = sorted(config.rules, key=lambda r: (r.status != "scheduled", -r.effective.timestamp()))
    for rule in rules:
        for kind in _RULE_KINDS:
            if kind == "expired" and rule.ends is None:
                continue
            event = rule_sample(rule, kind, now=now, remind=remind, synthetic=False)
            if index.match(event):
                return event
    synthetic = _synthetic_rule(sub, now)
    for kind in _RULE_KINDS:
        event = rule_sample(synthetic, kind, now=now, remind=remind, synthetic=True)
        if index.match(event):
            return event
    for event in _synthetic_others(sub, now):
        if index.match(event):
            return event
    # A filter nothing can satisfy (events = ["nothing.*"]): say so, but still test the
    # channel, with a rule alert.
    return rule_sample(synthetic, "effective", now=now, remind=remind, synthetic=True)


def send_test(config: Config, args: argparse.Namespace) -> int:
    from notifier.runtime.runtime import config_secrets

    register_secrets(*config_secrets(config))
    sub = next((s for s in config.subscribers if s.id == args.subscriber_id), None)
    if sub is None:
        known = ", ".join(s.id for s in config.subscribers) or "none"
        raise ConfigError(
            f"no subscriber {args.subscriber_id!r} (known: {known})",
            file=str(config.path),
            key="subscriber",
        )
    return asyncio.run(_send_test(config, sub))


async def _send_test(config: Config, sub: Subscriber) -> int:
    from notifier.delivery.masking import shown_target
    from notifier.runtime.runtime import Notifier

    now = datetime.now(UTC)
    event = sample_event(config, sub, now)
    what = "synthetic sample" if event.data.get("synthetic") else "sample"
    print(f"{what}: {event.type} {_sample_name(event)}")
    failures = 0
    # Beside a running daemon: no single-instance lock, nothing written to the store.
    async with Notifier(config, parse_in_processes=False, beside_daemon=True) as notifier:
        for delivery in plan_deliveries(event, [sub], now=now, zone=config.zone):
            # A test is sent at once, even for digest subscribers.
            delivery = Delivery(
                id=delivery.id,
                event_id=delivery.event_id,
                subscriber_id=delivery.subscriber_id,
                channel=delivery.channel,
                target=delivery.target,
                status="queued",
                attempts=0,
                next_at=now,
                created_at=now,
            )
            result = await _attempt(notifier, delivery, event, sub)
            shown = shown_target(delivery.target, subscriber=sub, env_values=config.env_values)
            print(f"{delivery.channel} {shown}: {result.outcome} {result.detail}".rstrip())
            failures += result.outcome != "sent"
    return EXIT_OK if failures == 0 else EXIT_FAILURE


def _sample_name(event: Event) -> str:
    data = event.data
    for key, label in (("rule", "title"), ("entry", "title"), ("line", "htsno")):
        value = data.get(key)
        if isinstance(value, dict) and value.get(label):
            return f"({value[label]})"
    return f"({data.get('source', '')})"


async def _attempt(notifier: Any, delivery: Delivery, event: Event, sub: Subscriber) -> SendResult:
    """Webhooks through the outbox's own path; email built here, to add the test header."""
    outbox = notifier.runtime.outbox
    if delivery.channel != "email":
        result: SendResult = await outbox.attempt(delivery, event)
        return result
    from notifier.delivery.channels.mime import message_id_for, unsubscribe_headers

    unsubscribe_url = await outbox.unsubscribe_url(sub, delivery.target)
    rendered = outbox.renderer.render_email(
        event, subscriber_id=sub.id, unsubscribe_url=unsubscribe_url
    )
    message = EmailMessage(
        message_id=message_id_for(delivery.id, sender=outbox.sender),
        recipient=delivery.target,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers={**unsubscribe_headers(unsubscribe_url), TEST_HEADER: "1"},
    )
    sent: SendResult = await notifier.runtime.channels.email.send(message)
    return sent
