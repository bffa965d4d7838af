"""Benchmark 1: the same job as rss2email, side by side, on two kinds of entries.

200 feeds on a local server; a silent baseline pass; then every feed gains 20 new
entries and the timed pass emails each new entry to one recipient (4,000 emails) through
a local SMTP sink. rss2email (from PyPI, in its own venv under bench/.venvs/) and
``tariff-notifier once`` run on the same feeds and the same sink, alternating, each with
fresh state; a bare aiosmtplib sender measures the sink's ceiling in the same run.

Two variants, so the benchmark does not pick the peer's worst case: ``text`` (Atom with
plain-text summaries, which rss2email mails as they are: its best case) and ``html``
(RSS 2.0 with ~600 characters of HTML per entry, which rss2email converts one by one).
The headline is the worse of the two ratios. Also measured: how long parsing the 200
changed feeds takes on its own (ours: ``parse_feed`` in one process; rss2email's:
``feedparser.parse``), the floor that parsing puts under each side's time.

    python bench/bench_rss2email.py [--feeds 200] [--new 20] [--rounds 3]
                                    [--variants text,html] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import feedparser
from _common import (
    ROOT,
    check_ok,
    feed_tables,
    median,
    notifier_command,
    run_timed,
    show,
    steal_s,
    write_result,
)
from peers import FeedServer, SmtpSink, feed_body

from notifier.runtime.loop import run as run_loop
from notifier.sources.rss import parse_feed

VENV = ROOT / "bench" / ".venvs" / "rss2email"
R2E = VENV / "bin" / "r2e"
RECIPIENT = "bench@example.com"
SENDER = "Bench Alerts <alerts@example.com>"
POOL_SIZE = 10


def ensure_rss2email() -> str:
    """Create the venv and install rss2email from PyPI on first use; its version."""
    if not R2E.exists():
        print(f"installing rss2email into {VENV.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "rss2email"], check=True)
    done = subprocess.run([str(R2E), "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip()


# --- rss2email ----------------------------------------------------------------------------


def r2e_config(folder: Path, *, feeds: FeedServer, count: int, smtp_port: int) -> Path:
    lines = [
        "[DEFAULT]",
        "from = alerts@example.com",
        f"to = {RECIPIENT}",
        "email-protocol = smtp",
        f"smtp-server = 127.0.0.1:{smtp_port}",
        "smtp-auth = False",
        "smtp-ssl = False",
        "trust-guid = True",
        "html-mail = False",
        "same-server-fetch-interval = 0",
        "",
    ]
    for index in range(count):
        lines += [f"[feed.f{index}]", f"url = {feeds.url(index)}", ""]
    path = folder / "rss2email.cfg"
    path.write_text("\n".join(lines))
    return path


def run_rss2email(folder: Path, *, feeds: FeedServer, smtp: SmtpSink, count: int) -> dict:
    config = r2e_config(folder, feeds=feeds, count=count, smtp_port=smtp.port)
    base = [str(R2E), "-c", str(config), "-d", str(folder / "rss2email.json")]
    feeds.set(generation=0)
    check_ok(run_timed([*base, "run", "--no-send"]), "r2e baseline")
    feeds.set(generation=1)
    smtp.reset()
    result = run_timed([*base, "run"])
    check_ok(result, "r2e run")
    return result


# --- tariff-notifier ----------------------------------------------------------------------


def our_config(folder: Path, *, feeds: FeedServer, count: int, smtp_port: int) -> Path:
    (folder / "calendar").mkdir(exist_ok=True)
    (folder / "calendar" / "none.toml").write_text("# no rules: this job is feeds only\n")
    parts = [
        f"""[notifier]
state = "sqlite:///{folder}/state/notifier.db"
timezone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "{SENDER}"
pool_size = {POOL_SIZE}

[calendar]
paths = ["calendar/*.toml"]

