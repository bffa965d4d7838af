"""Benchmark 2: one event to 10,000 webhook subscribers.

A generated config with 10,000 subscribers, each with its own webhook path and secret on
a local receiver (another process). A first calendar check takes the baseline; then a
new rule appears and its ``tariff.rule.announced`` goes to every subscriber. Timed: the
outbox drain, as deliveries per second, against a bare aiohttp client posting the same
number of signed requests at the same concurrency to the same receiver, in the same run.
A second run makes one endpoint slow (2 s per answer) and measures how long the other
9,999 take.

    python bench/bench_webhook_fanout.py [--subscribers 10000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from _common import median, new_secret, rule_toml, show, write_result
from peers import WebhookReceiver
from standardwebhooks import Webhook

from notifier.config import load_config
from notifier.runtime.jobs import Jobs
from notifier.runtime.loop import run as run_loop
from notifier.runtime.runtime import Notifier

CONCURRENCY = 50  # [delivery] concurrency, the default


def write_config(folder: Path, *, hooks: WebhookReceiver, count: int, slow: bool) -> Path:
    (folder / "calendar").mkdir(parents=True, exist_ok=True)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    (folder / "calendar" / "base.toml").write_text(rule_toml("base-rule", effective=soon))
    parts = [
        f"""[notifier]
state = "sqlite:///{folder}/state/notifier.db"

[delivery]
concurrency = {CONCURRENCY}
timeout = "15s"

[calendar]
paths = ["calendar/*.toml"]
remind = []
"""
    ]
    for index in range(count):
        path = f"/slow/{index}" if slow and index == 0 else f"/h/{index}"
        parts.append(
            f'[[subscriber]]\nid = "s{index}"\nwebhook = "{hooks.url(path)}"\n'
            f'secret = "{new_secret()}"\n'
        )
    config = folder / "notifier.toml"
    config.write_text("\n".join(parts))
    return config


async def fan_out(config_path: Path, *, hooks: WebhookReceiver, count: int) -> dict[str, Any]:
    """Baseline, then one announced rule to every subscriber; the drain is timed."""
    config = load_config(config_path)
    async with Notifier(config, parse_in_processes=False) as notifier:
        await Jobs(notifier).check_calendar()  # the silent baseline
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    (config_path.parent / "calendar" / "new.toml").write_text(rule_toml("new-rule", effective=soon))
    started = time.perf_counter()
    config = load_config(config_path)
    loaded = time.perf_counter()
    hooks.reset()
    async with Notifier(config, parse_in_processes=False) as notifier:
        report = await Jobs(notifier).check_calendar()
        planned = time.perf_counter()
        cpu = time.process_time()
        wall_start = time.time()
        drain_start = time.perf_counter()
        drained = await notifier.runtime.outbox.drain()
        drain_s = time.perf_counter() - drain_start
        drain_cpu = time.process_time() - cpu
    stats = hooks.stats()
    if stats["count"] < count:
        raise SystemExit(f"fan-out: {drained.sent} sent, {stats['count']} received, not {count}")
    return {
        "config_load_s": round(loaded - started, 3),
        "events": len(report.events),
        "plan_and_commit_s": round(planned - loaded, 3),
        "drain_s": round(drain_s, 3),
        "drain_cpu_s": round(drain_cpu, 3),
        "deliveries_per_s": round(count / drain_s, 1),
        "fast_done_after_s": round(stats["last_fast"] - wall_start, 3),
        "sent": drained.sent,
        "received": stats["count"],
        "duplicates": stats["count"] - count,
    }


async def bare_client(hooks: WebhookReceiver, *, count: int, body: bytes) -> float:
    """``count`` signed POSTs at ``CONCURRENCY`` with aiohttp; seconds taken."""
    secrets = [new_secret() for _ in range(count)]
    text = body.decode()
    gate = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int) -> None:
            async with gate:
                seconds = int(time.time())
                msg_id = f"msg_{index}"
                headers = {
                    "Content-Type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(seconds),
                    "webhook-signature": Webhook(secrets[index]).sign(
                        msg_id, datetime.fromtimestamp(seconds, UTC), text
                    ),
                }
                async with session.post(hooks.url(f"/h/{index}"), data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 204:
                        raise SystemExit(f"bare client: HTTP {r.status}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started


def sample_body() -> bytes:
    """A body of the size the system sends for an announced rule."""
    payload = {
        "type": "tariff.rule.announced",
        "timestamp": "2025-05-03T04:01:00Z",
        "data": {
            "event_id": "evt_" + "0" * 32,
            "late": False,
            "rule": {
                "id": "new-rule",
                "title": "Bench rule new-rule",
                "imposed_by": "US",
                "origins": ["*"],
                "hts": ["8708"],
                "rate": "25%",
                "effective": "2025-06-04T19:00:00+00:00",
                "ends": None,
                "basis": "Section 232",
                "source": "https://example.test/new-rule",
                "status": "scheduled",
            },
            "changes": [],
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def measure_bare(hooks: WebhookReceiver, count: int) -> float:
    hooks.reset()
    elapsed = run_loop(bare_client(hooks, count=count, body=sample_body()))
    if not hooks.wait_for(count, timeout_s=30):
        raise SystemExit("bare client: the receiver did not count every request")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="2,000 subscribers")
    args = parser.parse_args()
    count = 2_000 if args.quick else args.subscribers
    bare: list[float] = []
    runs: dict[str, dict[str, Any]] = {}
    with WebhookReceiver(slow_s=2.0) as hooks:
        bare.append(measure_bare(hooks, count))
        print(f"bare aiohttp: {bare[-1]:.0f}/s", flush=True)
        for name, slow in (("all_fast", False), ("one_slow", True)):
            with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
                config = write_config(Path(tmp), hooks=hooks, count=count, slow=slow)
                runs[name] = run_loop(fan_out(config, hooks=hooks, count=count))
            print(f"{name}: {json.dumps(runs[name])}", flush=True)
            bare.append(measure_bare(hooks, count))
            print(f"bare aiohttp: {bare[-1]:.0f}/s", flush=True)
    bare_rate = median(bare)
    ours = runs["all_fast"]["deliveries_per_s"]
    fast_base = runs["all_fast"]["fast_done_after_s"]
    slowed = runs["one_slow"]["fast_done_after_s"]
    figures = {
        "subscribers": count,
        "concurrency": CONCURRENCY,
        "body_bytes": len(sample_body()),
        "bare_rates_per_s": [round(b, 1) for b in bare],
        "bare_median_per_s": round(bare_rate, 1),
        "runs": runs,
        "ours_vs_bare": round(ours / bare_rate, 3),
        "slow_endpoint_slowdown": round(slowed / fast_base - 1, 3),
        "targets": {"ours_vs_bare": 0.7, "slow_endpoint_slowdown_max": 0.10},
    }
    show(
        f"webhook fan-out: 1 event -> {count} subscribers, concurrency {CONCURRENCY}",
        [
            ("config load (s)", runs["all_fast"]["config_load_s"]),
            ("plan + commit 1 event (s)", runs["all_fast"]["plan_and_commit_s"]),
            ("drain (s)", runs["all_fast"]["drain_s"]),
            ("ours, deliveries/s", ours),
            ("bare aiohttp, requests/s (median)", bare_rate),
            ("ours / bare (target >= 0.7)", ours / bare_rate),
            ("fast ones done, all fast (s)", fast_base),
            ("fast ones done, one slow (s)", slowed),
            ("slow-down (target <= 0.10)", slowed / fast_base - 1),
        ],
    )
    write_result("webhook_fanout", figures)


if __name__ == "__main__":
    main()
