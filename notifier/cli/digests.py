"""``digests [--subscriber ID] [--preview] [--json]``: what waits for each digest and when
it goes (``--preview``: the next digest as it would be sent, rendered by the real digest
code); ``digests send SUBSCRIBER_ID``: send that subscriber's digest now, through the
real channel, its attempts recorded. Both work beside a running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from notifier.config import Config
from notifier.core.model import Delivery, Event, Subscriber, isoformat_z
from notifier.core.planning import next_digest_at
from notifier.errors import ConfigError
from notifier.store import Store

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _local(config: Config, value: datetime | None) -> str:
    from notifier.cli.deliveries import local

    return local(config, value)


def _subscriber(config: Config, subscriber_id: str) -> Subscriber:
    sub = next((s for s in config.subscribers if s.id == subscriber_id), None)
    if sub is None:
        known = ", ".join(s.id for s in config.subscribers) or "none"
        raise ConfigError(
            f"no subscriber {subscriber_id!r} (known: {known})",
            file=str(config.path),
            key="subscriber",
        )
    return sub


def _title(event: Event | None) -> str:
    if event is None:
        return "(event no longer stored)"
    from notifier.delivery.render import alert_view

    view = alert_view(event)
    return f"{view['label']}: {view['title']}" if view["title"] else str(view["label"])


def waiting_groups(
    waiting: list[Delivery],
) -> dict[tuple[str, datetime | None], dict[str, list[Delivery]]]:
    """Waiting digest deliveries by (subscriber, digest instant), then by address."""
    groups: dict[tuple[str, datetime | None], dict[str, list[Delivery]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for delivery in waiting:
        groups[(delivery.subscriber_id, delivery.digest_at)][delivery.target].append(delivery)
    return groups


async def digest_lines(store: Store, config: Config) -> list[str]:
    """For ``once``: one line per digest that waits (subscriber, alerts, when it goes)."""
    waiting = await store.queued_digests()
    lines = []
    for (subscriber_id, at), by_address in sorted(
        waiting_groups(waiting).items(),
        key=lambda kv: (kv[0][1] or datetime.max.replace(tzinfo=UTC), kv[0][0]),
    ):
        count = len({d.event_id for members in by_address.values() for d in members})
        addresses = ", ".join(sorted(by_address))
        lines.append(
            f"  digest {subscriber_id} ({addresses}): {count} alert{'s' if count != 1 else ''} "
            f"waiting, goes {_local(config, at)}"
        )
    return lines


# --- the command ---------------------------------------------------------------------


def digests(config: Config, args: argparse.Namespace) -> int:
    action = list(args.action or [])
    if action:
        if action[0] != "send" or len(action) != 2:
            print(
                "usage: tariff-notifier digests [--subscriber ID] [--preview] | digests send "
                "SUBSCRIBER_ID",
                file=sys.stderr,
            )
            return EXIT_USAGE
        sub = _subscriber(config, action[1])
        if not sub.digest:
            raise ConfigError(
                f"subscriber {sub.id!r} has no digest", file=str(config.path), key="digest"
            )
        return asyncio.run(_send(config, sub))
    if args.subscriber:
        _subscriber(config, args.subscriber)
    return asyncio.run(_show(config, args))


async def _show(config: Config, args: argparse.Namespace) -> int:
    from notifier.runtime.runtime import Notifier

    now = datetime.now(UTC)
    async with Notifier(config, parse_in_processes=False, beside_daemon=True) as notifier:
        store = notifier.store
        waiting = await store.queued_digests(subscriber_id=args.subscriber)
        events = await store.events_by_id(d.event_id for d in waiting)
        previews: dict[str, list[Any]] = {}
        if args.preview:
            from notifier.delivery.digests import preview_digests

            for subscriber_id in sorted({d.subscriber_id for d in waiting}):
                previews[subscriber_id] = await preview_digests(
                    notifier.runtime.outbox, subscriber_id
                )
    items = _items(config, waiting, events, now=now, only=args.subscriber)
    if args.json:
        for item in items:
            for group in item["waiting"]:
                group["preview"] = (
                    [
                        {"to": message.recipient, "subject": message.subject, "text": message.text}
                        for key, _, message in previews.get(item["subscriber"], [])
                        if _at(key[2]) == group["goes_at"]
                    ]
                    if args.preview
                    else None
                )
        json.dump(items, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not items:
        print("no digest subscribers" if not waiting else "nothing waits for a digest")
    for item in items:
        period = item["digest"] or "no digest any more"
        print(f"{item['subscriber']} ({period})")
        if not item["waiting"]:
            print(f"  nothing waiting; the next digest would go {item['next_local']}")
        for group in item["waiting"]:
            print(
                f"  {group['count']} alert{'s' if group['count'] != 1 else ''} waiting for "
                f"{', '.join(group['to'])}, goes {group['goes_local']}"
            )
            for line in group["alerts"]:
                print(f"    - {line}")
        for key, _, message in previews.get(item["subscriber"], []):
            print(f"\n--- preview: the digest for {message.recipient} at {_local(config, key[2])}")
            print(f"Subject: {message.subject}\n")
            print(message.text.rstrip())
            print("--- end of preview\n")
    return EXIT_OK


def _at(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def _items(
    config: Config,
    waiting: list[Delivery],
    events: dict[str, Event],
    *,
    now: datetime,
    only: str | None,
) -> list[dict[str, Any]]:
    """One item per digest subscriber (and per subscriber whose rows still wait)."""
    subs = {s.id: s for s in config.subscribers}
    wanted = [s.id for s in config.subscribers if s.digest and (only is None or s.id == only)]
    wanted += sorted({d.subscriber_id for d in waiting} - set(wanted))
    groups = waiting_groups(waiting)
    items = []
    for subscriber_id in wanted:
        sub = subs.get(subscriber_id)
        spec = sub.digest if sub else None
        upcoming = next_digest_at(spec, after=now, zone=config.zone) if spec else None
        mine = sorted(
            ((at, by_address) for (sid, at), by_address in groups.items() if sid == subscriber_id),
            key=lambda pair: pair[0] or now,
        )
        item: dict[str, Any] = {
            "subscriber": subscriber_id,
            "digest": spec,
            "next_at": _at(upcoming),
            "next_local": _local(config, upcoming),
            "waiting": [],
        }
        for at, by_address in mine:
            members = [d for ds in by_address.values() for d in ds]
            event_ids = list(dict.fromkeys(d.event_id for d in members))
            item["waiting"].append(
                {
                    "goes_at": _at(at),
                    "goes_local": _local(config, at),
                    "to": sorted(by_address),
                    "count": len(event_ids),
                    "event_ids": event_ids,
                    "alerts": [_title(events.get(e)) for e in event_ids],
                }
            )
        items.append(item)
    return items


async def _send(config: Config, sub: Subscriber) -> int:
    from notifier.delivery.digests import send_digests_now
    from notifier.delivery.outbox import DrainReport
    from notifier.logs import register_secrets
    from notifier.runtime.runtime import Notifier, config_secrets

    register_secrets(*config_secrets(config))
    report = DrainReport()
    async with Notifier(config, parse_in_processes=False, beside_daemon=True) as notifier:
        emails = await send_digests_now(notifier.runtime.outbox, sub.id, report)
    if not emails:
        print(f"{sub.id}: nothing waits for its digest")
        return EXIT_OK
    by_status: dict[str, int] = defaultdict(int)
    for _, status, _ in report.outcomes:
        by_status[status] += 1
    details = sorted({detail for _, status, detail in report.outcomes if status != "sent"})
    print(
        f"{sub.id}: {emails} digest email{'s' if emails != 1 else ''} for "
        f"{len(report.outcomes)} deliveries: "
        + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    )
    for detail in details:
        print(f"  {detail}")
    return EXIT_OK if report.sent == len(report.outcomes) else EXIT_FAILURE
