"""``deliveries`` (the delivery log, filtered), ``deliveries show ID`` (one delivery and
every attempt), ``deliveries retry ID… | --all-dead [--subscriber ID]``, and
``subscribers unblock SUBSCRIBER_ID`` (lift a 410 Gone block). All read or write the
store only, so they work beside a running daemon (which sees a re-queued delivery
within a second). Targets are shown masked (CONTRACT "The delivery log").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from typing import Any, TextIO

from notifier.config import Config
from notifier.core.model import EVENT_TYPES, Delivery, isoformat_z
from notifier.core.planning import GONE_PREFIX
from notifier.delivery.masking import shown_target as masked
from notifier.store import Store, parse_state_url

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: Candidates listed for an ambiguous id prefix.
PREFIX_CANDIDATES = 6


class UsageError(Exception):
    """A bad argument: printed on one line, exit 2."""


def shown_target(config: Config, subscriber_id: str, target: str) -> str:
    """A target as command output may show it: an email address as it is; a webhook URL
    masked, to scheme and host when it is a secret (every Slack URL, a URL that came
    from ``${VAR}``, the URL of a subscriber no longer configured)."""
    sub = next((s for s in config.subscribers if s.id == subscriber_id), None)
    return masked(target, subscriber=sub, env_values=config.env_values)


def local(config: Config, value: datetime | None) -> str:
    """A compact local time for tables: ``2025-04-17 08:00 EDT``."""
    if value is None:
        return "-"
    return value.astimezone(config.zone).strftime("%Y-%m-%d %H:%M %Z")


def parse_since(config: Config, text: str | None) -> datetime | None:
    """``--since``: a date (from its start, in the notifier's zone) or an ISO datetime."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=config.zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since: expected a date like 2026-05-03 (or a datetime), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=config.zone)


def event_filter(text: str | None) -> tuple[list[str] | None, str | None]:
    """``--event``: an event id (or a prefix of one, ``evt_…``) or a glob over event
    types (``tariff.rule.*``); returns (types, event id)."""
    if not text:
        return None, None
    if text.startswith("evt_"):
        return None, text.rstrip("…").rstrip(".")
    types = [t for t in EVENT_TYPES if fnmatchcase(t, text)]
    if not types:
        raise UsageError(
            f"--event: {text!r} matches no event type (e.g. tariff.rule.*, feed.entry.new) "
            "and is no event id (evt_…)"
        )
    return types, None


def delivery_json(config: Config, delivery: Delivery, event_type: str) -> dict[str, Any]:
    def at(value: datetime | None) -> str | None:
        return isoformat_z(value) if value else None

    queued = delivery.status == "queued"
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "subscriber": delivery.subscriber_id,
        "channel": delivery.channel,
        "target": shown_target(config, delivery.subscriber_id, delivery.target),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_at": at(delivery.next_at) if queued else None,
        "created_at": at(delivery.created_at),
        "sent_at": at(delivery.sent_at),
        "last_error": delivery.last_error,
        "digest_at": at(delivery.digest_at),
        "gone": bool(delivery.last_error and delivery.last_error.startswith(GONE_PREFIX)),
    }


def _next(config: Config, delivery: Delivery) -> str:
    if delivery.status != "queued":
        return "-"
    if delivery.digest_at is not None:
        return "digest " + local(config, delivery.digest_at)
    return local(config, delivery.next_at)


# --- the command ---------------------------------------------------------------------


