"""The CLI commands. Each takes the loaded config and parsed arguments, returns an exit code.

The runtime (SQLAlchemy, aiohttp, Jinja2: ~0.5 s of imports) is imported by the commands
that use it, so ``calendar`` and the other store-free commands start without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from notifier.config import Config
from notifier.config.load import stale_review_message

if TYPE_CHECKING:
    from notifier.core.model import Event
    from notifier.runtime.runtime import Runtime

log = logging.getLogger("notifier.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _secrets(config: Config) -> None:
    from notifier.logs import register_secrets
    from notifier.runtime.runtime import config_secrets

    register_secrets(*config_secrets(config))


def check(config: Config, args: argparse.Namespace) -> int:
    from notifier.runtime.runtime import build_renderer, build_tagger
    from notifier.store import parse_state_url

    templates = build_renderer(config).check()
    build_tagger(config).compile()
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
    from notifier.cli.deliveries import check_gone

    check_gone(config, out=sys.stdout)
    return EXIT_OK


def warn_stale_calendar(config: Config, *, out: Any = None) -> None:
    """Say which calendar files in use were last reviewed more than 90 days ago."""
    today = datetime.now(config.zone).date()
    for file, reviewed in config.stale_calendar_files(today):
        message = stale_review_message(f"calendar file {file}", reviewed, today)
        if out is not None:
            print(f"  warning: {message}", file=out)
        else:
            log.warning("%s", message)


# --- once ----------------------------------------------------------------------------


def once(config: Config, args: argparse.Namespace) -> int:
    from notifier.runtime.loop import run as run_loop

    _secrets(config)
    warn_stale_calendar(config)  # a pass from cron starts up too: never a silent stale file
    if args.dry_run:
        return run_loop(_dry_run(config))
    return run_loop(_once(config, strict=args.strict))  # uvloop where installed, as `run`


async def _once(config: Config, *, strict: bool) -> int:
    from notifier.cli.digests import digest_lines
    from notifier.runtime.jobs import Jobs
    from notifier.runtime.runtime import Notifier

    async with Notifier(config) as notifier:
        report = await Jobs(notifier).run_once()
        waiting = await digest_lines(notifier.store, notifier.config)
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
    for line in waiting:
        print(line)
    if report.pruned.total():
        print(f"retention: forgot {report.pruned}")
    if strict and (src.feed_errors or out.retry or out.dead):
        return EXIT_PARTIAL
    return EXIT_OK


async def _dry_run(config: Config) -> int:
    from notifier.runtime.jobs import Jobs
    from notifier.runtime.runtime import Notifier
    from notifier.store import parse_state_url

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
    from notifier.core.planning import plan_deliveries

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
    from notifier.cli.deliveries import deliveries as run_deliveries

    return run_deliveries(config, args)


def subscribers(config: Config, args: argparse.Namespace) -> int:
    from notifier.cli.deliveries import subscribers as run_subscribers

    return run_subscribers(config, args)


def digests(config: Config, args: argparse.Namespace) -> int:
    from notifier.cli.digests import digests as run_digests

    return run_digests(config, args)


# --- send-test -----------------------------------------------------------------------


def send_test(config: Config, args: argparse.Namespace) -> int:
    from notifier.cli.send_test import send_test as run_send_test

    return run_send_test(config, args)


# --- migrate, calendar, run ----------------------------------------------------------


def migrate(config: Config, args: argparse.Namespace) -> int:
    import asyncio

    from notifier.store import Store, parse_state_url

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
