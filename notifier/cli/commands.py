"""The CLI commands. Each takes the loaded config and parsed arguments, returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from notifier.config import Config
from notifier.core.model import Delivery, Event, Rule, isoformat_z
from notifier.core.planning import plan_deliveries
from notifier.delivery.outbox import build_channels
from notifier.errors import ConfigError
from notifier.logs import register_secrets
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier, Runtime, build_renderer, build_tagger, config_secrets
from notifier.store import Store, parse_state_url

log = logging.getLogger("notifier.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _secrets(config: Config) -> None:
    register_secrets(*config_secrets(config))


def check(config: Config, args: argparse.Namespace) -> int:
    templates = build_renderer(config).check()
    build_tagger(config)
    rules = config.rules
    scheduled = sum(1 for r in rules if r.status == "scheduled")
    print(f"config {config.path}: ok")
    print(f"  feeds:       {len(config.feeds)}")
    print(f"  rules:       {len(rules)} ({scheduled} scheduled)")
    print(f"  subscribers: {len(config.subscribers)}")
    print(f"  templates:   {templates}")
    print(f"  state:       {parse_state_url(config.model.notifier.state).masked}")
    print(f"  email:       {'smtp ' + config.model.smtp.host if config.model.smtp else 'maildir'}")
    warn_stale_calendar(config, out=sys.stdout)
    return EXIT_OK


def warn_stale_calendar(config: Config, *, out: Any = None) -> None:
    """Say which calendar files in use were last reviewed more than 90 days ago."""
    today = datetime.now(config.zone).date()
    for file, reviewed in config.stale_calendar_files(today):
        message = (
            f"calendar file {file} was last reviewed {reviewed} ({(today - reviewed).days} "
            "days ago): its rules may be out of date; check them against their sources"
        )
        if out is not None:
            print(f"  warning: {message}", file=out)
        else:
            log.warning("%s", message)


# --- once ----------------------------------------------------------------------------


def once(config: Config, args: argparse.Namespace) -> int:
    _secrets(config)
    if args.dry_run:
        return asyncio.run(_dry_run(config))
    return asyncio.run(_once(config, strict=args.strict))


async def _once(config: Config, *, strict: bool) -> int:
    async with Notifier(config) as notifier:
        report = await Jobs(notifier).run_once()
    src, out = report.sources, report.delivery
    print(
        f"polled {src.feeds_polled} sources ({src.feeds_unchanged} unchanged, "
        f"{len(src.feed_errors)} failed); {len(src.events)} events; "
        f"{src.deliveries} deliveries queued"
    )
    if src.baselined:
        print(f"baseline taken silently for: {', '.join(src.baselined)}")
    if src.held:
        print(f"held for review (see `tariff-notifier sources`): {', '.join(src.held)}")
    for feed_id, error in sorted(src.feed_errors.items()):
        print(f"  source {feed_id}: {error}")
    print(
        f"deliveries: {out.sent} sent, {out.retry} to retry, {out.failed} failed, {out.dead} dead"
    )
    for delivery_id, status, detail in out.outcomes:
        if status != "sent":
            print(f"  {delivery_id} {status}: {detail}")
    if report.pruned.total():
        print(f"retention: forgot {report.pruned}")
    if strict and (src.feed_errors or out.retry or out.dead):
        return EXIT_PARTIAL
    return EXIT_OK


async def _dry_run(config: Config) -> int:
    # Never create or change state: an existing SQLite file is read; none means a
    # scratch in-memory store (so the dry run shows what a first start would do).
    url = config.state_url
    parsed = parse_state_url(url)
    if parsed.dialect == "sqlite" and not parsed.exists():
        url = "sqlite://"
    scratch = url == "sqlite://"
    async with Notifier(config, store_url=url, beside_daemon=True, create=scratch) as notifier:
        report = await Jobs(notifier, write=False).run_once()
        now = notifier.clock()
        for event in report.sources.events:
            _print_dry_event(notifier.runtime, event, now=now)
    src = report.sources
    print(f"dry run: {len(src.events)} events would be emitted; nothing was written or sent")
    for feed_id, error in sorted(src.feed_errors.items()):
        print(f"  source {feed_id}: {error}")
    return EXIT_OK


def _print_dry_event(rt: Runtime, event: Event, *, now: datetime) -> None:
    subs = rt.index.match(event)
    print(f"== {event.type} {event.id}")
    if not subs:
        print("   (no subscriber matches)")
    for delivery in plan_deliveries(event, subs, now=now, zone=rt.zone):
        print(f"-> {delivery.subscriber_id} {delivery.channel} {delivery.target}")
        if delivery.channel == "email":
            rendered = rt.renderer.render_email(
                event, subscriber_id=delivery.subscriber_id, unsubscribe_url=None
            )
            print(f"   Subject: {rendered.subject}")
            print("   " + rendered.text.replace("\n", "\n   "))
        else:
            print("   " + json.dumps(event.payload(), indent=2).replace("\n", "\n   "))


# --- deliveries ----------------------------------------------------------------------


def sources(config: Config, args: argparse.Namespace) -> int:
    from notifier.cli.sources import show_sources

    return show_sources(config, args)


def deliveries(config: Config, args: argparse.Namespace) -> int:
    if args.action and args.action[0] == "export":
        from notifier.cli.sources import export_ledger

        return export_ledger(config, args)
    if args.action:
        if args.action[0] != "retry" or len(args.action) < 2:
            print("usage: tariff-notifier deliveries retry ID [ID …]", file=sys.stderr)
            return EXIT_USAGE
        return asyncio.run(_retry(config, args.action[1:]))
    return asyncio.run(_list_deliveries(config, args))


async def _retry(config: Config, ids: list[str]) -> int:
    store = await Store.open(config.state_url)
    try:
        done = await store.requeue(ids, now=datetime.now(UTC))
    finally:
        await store.close()
    for delivery_id in ids:
        state = "re-queued" if delivery_id in done else "not found or not dead/failed"
        print(f"{delivery_id}: {state}")
    return EXIT_OK if len(done) == len(set(ids)) else EXIT_FAILURE


def _delivery_json(delivery: Delivery, event_type: str) -> dict[str, Any]:
    def at(value: datetime | None) -> str | None:
        return isoformat_z(value) if value else None

    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "subscriber": delivery.subscriber_id,
        "channel": delivery.channel,
        "target": delivery.target,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_at": at(delivery.next_at) if delivery.status == "queued" else None,
        "created_at": at(delivery.created_at),
        "sent_at": at(delivery.sent_at),
        "last_error": delivery.last_error,
        "digest_at": at(delivery.digest_at),
    }


async def _list_deliveries(config: Config, args: argparse.Namespace) -> int:
    store = await Store.open(config.state_url)
    try:
        rows = await store.list_deliveries(status=args.status, limit=args.limit)
    finally:
        await store.close()
    items = [_delivery_json(d, event_type) for d, event_type in rows]
    if args.json:
        json.dump(items, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not items:
        print("no deliveries" + (f" with status {args.status}" if args.status else ""))
        return EXIT_OK
    print(f"{'id':<28} {'status':<7} {'try':>3} {'channel':<7} {'subscriber':<18} event / error")
    for item in items:
        tail = item["event_type"]
        if item["last_error"] and item["status"] != "sent":
            tail += f"  ({item['last_error'][:80]})"
        print(
            f"{item['id']:<28} {item['status']:<7} {item['attempts']:>3} {item['channel']:<7} "
            f"{item['subscriber'][:18]:<18} {tail}"
        )
    return EXIT_OK


# --- send-test -----------------------------------------------------------------------


def sample_event(config: Config, now: datetime) -> Event:
    """A realistic alert for `send-test`: the first configured rule, else a built-in one."""
    rule = next(iter(config.rules), None) or Rule(
        id="sample-auto-parts",
        title="Section 232 tariff on automobile parts",
        imposed_by="US",
        origins=("*",),
        hts=("8708",),
        rate="25%",
        effective=datetime(2025, 5, 3, 4, 1, tzinfo=UTC),
        basis="Section 232",
        source="https://www.federalregister.gov/d/2025-05930",
    )
    return Event(
        id="evt_test_" + now.strftime("%Y%m%dT%H%M%S%f"),
        type="tariff.rule.effective",
        timestamp=now,
        data={
            "late": False,
            "rule": rule.to_dict(),
            "changes": [],
            "transition_at": rule.effective.isoformat(),
            "test": True,
        },
        origins=rule.origins,
        hts=rule.hts,
    )


def send_test(config: Config, args: argparse.Namespace) -> int:
    _secrets(config)
    sub = next((s for s in config.subscribers if s.id == args.subscriber_id), None)
    if sub is None:
        known = ", ".join(s.id for s in config.subscribers) or "none"
        raise ConfigError(
            f"no subscriber {args.subscriber_id!r} (known: {known})",
            file=str(config.path),
            key="subscriber",
        )
    return asyncio.run(_send_test(config, sub.id))


async def _send_test(config: Config, subscriber_id: str) -> int:
    now = datetime.now(UTC)
    event = sample_event(config, now)
    sub = next(s for s in config.subscribers if s.id == subscriber_id)
    channels = build_channels(config)
    async with Notifier(
        config, channels=channels, parse_in_processes=False, beside_daemon=True
    ) as notifier:
        failures = 0
        for delivery in plan_deliveries(event, [sub], now=now, zone=config.zone):
            # A test is sent at once, even for digest subscribers.
            result = await notifier.runtime.outbox.attempt(delivery, event)
            print(
                f"{delivery.channel} {delivery.target}: {result.outcome} {result.detail}".rstrip()
            )
            failures += result.outcome != "sent"
    return EXIT_OK if failures == 0 else EXIT_FAILURE


# --- migrate, calendar, run ----------------------------------------------------------


def migrate(config: Config, args: argparse.Namespace) -> int:
    async def go() -> None:
        store = await Store.open(config.state_url)
        await store.close()

    asyncio.run(go())
    print(f"state store ready: {parse_state_url(config.model.notifier.state).masked}")
    return EXIT_OK


def calendar(config: Config, args: argparse.Namespace) -> int:
    from notifier.cli.calendar_view import show_calendar

    return show_calendar(config, args)


def run(config: Config, args: argparse.Namespace) -> int:
    _secrets(config)
    warn_stale_calendar(config)
    from notifier.runtime.daemon import run_daemon

    return run_daemon(config, args)