def deliveries(config: Config, args: argparse.Namespace) -> int:
    action = list(args.action or [])
    try:
        if action and action[0] == "export":
            from notifier.cli.sources import export_ledger

            return export_ledger(config, args)
        if action and action[0] == "show":
            if len(action) != 2:
                raise UsageError("usage: tariff-notifier deliveries show ID")
            return asyncio.run(_show(config, action[1], as_json=args.json))
        if action and action[0] == "retry":
            if args.all_dead == (len(action) > 1):
                raise UsageError(
                    "usage: tariff-notifier deliveries retry ID [ID …] | retry --all-dead "
                    "[--subscriber ID]"
                )
            if args.all_dead:
                return asyncio.run(_retry_all_dead(config, args.subscriber))
            return asyncio.run(_retry(config, action[1:]))
        if action:
            raise UsageError(
                f"unknown action {action[0]!r}: expected show ID, retry ID…, retry "
                "--all-dead or export"
            )
        return asyncio.run(_list(config, args))
    except UsageError as exc:
        print(f"tariff-notifier: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _open(config: Config) -> Store:
    return await Store.open(config.state_url)


async def resolve(store: Store, given: str) -> Delivery:
    """The one delivery ``given`` names (an id or a unique prefix, a trailing "…" as the
    tables print ids allowed); ``LookupError`` saying which case applies."""
    prefix = given.rstrip("…").rstrip(".")
    if not prefix:
        raise LookupError(f"{given}: not a delivery id")
    found = await store.deliveries_by_prefix(prefix, limit=PREFIX_CANDIDATES + 1)
    if not found:
        raise LookupError(f"{given}: not found")
    if len(found) > 1:
        names = ", ".join(d.id for d in found[:PREFIX_CANDIDATES])
        more = ", …" if len(found) > PREFIX_CANDIDATES else ""
        raise LookupError(f"{given}: ambiguous prefix; it matches {names}{more}")
    return found[0]


async def _list(config: Config, args: argparse.Namespace) -> int:
    since = parse_since(config, args.since)
    types, event_id = event_filter(args.event)
    store = await _open(config)
    try:
        rows = await store.find_deliveries(
            status=args.status,
            subscriber_id=args.subscriber,
            event_types=types,
            event_id=event_id,
            since=since,
            limit=args.limit,
        )
        gone = await store.gone_endpoints({s.id: s.config_hash for s in config.subscribers})
    finally:
        await store.close()
    if args.json:
        json.dump([delivery_json(config, d, t) for d, t in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not rows:
        print("no deliveries" + (" match" if _filtered(args) else ""))
    else:
        print(
            f"{'id':<28} {'status':<7} {'try':>3} {'channel':<7} {'subscriber':<16} "
            f"{'target':<32} {'next':<26} event / error"
        )
    for delivery, event_type in rows:
        tail = event_type
        if delivery.last_error and delivery.status != "sent":
            tail += f"  ({delivery.last_error[:80]})"
        target = shown_target(config, delivery.subscriber_id, delivery.target)
        print(
            f"{delivery.id:<28} {delivery.status:<7} {delivery.attempts:>3} "
            f"{delivery.channel:<7} {delivery.subscriber_id[:16]:<16} {target[:32]:<32} "
            f"{_next(config, delivery):<26} {tail}"
        )
    print_gone(config, gone, out=sys.stdout)
    return EXIT_OK


def _filtered(args: argparse.Namespace) -> bool:
    return any((args.status, args.subscriber, args.event, args.since))


def print_gone(config: Config, gone: list[Any], *, out: TextIO, indent: str = "") -> None:
    """One line per gone endpoint (410), masked, with how to lift the block."""
    for endpoint in gone:
        target = shown_target(config, endpoint.subscriber_id, endpoint.url)
        print(
            f"{indent}gone: webhook {target} of subscriber {endpoint.subscriber_id} answered "
            f"410 Gone at {local(config, endpoint.at)}; nothing is sent there until its config "
            f"entry changes or `tariff-notifier subscribers unblock {endpoint.subscriber_id}`",
            file=out,
        )


async def _show(config: Config, given: str, *, as_json: bool) -> int:
    store = await _open(config)
    try:
        try:
            delivery = await resolve(store, given)
        except LookupError as exc:
            print(f"tariff-notifier: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        events = await store.events_by_id([delivery.event_id])
        history = await store.attempt_history(delivery.id)
    finally:
        await store.close()
    event = events.get(delivery.event_id)
    item = delivery_json(config, delivery, event.type if event else "?")
    item["attempt_history"] = [
        {
            "attempt": h["attempt"],
            "at": isoformat_z(h["at"]),
            "outcome": h["outcome"],
            "detail": h["detail"],
            "sha256": h["sha256"],
        }
        for h in history
    ]
    if as_json:
        json.dump(item, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"delivery   {delivery.id}")
    print(f"event      {delivery.event_id} {item['event_type']}")
    print(f"subscriber {delivery.subscriber_id} ({delivery.channel} {item['target']})")
    print(f"status     {delivery.status} after {delivery.attempts} attempts")
    print(f"created    {local(config, delivery.created_at)}")
    if delivery.status == "queued":
        print(f"next try   {_next(config, delivery)}")
    if delivery.sent_at:
        print(f"sent       {local(config, delivery.sent_at)}")
    if delivery.last_error and delivery.status != "sent":
        print(f"last error {delivery.last_error}")
    if not history:
        print("attempts   none")
        return EXIT_OK
    print("attempts:")
    for h in history:
        print(
            f"  {h['attempt']:>2}  {local(config, h['at']):<21} {h['outcome']:<7} "
            f"sha256 {h['sha256'] or '-':<64}  {h['detail'] or ''}".rstrip()
        )
    return EXIT_OK


async def _retry(config: Config, given: list[str]) -> int:
    store = await _open(config)
    code = EXIT_OK
    now = datetime.now(UTC)
    try:
        gone = {
            (g.subscriber_id, g.url)
            for g in await store.gone_endpoints({s.id: s.config_hash for s in config.subscribers})
        }
        for name in given:
            try:
                delivery = await resolve(store, name)
            except LookupError as exc:
                print(str(exc))
                code = EXIT_USAGE if "ambiguous" in str(exc) else max(code, EXIT_FAILURE)
                continue
            line, ok = await _retry_one(config, store, delivery, gone=gone, now=now)
            print(f"{delivery.id}: {line}")
            if not ok:
                code = max(code, EXIT_FAILURE)
    finally:
        await store.close()
    return code


async def _retry_one(
    config: Config, store: Store, delivery: Delivery, *, gone: set[tuple[str, str]], now: datetime
) -> tuple[str, bool]:
    if delivery.status == "sent":
        return f"not dead: it is sent ({local(config, delivery.sent_at)}); nothing to retry", False
    if delivery.status == "queued":
        return f"not dead: it is queued (next try {_next(config, delivery)})", False
    if delivery.last_error == "unsubscribed":
        return "not retried: its address unsubscribed", False
    if (delivery.subscriber_id, delivery.target) in gone:
        # Retrying a delivery to a gone endpoint lifts the block: the operator says the
        # endpoint is back. Its other deliveries since the 410 go again too.
        done = await store.unblock(delivery.subscriber_id, url=delivery.target, now=now)
        gone.discard((delivery.subscriber_id, delivery.target))
        others = len(set(done.requeued) - {delivery.id})
        target = shown_target(config, delivery.subscriber_id, delivery.target)
        extra = f" and {others} more to it" if others else ""
        if delivery.id not in done.requeued:
            await store.requeue([delivery.id], now=now)
        return f"re-queued{extra}; the 410 block of {target} is lifted", True
    done_ids = await store.requeue([delivery.id], now=now)
    if delivery.id in done_ids:
        return "re-queued", True
    return f"not re-queued (status {delivery.status})", False


async def _retry_all_dead(config: Config, subscriber: str | None) -> int:
    store = await _open(config)
    try:
        ids = await store.dead_delivery_ids(subscriber_id=subscriber)
        done = await store.requeue(ids, now=datetime.now(UTC)) if ids else []
    finally:
        await store.close()
    whose = f" of {subscriber}" if subscriber else ""
    print(f"re-queued {len(done)} dead deliveries{whose}")
    return EXIT_OK


# --- subscribers unblock ----------------------------------------------------------------


def subscribers(config: Config, args: argparse.Namespace) -> int:
    action = list(args.action or [])
    if len(action) != 2 or action[0] != "unblock":
        print("usage: tariff-notifier subscribers unblock SUBSCRIBER_ID", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_unblock(config, action[1]))


async def _unblock(config: Config, subscriber_id: str) -> int:
    store = await _open(config)
    try:
        done = await store.unblock(subscriber_id, now=datetime.now(UTC))
    finally:
        await store.close()
    if not done.endpoints:
        print(
            f"tariff-notifier: subscriber {subscriber_id!r} has no gone endpoint", file=sys.stderr
        )
        return EXIT_FAILURE
    for url in done.endpoints:
        print(
            f"{subscriber_id}: lifted the 410 block of {shown_target(config, subscriber_id, url)}"
        )
    print(f"{subscriber_id}: re-queued {len(done.requeued)} deliveries not sent meanwhile")
    return EXIT_OK


# --- for `check` ---------------------------------------------------------------------------


def check_gone(config: Config, *, out: TextIO) -> None:
    """``check``: a line per gone endpoint, when a state store exists (never creates one)."""
    state = parse_state_url(config.state_url)
    if state.dialect == "sqlite" and not state.exists():
        return

    async def read() -> list[Any]:
        store = await Store.open(config.state_url, create=False)
        try:
            found: list[Any] = await store.gone_endpoints(
                {s.id: s.config_hash for s in config.subscribers}
            )
            return found
        finally:
            await store.close()

    from notifier.errors import StoreError

    try:
        gone = asyncio.run(read())
    except StoreError as exc:
        print(f"  warning: could not read the state store for gone endpoints: {exc}", file=out)
        return
    print_gone(config, gone, out=out, indent="  ")
