"""Benchmark 4: parsing, the costly stage, against bare ``feedparser.parse``.

The same feed bodies (RSS 2.0, entries with HTML descriptions of ~600 characters) are
parsed, alternating, by: bare ``feedparser.parse`` with its defaults (HTML sanitizer on);
bare ``feedparser.parse`` without the sanitizer; ``notifier.sources.rss.parse_feed`` in one
process; and ``parse_feed`` through the pool the daemon uses (``notifier.sources.pool.ParsePool``,
one worker per core, fed from the event loop). Entries per second, medians over the rounds.

    python bench/bench_parse.py [--feeds 40] [--entries 50] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
from collections.abc import Callable
from typing import Any

import feedparser  # type: ignore[import-untyped]
from _common import median, show, write_result
from peers import feed_body

from notifier.sources.pool import ParsePool
from notifier.sources.rss import parse_feed


def bare(body: bytes, *, sanitize: bool) -> int:
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": "application/rss+xml"},
        sanitize_html=sanitize,
    )
    return len(parsed.entries)


def ours(body: bytes) -> int:
    return len(parse_feed(body, content_type="application/rss+xml").entries)


def timed(run: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    entries = run()
    return entries, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=40)
    parser.add_argument("--entries", type=int, default=50, help="entries per feed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 feeds, one round")
    args = parser.parse_args()
    if args.quick:
        args.feeds, args.rounds = 20, 1
    bodies = [
        feed_body(f, generation=0, per_generation=args.entries, window=args.entries)
        for f in range(args.feeds)
    ]
    pool = ParsePool()

    async def through_pool() -> int:
        results = await asyncio.gather(*(pool.run(ours, b, timeout_s=60) for b in bodies))
        return sum(results)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(pool.run(ours, bodies[0], timeout_s=60))  # start the workers
    variants: dict[str, Callable[[], int]] = {
        "feedparser_default": lambda: sum(bare(b, sanitize=True) for b in bodies),
        "feedparser_no_sanitizer": lambda: sum(bare(b, sanitize=False) for b in bodies),
        "parse_feed_1_process": lambda: sum(ours(b) for b in bodies),
        "parse_feed_pool": lambda: loop.run_until_complete(through_pool()),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for number in range(args.rounds):
            for name, run in variants.items():
                entries, seconds = timed(run)
                if entries != args.feeds * args.entries:
                    raise SystemExit(f"{name} parsed {entries} entries")
                rates[name].append(entries / seconds)
            print(
                f"round {number + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items())
            )
    finally:
        pool.shutdown()
        loop.close()
    medians = {name: round(median(values), 1) for name, values in rates.items()}
    base = medians["feedparser_default"]
    figures: dict[str, Any] = {
        "feeds": args.feeds,
        "entries_per_feed": args.entries,
        "mean_body_bytes": sum(map(len, bodies)) // len(bodies),
        "workers": os.cpu_count(),
        "entries_per_s": medians,
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "vs_bare_feedparser": {k: round(v / base, 2) for k, v in medians.items()},
    }
    show(
        f"parsing: {args.feeds} feeds x {args.entries} entries, entries/s (median)",
        [(k, v) for k, v in medians.items()]
        + [("pool / bare feedparser", medians["parse_feed_pool"] / base)],
    )
    write_result("parse", figures)


if __name__ == "__main__":
    main()
