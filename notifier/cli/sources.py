"""``sources`` (every source and its health, from the store: works beside a running
daemon and, on PostgreSQL, for all instances), ``sources release|discard SOURCE_ID`` (an
operator's decision on a held change) and ``deliveries export`` (the compliance ledger).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from notifier.config import Config
from notifier.core.decide import HealthView, source_state
from notifier.core.model import isoformat_z
from notifier.core.retry import feed_backoff
from notifier.store import FeedState, HeldChange, Store

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _at(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def shown_url(url: str) -> str:
    """A source URL without its query (API keys and tokens travel there)."""
    parts = urlsplit(url)
    tail = "?…" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{tail}"


def source_rows(
    config: Config,
    states: dict[str, FeedState],
    held: dict[str, HeldChange],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """One row per configured source: feeds of every kind, calendar files and URLs."""
    rows: list[dict[str, Any]] = []
    every = {f.id: f.every for f in config.feeds}
    limits: dict[str, tuple[int, timedelta, str, str]] = {
        f.id: (f.alert_after, f.stale_limit, f.kind, f.url) for f in config.feeds
    }
    every_url = config.model.calendar.every
    for url in config.model.calendar.urls:
        limits[url] = (3, max(every_url * 4, timedelta(days=1)), "calendar-url", url)
        every[url] = every_url
    for source_id, (alert_after, stale, kind, url) in limits.items():
        state = states.get(source_id)
        view = HealthView(
            failures=state.failures if state else 0,
            last_ok_at=state.last_ok_at if state else None,
            first_seen_at=state.last_ok_at if state else None,
            last_error=state.last_error if state else None,
        )
        status = source_state(view, now=now, alert_after=alert_after, stale_after=stale)
        if source_id in held:
            status = "held"
        next_poll = None
        if state is not None and state.last_poll_at is not None:
            next_poll = state.last_poll_at + feed_backoff(every[source_id], view.failures)
        row: dict[str, Any] = {
            "id": source_id,
            "kind": kind,
            "url": shown_url(url),
            "state": status if state is not None else "new",
            "last_success": _at(view.last_ok_at),
            "last_failure": _at(state.last_poll_at) if state and view.failures else None,
            "failures": view.failures,
            "last_error": view.last_error if view.failures else None,
            "next_poll": _at(next_poll),
        }
        if source_id in held:
            change = held[source_id]
            row["held"] = {
                "detected_at": _at(change.detected_at),
                "would_emit": dict(change.would_emit),
                "examples": [_example(e.data, e.type) for e in change.events[:5]],
            }
        rows.append(row)
    for file, reviewed in sorted(config.calendar_reviewed.items()):
        rows.append(
            {
                "id": file,
                "kind": "calendar-file",
                "url": None,
                "state": "ok",
                "reviewed": reviewed.isoformat() if isinstance(reviewed, date) else None,
            }
        )
    return rows


def _example(data: Any, event_type: str) -> str:
    for key, label in (("entry", "title"), ("line", "htsno"), ("rule", "id")):
        value = data.get(key) if hasattr(data, "get") else None
        if isinstance(value, dict) and value.get(label):
            return f"{event_type}: {value[label]}"
    return event_type


async def _read(config: Config) -> list[dict[str, Any]]:
    store = await Store.open(config.state_url)
    try:
        states = await store.feed_states()
        held = await store.held_changes()
    finally:
        await store.close()
    return source_rows(config, states, held, now=datetime.now(UTC))


def show_sources(config: Config, args: argparse.Namespace) -> int:
    action = args.action or []
    if action:
        if action[0] not in ("release", "discard") or len(action) != 2:
            print("usage: tariff-notifier sources [release|discard SOURCE_ID]", file=sys.stderr)
            return EXIT_USAGE
        return asyncio.run(_settle(config, action[1], release=action[0] == "release"))
    rows = asyncio.run(_read(config))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{'source':<32} {'kind':<28} {'state':<8} {'last success':<21} error / next")
    for row in rows:
        if row["kind"] == "calendar-file":
            print(
                f"{row['id'][-32:]:<32} {'calendar-file':<28} {'ok':<8} reviewed {row['reviewed']}"
            )
            continue
        tail = row["last_error"] or (f"next {row['next_poll']}" if row["next_poll"] else "")
        print(
            f"{row['id'][:32]:<32} {row['kind']:<28} {row['state']:<8} "
            f"{row['last_success'] or '-':<21} {tail[:90]}"
        )
        if "held" in row:
            counts = ", ".join(f"{n} {t}" for t, n in row["held"]["would_emit"].items())
            print(f"    held since {row['held']['detected_at']}: would emit {counts}")
            for example in row["held"]["examples"]:
                print(f"      e.g. {example}")
            print(
                f"    `sources release {row['id']}` sends it; `sources discard {row['id']}` "
                "takes it as the baseline"
            )
    return EXIT_OK


async def _settle(config: Config, source_id: str, *, release: bool) -> int:
    from notifier.runtime.jobs import Jobs
    from notifier.runtime.runtime import Notifier

    async with Notifier(config, parse_in_processes=False, beside_daemon=True) as notifier:
        report = await Jobs(notifier).settle_held(source_id, release=release)
    if report is None:
        print(f"tariff-notifier: source {source_id!r} holds no change", file=sys.stderr)
        return EXIT_FAILURE
    if release:
        print(
            f"{source_id}: released {len(report.events)} events, "
            f"{report.deliveries} deliveries queued"
        )
    else:
        print(f"{source_id}: discarded; its current state is the new baseline")
    return EXIT_OK


# --- the ledger ---------------------------------------------------------------------------

LEDGER_FIELDS = (
    "at",
    "delivery_id",
    "event_id",
    "event_type",
    "subscriber_id",
    "channel",
    "target",
    "attempt",
    "outcome",
    "status",
    "detail",
    "sha256",
)


def export_ledger(config: Config, args: argparse.Namespace) -> int:
    """``deliveries export [--since DATE] [--format csv|jsonl]``: one line per attempt."""
    since = None
    if args.since:
        try:
            day = date.fromisoformat(args.since)
        except ValueError:
            print(
                f"tariff-notifier: --since: expected a date like 2026-05-03, got {args.since!r}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        since = datetime(day.year, day.month, day.day, tzinfo=config.zone)
    return asyncio.run(_export(config, since=since, fmt=args.format))


async def _export(config: Config, *, since: datetime | None, fmt: str) -> int:
    store = await Store.open(config.state_url)
    writer = csv.DictWriter(sys.stdout, fieldnames=LEDGER_FIELDS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    try:
        async for row in store.stream_ledger(since=since):
            item = {name: row.get(name) for name in LEDGER_FIELDS}
            item["at"] = _at(row["at"])
            if writer is not None:
                writer.writerow(item)
            else:
                sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    finally:
        await store.close()
    return EXIT_OK
