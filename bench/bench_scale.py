"""Benchmark 6: scale and memory.

(a) Matching: ``notifier.core.matching.SubscriberIndex`` over 1,000, 10,000 and 100,000
subscribers with mixed filters (origins, HTS prefixes, keywords, event globs, none),
queried with a mix of rule and feed-entry events: time per event, index build time and
the index's memory. (b) The daemon's peak RSS (VmHWM) with 1,000 feeds (a local server
answering 304 after the first poll) and 100,000 subscribers, running for a minute.

    python bench/bench_scale.py [--sizes 1000,10000,100000] [--run-s 60] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import subprocess
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import median, notifier_command, percentile, show, write_result
from peers import FeedServer, children_of, peak_rss_kib

from notifier.config import SubscriberSection
from notifier.core.matching import SubscriberIndex
from notifier.core.model import Event

ORIGINS = ["CN", "JP", "MX", "CA", "DE", "VN", "IN", "KR", "BR", "TW", "TH", "GB", "FR", "IT"]
HTS = ["72", "73", "76", "8708", "8703", "8541", "8542", "9403", "4407", "7403", "870829"]
WORDS = ["steel", "aluminum", "semiconductor", "lumber", "copper", "furniture", "solar"]
EVENT_GLOBS = [None, None, ["tariff.*"], ["feed.entry.new"], ["tariff.rule.effective"]]


def subscriber(index: int, rng: random.Random) -> dict[str, Any]:
    """Mixed filters: about a quarter each origins-only, HTS, keywords+origins, none."""
    spec: dict[str, Any] = {"id": f"s{index}", "email": [f"s{index}@example.com"]}
    kind = index % 4
    if kind in (0, 2):
        spec["origins"] = rng.sample(ORIGINS, rng.randint(1, 3))
    if kind == 1:
        spec["hts"] = rng.sample(HTS, rng.randint(1, 3))
    if kind == 2:
        spec["keywords"] = rng.sample(WORDS, rng.randint(1, 2))
    events = EVENT_GLOBS[index % len(EVENT_GLOBS)]
    if events:
        spec["events"] = events
    return spec


def events(rng: random.Random, count: int) -> list[Event]:
    now = datetime.now(UTC)
    out = []
    for number in range(count):
        if number % 2 == 0:  # a rule event: origins "*" half the time
            origins = ("*",) if number % 4 == 0 else tuple(rng.sample(ORIGINS, 1))
            out.append(
                Event(
                    id=f"evt_r{number}",
                    type=rng.choice(["tariff.rule.effective", "tariff.rule.announced"]),
                    timestamp=now,
                    data={},
                    origins=origins,
                    hts=(rng.choice(HTS),),
                    text=None,
                )
            )
        else:  # a feed entry with tags and text
            words = " ".join(rng.sample(WORDS, 2))
            out.append(
                Event(
                    id=f"evt_e{number}",
                    type="feed.entry.new",
                    timestamp=now,
                    data={},
                    origins=tuple(rng.sample(ORIGINS, rng.randint(0, 2))),
                    hts=tuple(rng.sample(HTS, rng.randint(0, 2))),
                    text=f"Commerce announces new duties on {words} imports " * 4,
                )
            )
    return out


def matching(size: int, *, rng: random.Random, queries: list[Event]) -> dict[str, Any]:
    subs = [
        SubscriberSection.model_validate(subscriber(i, rng)).to_subscriber() for i in range(size)
    ]
    started = time.perf_counter()
    index = SubscriberIndex(subs)
    build_s = time.perf_counter() - started
    del index
    tracemalloc.start()  # a second build, traced (tracing slows it several-fold)
    index = SubscriberIndex(subs)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    row: dict[str, Any] = {
        "subscribers": size,
        "build_s": round(build_s, 3),
        "index_mib": round(memory / 2**20, 1),
    }
    # As the daemon runs today, then with the config's objects frozen out of the cyclic
    # GC (gc.freeze() after loading): a full collection walks every subscriber object.
    for label in ("", "frozen_"):
        if label:
            gc.collect()
            gc.freeze()
        times, matched = [], []
        for event in queries:
            started = time.perf_counter()
            found = index.match(event)
            times.append(time.perf_counter() - started)
            matched.append(len(found))
        row[f"{label}match_ms_mean"] = round(1e3 * sum(times) / len(times), 3)
        row[f"{label}match_ms_p50"] = round(1e3 * percentile(times, 0.5), 3)
        row[f"{label}match_ms_p99"] = round(1e3 * percentile(times, 0.99), 3)
        row[f"{label}match_ms_max"] = round(1e3 * max(times), 3)
        row["matched_mean"] = round(sum(matched) / len(matched), 1)
    gc.unfreeze()
    return row


# --- the daemon's peak memory -------------------------------------------------------------


def daemon_config(folder: Path, *, feeds: FeedServer, feed_count: int, subs: int) -> Path:
    (folder / "calendar").mkdir(exist_ok=True)
    rng = random.Random(7)
    lines = [
        f'[notifier]\nstate = "sqlite:///{folder}/state/notifier.db"\n',
        '[calendar]\npaths = ["calendar/*.toml"]\n',
    ]
    for index in range(feed_count):
        lines.append(f'[[feed]]\nid = "f{index}"\nurl = "{feeds.url(index)}"\nevery = "30s"\n')
    for index in range(subs):
        spec = subscriber(index, rng)
        lines.append("[[subscriber]]")
        for key, value in spec.items():
            rendered = (
                "[" + ", ".join(f'"{v}"' for v in value) + "]"
                if isinstance(value, list)
                else f'"{value}"'
            )
            lines.append(f"{key} = {rendered}")
        lines.append("")
    path = folder / "notifier.toml"
    path.write_text("\n".join(lines))
    return path


def daemon_memory(*, feed_count: int, subs: int, run_s: float) -> dict[str, Any]:
    with (
        FeedServer(feeds=feed_count, per_generation=20, window=20) as fs,
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
    ):
        config = daemon_config(Path(tmp), feeds=fs, feed_count=feed_count, subs=subs)
        log_path = Path(tmp) / "daemon.log"
        log = log_path.open("w")
        started = time.perf_counter()
        daemon = subprocess.Popen(
            notifier_command("run", "-c", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        ready_s = None
        peak_children: dict[int, int] = {}
        main_peak = 0
        try:
            deadline = time.perf_counter() + run_s + 120
            while time.perf_counter() < deadline:
                if daemon.poll() is not None:
                    raise SystemExit(log_path.read_text()[-3000:])
                if ready_s is None and "running:" in log_path.read_text():
                    ready_s = time.perf_counter() - started
                    deadline = time.perf_counter() + run_s
                main_peak = max(main_peak, peak_rss_kib(daemon.pid))
                for child in children_of(daemon.pid):
                    peak_children[child] = max(peak_children.get(child, 0), peak_rss_kib(child))
                time.sleep(1.0)
            served = fs.stats()
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                stop_s = _wait(daemon, 30)
            finally:
                log.close()
    return {
        "stop_after_sigterm_s": stop_s,
        "feeds": feed_count,
        "subscribers": subs,
        "ran_s": run_s,
        "startup_s": round(ready_s or 0.0, 1),
        "feed_answers_200": served["ok"],
        "feed_answers_304": served["not_modified"],
        "main_peak_rss_mib": round(main_peak / 1024, 1),
        "children_peak_rss_mib": [round(v / 1024, 1) for v in peak_children.values()],
        "total_peak_rss_mib": round((main_peak + sum(peak_children.values())) / 1024, 1),
    }


def _wait(process: subprocess.Popen[bytes], timeout_s: float) -> float | None:
    """Seconds the process took to exit after SIGTERM; None (and killed) past the limit."""
    started = time.perf_counter()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None
    return round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--daemon-subscribers", type=int, default=100_000)
    parser.add_argument("--run-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="up to 10,000; daemon 20 s")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.run_s, args.daemon_subscribers = "1000,10000", 20.0, 10_000
    rng = random.Random(42)
    queries = events(rng, args.events)
    table = []
    for size in (int(s) for s in args.sizes.split(",")):
        table.append(matching(size, rng=rng, queries=queries))
        print(f"  {table[-1]}", flush=True)
    memory = daemon_memory(feed_count=args.feeds, subs=args.daemon_subscribers, run_s=args.run_s)
    print(f"  {memory}", flush=True)
    largest = table[-1]
    figures = {
        "events": args.events,
        "matching": table,
        "daemon": memory,
        "targets": {"match_ms_per_event_at_100k": 5.0, "daemon_peak_rss_mib": 300},
    }
    rows: list[tuple[str, Any]] = [
        (
            f"{r['subscribers']:>7,} subs: match ms mean/p99 (frozen)",
            f"{r['match_ms_mean']}/{r['match_ms_p99']} "
            f"({r['frozen_match_ms_mean']}/{r['frozen_match_ms_p99']})",
        )
        for r in table
    ]
    rows += [
        ("largest: index build (s)", largest["build_s"]),
        ("daemon start-up (s)", memory["startup_s"]),
        ("daemon main peak RSS (MiB)", memory["main_peak_rss_mib"]),
        ("daemon + pool peak RSS (MiB)", memory["total_peak_rss_mib"]),
        ("median match ms over sizes", median([r["match_ms_mean"] for r in table])),
    ]
    show("scale and memory", rows)
    write_result("scale", figures)


if __name__ == "__main__":
    main()