[[subscriber]]
id = "reader"
email = ["{RECIPIENT}"]
events = ["feed.entry.new"]
"""
    ]
    parts += feed_tables(feeds, count)
    path = folder / "notifier.toml"
    path.write_text("\n".join(parts))
    return path


def run_ours(folder: Path, *, feeds: FeedServer, smtp: SmtpSink, count: int) -> dict:
    config = our_config(folder, feeds=feeds, count=count, smtp_port=smtp.port)
    command = notifier_command("once", "-c", str(config))
    feeds.set(generation=0)
    check_ok(run_timed(command), "tariff-notifier baseline")
    feeds.set(generation=1)
    smtp.reset()
    result = run_timed(command)
    check_ok(result, "tariff-notifier once")
    return result


# --- the ceiling: a bare aiosmtplib sender -----------------------------------------------


def sample_message() -> bytes:
    """One of the emails the timed pass sends, built the way the system builds it."""
    from peers import entry_html

    from notifier.core.model import EmailMessage, Event
    from notifier.delivery.channels.email import build_mime
    from notifier.delivery.render import Renderer

    renderer = Renderer(override_dir=None, timezone=UTC_ZONE())
    event = Event(
        id="evt_sample",
        type="feed.entry.new",
        timestamp=datetime.now(UTC),
        data={
            "feed": "f1",
            "feed_title": None,
            "entry": {
                "id": "bench-1-20",
                "title": "Notice 1-20: new duty on steel from Japan",
                "link": "https://feeds.example.test/1/20",
                "published": "2025-04-19T10:00:00Z",
                "summary": entry_html(1, 20),
            },
            "tags": {"origins": ["JP"], "hts": ["72"], "rates": ["25%"], "dates": []},
            "changes": [],
        },
        origins=("JP",),
        hts=("72",),
        text="sample",
    )
    rendered = renderer.render_email(event, subscriber_id="reader", unsubscribe_url=None)
    message = EmailMessage(
        message_id="<sample@example.com>",
        recipient=RECIPIENT,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers={},
    )
    return build_mime(message, sender=SENDER)


def UTC_ZONE() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")


async def bare_send(port: int, *, total: int, connections: int, payload: bytes) -> float:
    """``total`` messages over ``connections`` reused connections; seconds taken."""
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.local")
        for _ in range(connections)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    remaining = [total]

    async def worker(client: aiosmtplib.SMTP) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await client.sendmail("alerts@example.com", [RECIPIENT], payload)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(c.quit() for c in clients))
    return elapsed


def measure_bare(smtp: SmtpSink, *, total: int, payload: bytes) -> float:
    smtp.reset()
    elapsed = run_loop(bare_send(smtp.port, total=total, connections=POOL_SIZE, payload=payload))
    if not smtp.wait_for(total, timeout_s=30):
        raise SystemExit("bare sender: the sink did not receive every message")
    return total / elapsed


# --- main ---------------------------------------------------------------------------------


def sink_rate(smtp: SmtpSink, emails: int) -> float:
    first, last = smtp.window()
    return emails / (last - first) if last > first else 0.0


def one_round(
    work: Path, *, fs: FeedServer, smtp: SmtpSink, args: Any, emails: int, first: int = 0
) -> dict:
    """One run of each, in the given order (``first`` 1: ours first), fresh state."""
    row: dict[str, Any] = {}
    sides = [("rss2email", run_rss2email), ("ours", run_ours)]
    for name, runner in sides[first:] + sides[:first]:
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        stolen = steal_s()
        try:
            result = runner(folder, feeds=fs, smtp=smtp, count=args.feeds)
            if not smtp.wait_for(emails, timeout_s=30) or smtp.count() != emails:
                raise SystemExit(f"{name}: the sink got {smtp.count()} emails, not {emails}")
        except SystemExit as exc:  # recorded, so the other figures of the run survive
            row[name] = {"error": " ".join(str(exc).split())[-300:]}
            print(f"  {name}: FAILED {row[name]['error']}", flush=True)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        row[name] = {
            "wall_s": round(result["wall_s"], 3),
            "cpu_s": round(result["cpu_s"], 3),
            "sink_rate_per_s": round(sink_rate(smtp, emails), 1),
            # CPU time the host took from this machine during the round (both cores).
            "steal_s": round(steal_s() - stolen, 2),
        }
        print(
            f"  {name}: {result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU, "
            f"{row[name]['steal_s']:.2f} s stolen",
            flush=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
    return row


def parse_floor(args: Any, flavour: str, *, repeat: int = 3) -> dict[str, float]:
    """Seconds to parse the timed pass's 200 feed bodies in one process (median of
    ``repeat``): ours (``parse_feed``) and rss2email's (``feedparser.parse``)."""
    bodies = [
        feed_body(f, generation=1, per_generation=args.new, window=2 * args.new, flavour=flavour)
        for f in range(args.feeds)
    ]
    kind = "application/atom+xml" if flavour == "text" else "application/rss+xml"

    def timed(parse: Any) -> float:
        runs = []
        for _ in range(repeat):
            started = time.process_time()
            for body in bodies:
                parse(body)
            runs.append(time.process_time() - started)
        return median(runs)

    return {
        "ours_parse_s": round(timed(lambda b: parse_feed(b, content_type=kind)), 3),
        "feedparser_parse_s": round(timed(feedparser.parse), 3),
    }


