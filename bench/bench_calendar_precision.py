"""Benchmark 5: calendar precision of ``tariff-notifier run``.

200 rules take effect within the next minute (half of them at the same instant, the
rest spread over the minute); one subscriber has a webhook for
``tariff.rule.effective`` on a local receiver (another process) that notes each
arrival time. Delay = arrival - the rule's effective instant; p50, p99 and max.

    python bench/bench_calendar_precision.py [--rules 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import new_secret, notifier_command, percentile, rule_toml, show, write_result
from peers import WebhookReceiver

LEAD_S = 20  # the daemon starts well before the first instant


def instants(count: int, *, start: datetime, span_s: int) -> list[datetime]:
    """Half at one instant (like many rules at 00:01), the rest one per step."""
    burst = count // 2
    rest = count - burst
    at = [start + timedelta(seconds=span_s // 3)] * burst
    at += [start + timedelta(seconds=span_s * i // max(rest, 1)) for i in range(rest)]
    return at


def write_config(folder: Path, *, hooks: WebhookReceiver, effective: list[datetime]) -> Path:
    (folder / "calendar").mkdir(parents=True, exist_ok=True)
    rules = "".join(rule_toml(f"r{i}", effective=at) for i, at in enumerate(effective))
    (folder / "calendar" / "rules.toml").write_text(rules)
    config = folder / "notifier.toml"
    config.write_text(
        f"""[notifier]
state = "sqlite:///{folder}/state/notifier.db"

[calendar]
paths = ["calendar/*.toml"]
remind = []

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/cal")}"
secret = "{new_secret()}"
events = ["tariff.rule.effective"]
"""
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--span", type=int, default=40, help="seconds the instants span")
    parser.add_argument("--quick", action="store_true", help="50 rules over 15 s")
    args = parser.parse_args()
    if args.quick:
        args.rules, args.span = 50, 15
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD_S)
    effective = instants(args.rules, start=start, span_s=args.span)
    by_rule = {f"r{i}": at.timestamp() for i, at in enumerate(effective)}
    with WebhookReceiver(keep_bodies=True) as hooks, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), hooks=hooks, effective=effective)
        log = (Path(tmp) / "daemon.log").open("w")
        daemon = subprocess.Popen(
            notifier_command("run", "-c", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = max(by_rule.values()) + 30
            while hooks.stats()["count"] < args.rules and time.time() < deadline:
                if daemon.poll() is not None:
                    raise SystemExit((Path(tmp) / "daemon.log").read_text()[-3000:])
                time.sleep(0.5)
            arrivals = hooks.arrivals()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            log.close()
    delay_of = {}
    for arrived_at, _path, body in arrivals:
        rule_id = json.loads(body)["data"]["rule"]["id"]
        delay_of[rule_id] = arrived_at - by_rule[rule_id]
    delays = list(delay_of.values())
    burst = [delay_of[f"r{i}"] for i in range(args.rules // 2) if f"r{i}" in delay_of]
    if len(delays) != args.rules:
        raise SystemExit(f"{len(delays)} of {args.rules} webhooks arrived")
    figures = {
        "rules": args.rules,
        "burst_at_one_instant": args.rules // 2,
        "span_s": args.span,
        "delay_s": {
            "min": round(min(delays), 3),
            "p50": round(percentile(delays, 0.50), 3),
            "p99": round(percentile(delays, 0.99), 3),
            "max": round(max(delays), 3),
        },
        "burst_delay_s": {
            "p50": round(percentile(burst, 0.50), 3),
            "max": round(max(burst), 3),
        },
        "targets": {"p99_s": 1.0},
    }
    d = figures["delay_s"]
    show(
        f"calendar precision: {args.rules} transitions within a minute",
        [("delay p50 (s)", d["p50"]), ("delay p99 (s, target < 1)", d["p99"]),
         ("delay max (s)", d["max"]), ("delay min (s)", d["min"])],
    )  # fmt: skip
    write_result("calendar_precision", figures)


if __name__ == "__main__":
    main()