def summarise(
    rounds: list[dict[str, Any]], *, emails: int, args: Any, flavour: str
) -> dict[str, Any]:
    """Medians over the rounds that worked; a failed side leaves its ratios empty."""

    def ok(name: str, key: str) -> list[float]:
        return [r[name][key] for r in rounds if "error" not in r[name]]

    r2e_s, ours_s = median(ok("rss2email", "wall_s")), median(ok("ours", "wall_s"))
    bare = median([r["bare_rate_per_s"] for r in rounds])
    ours_rate = emails / ours_s if ours_s else None
    floor = parse_floor(args, flavour)
    figures: dict[str, Any] = {
        "variant": flavour,
        "rounds": rounds,
        "failures": [
            r[n]["error"] for r in rounds for n in ("rss2email", "ours") if "error" in r[n]
        ],
        "rss2email_median_s": round(r2e_s, 3) if r2e_s else None,
        "ours_median_s": round(ours_s, 3) if ours_s else None,
        "speedup_vs_rss2email": round(r2e_s / ours_s, 2) if r2e_s and ours_s else None,
        "ours_pass_rate_per_s": round(ours_rate, 1) if ours_rate else None,
        "bare_aiosmtplib_rate_per_s": round(bare, 1),
        "pass_rate_vs_bare": round(ours_rate / bare, 3) if ours_rate else None,
        **floor,
        "ours_parse_share_of_wall": round(floor["ours_parse_s"] / ours_s, 3) if ours_s else None,
        "rss2email_parse_share_of_wall": (
            round(floor["feedparser_parse_s"] / r2e_s, 3) if r2e_s else None
        ),
    }
    show(
        f"{flavour} entries: rss2email vs tariff-notifier once, {emails} emails",
        [
            ("rss2email timed pass (median s)", figures["rss2email_median_s"]),
            ("tariff-notifier once (median s)", figures["ours_median_s"]),
            ("speed-up (target >= 3)", figures["speedup_vs_rss2email"]),
            ("ours, emails/s over the pass", figures["ours_pass_rate_per_s"]),
            ("bare aiosmtplib emails/s", bare),
            ("parse, ours in one process (s)", floor["ours_parse_s"]),
            ("parse, feedparser.parse (s)", floor["feedparser_parse_s"]),
            ("failed runs", len(figures["failures"])),
        ],
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--new", type=int, default=20, help="new entries per feed")
    parser.add_argument("--rounds", type=int, default=3, help="r2e/ours pairs, alternating")
    parser.add_argument("--variants", default="text,html", help="text, html or both")
    parser.add_argument("--quick", action="store_true", help="50 feeds, one round")
    args = parser.parse_args()
    if args.quick:
        args.feeds, args.rounds = 50, 1
    version = ensure_rss2email()
    emails = args.feeds * args.new
    payload = sample_message()
    variants: dict[str, dict[str, Any]] = {}
    with SmtpSink() as smtp, tempfile.TemporaryDirectory(prefix="bench-r2e-") as tmp:
        for flavour in [v for v in args.variants.split(",") if v]:
            rounds: list[dict[str, Any]] = []
            with FeedServer(
                feeds=args.feeds, per_generation=args.new, window=2 * args.new, flavour=flavour
            ) as fs:
                for number in range(args.rounds):
                    print(f"{flavour}: round {number + 1}/{args.rounds}", flush=True)
                    row = one_round(
                        Path(tmp), fs=fs, smtp=smtp, args=args, emails=emails, first=number % 2
                    )
                    row["bare_rate_per_s"] = round(
                        measure_bare(smtp, total=emails, payload=payload), 1
                    )
                    print(f"  bare aiosmtplib: {row['bare_rate_per_s']:.0f} emails/s", flush=True)
                    rounds.append(row)
            variants[flavour] = summarise(rounds, emails=emails, args=args, flavour=flavour)
    ratios = [v["speedup_vs_rss2email"] for v in variants.values()]
    worst = min((r for r in ratios if r is not None), default=None)
    write_result(
        "rss2email",
        {
            "feeds": args.feeds,
            "new_entries_per_feed": args.new,
            "emails": emails,
            "smtp_pool_size": POOL_SIZE,
            "message_bytes": len(payload),
            "rss2email_version": version,
            "variants": variants,
            "speedup_vs_rss2email": worst,
            "failures": [f for v in variants.values() for f in v["failures"]],
            "targets": {"speedup_vs_rss2email_each_variant": 3.0},
        },
    )


if __name__ == "__main__":
    main()
