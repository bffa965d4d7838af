"""Benchmark: fan-out from the instant a rule takes effect, against bare senders.

``tariff-notifier run`` is started and left idle on a config with N subscribers (each its
own email address, or its own webhook path and ``whsec_`` secret) and one rule whose
``effective`` instant T lies a little in the future. Timed: from T to the N-th arrival
at the sink (the SMTP sink and the webhook receiver each run in a process of their own
and note arrival times). In the same run, alternating with ours, a bare sender does the
same N sends to the same sink:

- email: aiosmtplib, 10 reused connections, one prebuilt message of the size ours sends
  (~10 KB) with only the recipient changed (``RCPT TO`` and the ``To`` header);
- webhook: aiohttp, 50 requests in flight, each signed with ``standardwebhooks``.

Also recorded: the daemon's peak RSS (VmHWM) over the run.

    python bench/bench_fanout.py [--sizes 5000,50000] [--channels email,webhook]
                                 [--rounds 2] [--quick] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from _common import ROOT, median, new_secret, notifier_command, show, steal_s, write_result
from peers import SmtpSink, WebhookReceiver, peak_rss_kib
from standardwebhooks import Webhook

from notifier.runtime.loop import run as run_loop

SENDER = "Tariff Alerts <alerts@example.com>"
SMTP_POOL = 10
CONCURRENCY = 50
#: How long before T the daemon must be up and idle (it reports "running:").
IDLE_BEFORE_T_S = 2.0


def lead_time_s(count: int) -> float:
    """T's distance from the start: loading and indexing N subscribers, then idle."""
    return 10.0 + count / 3_000


def address(index: int) -> str:
    return f"user{index}@subscribers.example.com"


def write_config(folder: Path, *, channel: str, count: int, port: int, at: datetime) -> Path:
    (folder / "calendar").mkdir(parents=True, exist_ok=True)
    (folder / "calendar" / "rules.toml").write_text(
        '[[rule]]\nid = "fanout-rule"\ntitle = "Section 232 duties on auto parts"\n'
        'imposed_by = "US"\norigins = ["*"]\nhts = ["8708"]\nrate = "25%"\n'
        f"effective = {at.isoformat()}\n"
        'basis = "Section 232"\nsource = "https://example.test/fanout-rule"\n'
    )
    parts = [
        f"""[notifier]
state = "sqlite:///{folder}/state/notifier.db"
timezone = "America/New_York"
public_url = "https://alerts.example.com"

[delivery]
concurrency = {CONCURRENCY}
timeout = "15s"

[calendar]
paths = ["calendar/*.toml"]
remind = []
"""
    ]
    if channel == "email":
        parts.append(
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            f'sender = "{SENDER}"\npool_size = {SMTP_POOL}\n'
        )
    for index in range(count):
        if channel == "email":
            target = f'email = ["{address(index)}"]'
        else:
            target = f'webhook = "http://127.0.0.1:{port}/h/{index}"\nsecret = "{new_secret()}"'
        parts.append(
            f'[[subscriber]]\nid = "s{index}"\n{target}\nevents = ["tariff.rule.effective"]\n'
        )
    config = folder / "notifier.toml"
    config.write_text("\n".join(parts))
    return config


def _arrived(sink: Any, channel: str) -> tuple[int, float, float]:
    """(count, time of the first arrival, time of the last) at the sink."""
    if channel == "email":
        first, last = sink.window()
        return sink.count(), first, last
    stats = sink.stats()
    return int(stats["count"]), float(stats["first"]), float(stats["last"])


def run_ours(
    work: Path, *, channel: str, count: int, sink: Any, profile: Path | None
) -> dict[str, Any]:
    """One `run` from start to the N-th arrival after T; SIGTERM; figures."""
    folder = Path(tempfile.mkdtemp(prefix=f"fanout-{channel}-", dir=work))
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead_time_s(count) + 1)
    config = write_config(folder, channel=channel, count=count, port=sink.port, at=at)
    sink.reset()
    log_path = folder / "daemon.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            notifier_command("run", "-c", str(config)), stdout=log, stderr=log, env=env
        )
    spy = None
    try:
        while "running:" not in log_path.read_text():
            if proc.poll() is not None:
                raise SystemExit(f"run exited at start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        idle_s = at.timestamp() - time.time()
        if idle_s < IDLE_BEFORE_T_S:
            raise SystemExit(f"run was up only {idle_s:.1f} s before T; raise lead_time_s")
        if profile is not None:
            out = profile / f"{channel}-{count}.txt"  # collapsed stacks (flamegraph.pl input)
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--nonblocking",
                    "-p",
                    str(proc.pid),
                    "-o",
                    str(out),
                    "-f",
                    "raw",
                    "-r",
                    "250",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        rss_idle = peak_rss_kib(proc.pid)
        deadline = at.timestamp() + 60 + count / 200
        cpu_at_t: float | None = None
        steal_at_t = 0.0
        threads_at_t: dict[str, float] = {}
        while True:
            got, _, last = _arrived(sink, channel)
            if cpu_at_t is None and time.time() >= at.timestamp():
                cpu_at_t = _cpu_s(proc.pid)
                threads_at_t = _thread_cpu_s(proc.pid)
                steal_at_t = steal_s()
            if got >= count:
                break
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"{channel} x {count}: {got} arrived before the deadline")
            time.sleep(0.02)
        cpu = _cpu_s(proc.pid) - (cpu_at_t or 0.0)
        stolen = steal_s() - steal_at_t
        threads = {
            name: round(spent - threads_at_t.get(name, 0.0), 2)
            for name, spent in _thread_cpu_s(proc.pid).items()
            if spent - threads_at_t.get(name, 0.0) >= 0.01
        }
        peak = peak_rss_kib(proc.pid)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    time.sleep(0.3)
    got, first, last = _arrived(sink, channel)
    elapsed = last - at.timestamp()
    return {
        "seconds_from_t": round(elapsed, 3),
        "first_arrival_after_t_s": round(first - at.timestamp(), 3),
        "per_s": round(count / elapsed, 1),
        "cpu_s": round(cpu, 2),
        # By thread (name and id): the main one runs the event loop, aiosqlite's runs
        # SQLite (its C work releases the GIL, so a --gil profile does not show it).
        "cpu_s_by_thread": threads,
        # CPU time the host took from this machine from T to the N-th arrival.
        "steal_s": round(stolen, 2),
        "arrived": got,
        "duplicates": got - count,
        "peak_rss_mib": round(peak / 1024, 1),
        "idle_rss_mib": round(rss_idle / 1024, 1),
    }


def _thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds so far of each of ``pid``'s threads, keyed ``name/tid``."""
    spent: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return spent
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                head, _, rest = handle.read().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        name = head.partition("(")[2]
        spent[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- bare senders ------------------------------------------------------------------------


def sample_email() -> bytes:
    """A message the fan-out sends, built by the system itself (~10 KB)."""
    from zoneinfo import ZoneInfo

    from notifier.core.model import EmailMessage, Event
    from notifier.delivery.channels.mime import build_mime, message_id_for, unsubscribe_headers
    from notifier.delivery.render import Renderer

    rule = {
        "id": "fanout-rule",
        "title": "Section 232 duties on auto parts",
        "imposed_by": "US",
        "origins": ["*"],
        "hts": ["8708"],
        "rate": "25%",
        "effective": "2025-06-04T04:01:00+00:00",
        "ends": None,
        "basis": "Section 232",
        "source": "https://example.test/fanout-rule",
        "status": "scheduled",
    }
    event = Event(
        id="evt_" + "0" * 32,
        type="tariff.rule.effective",
        timestamp=datetime(2025, 6, 4, 4, 1, tzinfo=UTC),
        data={"late": False, "rule": rule, "changes": [], "transition_at": rule["effective"]},
        origins=("*",),
        hts=("8708",),
    )
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/New_York"))
    url = "https://alerts.example.com/unsubscribe/s0/" + "0" * 32
    rendered = renderer.render_email(event, subscriber_id="s0", unsubscribe_url=url)
    message = EmailMessage(
        message_id=message_id_for("dlv_" + "0" * 32, sender=SENDER),
        recipient=address(0),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers=unsubscribe_headers(url),
    )
    return build_mime(message, sender=SENDER)


async def bare_email(port: int, *, count: int, payload: bytes) -> float:
    """``count`` sends over ``SMTP_POOL`` reused connections; only the recipient changes."""
    marker = f"To: {address(0)}\r\n".encode()
    head, found, tail = payload.partition(marker)
    assert found, "the sample message has no To header to change"
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.local")
        for _ in range(SMTP_POOL)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    remaining = iter(range(count))

    async def worker(client: aiosmtplib.SMTP) -> None:
        for index in remaining:
            rcpt = address(index)
            message = b"".join((head, b"To: ", rcpt.encode(), b"\r\n", tail))
            await client.sendmail("alerts@example.com", [rcpt], message)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(c.quit() for c in clients))
    return elapsed


def sample_body() -> bytes:
    """A body of the size the system sends for the rule (the contract's shape)."""
    payload = {
        "type": "tariff.rule.effective",
        "timestamp": "2025-06-04T04:01:00Z",
        "data": {
            "event_id": "evt_" + "0" * 32,
            "late": False,
            "rule": {
                "id": "fanout-rule",
                "title": "Section 232 duties on auto parts",
                "imposed_by": "US",
                "origins": ["*"],
                "hts": ["8708"],
                "rate": "25%",
                "effective": "2025-06-04T04:01:00+00:00",
                "ends": None,
                "basis": "Section 232",
                "source": "https://example.test/fanout-rule",
                "status": "scheduled",
            },
            "changes": [],
            "transition_at": "2025-06-04T04:01:00+00:00",
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


async def bare_webhook(port: int, *, count: int, body: bytes) -> float:
    """``count`` POSTs, ``CONCURRENCY`` in flight, each signed with standardwebhooks."""
    secrets = [new_secret() for _ in range(count)]
    text = body.decode()
    remaining = iter(range(count))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for index in remaining:
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
                url = f"http://127.0.0.1:{port}/h/{index}"
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 204:
                        raise SystemExit(f"bare client: HTTP {response.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - started


def run_bare(*, channel: str, count: int, sink: Any) -> dict[str, Any]:
    """The bare sender, on the same event loop as ours (``notifier.runtime.loop``)."""
    sink.reset()
    cpu, stolen = time.process_time(), steal_s()
    if channel == "email":
        elapsed = run_loop(bare_email(sink.port, count=count, payload=sample_email()))
    else:
        elapsed = run_loop(bare_webhook(sink.port, count=count, body=sample_body()))
    cpu = time.process_time() - cpu
    if not sink.wait_for(count, timeout_s=60):
        raise SystemExit(f"bare {channel}: the sink did not count {count} arrivals")
    return {
        "seconds": round(elapsed, 3),
        "per_s": round(count / elapsed, 1),
        "cpu_s": round(cpu, 2),
        "steal_s": round(steal_s() - stolen, 2),  # the host's share of the round
    }


# --- main --------------------------------------------------------------------------------


def measure(
    channel: str, count: int, *, rounds: int, sink: Any, work: Path, profile: Path | None
) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for number in range(rounds):
        # Alternate which goes first, so drift in the machine's load favours neither.
        order = ("ours", "bare") if number % 2 == 0 else ("bare", "ours")
        for side in order:
            if side == "ours":
                ours.append(
                    run_ours(
                        work,
                        channel=channel,
                        count=count,
                        sink=sink,
                        profile=profile if number == 0 else None,
                    )
                )
                print(f"  {channel} x {count} ours: {json.dumps(ours[-1])}", flush=True)
            else:
                bare.append(run_bare(channel=channel, count=count, sink=sink))
                print(f"  {channel} x {count} bare: {json.dumps(bare[-1])}", flush=True)
    ours_rate = median([r["per_s"] for r in ours])
    bare_rate = median([r["per_s"] for r in bare])
    return {
        "channel": channel,
        "subscribers": count,
        "rounds": rounds,
        "ours": ours,
        "bare": bare,
        "ours_per_s": round(ours_rate, 1),
        "ours_seconds_from_t": median([r["seconds_from_t"] for r in ours]),
        "bare_per_s": round(bare_rate, 1),
        "ratio": round(ours_rate / bare_rate, 3),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in ours),
        "duplicates": sum(r["duplicates"] for r in ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,50000")
    parser.add_argument("--channels", default="email,webhook")
    parser.add_argument("--rounds", type=int, default=3, help="rounds at the smallest size")
    parser.add_argument("--large-rounds", type=int, default=1, help="rounds at larger sizes")
    parser.add_argument("--quick", action="store_true", help="5,000 only, one round")
    parser.add_argument("--profile", type=Path, help="py-spy flame graphs of the first rounds")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.quick:
        sizes, args.rounds = [5_000], 1
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    channels = [c for c in args.channels.split(",") if c]
    results: list[dict[str, Any]] = []
    with (
        SmtpSink() as smtp,
        WebhookReceiver() as hooks,
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp,
    ):
        for count in sizes:
            for channel in channels:
                rounds = args.rounds if count == min(sizes) else args.large_rounds
                sink = smtp if channel == "email" else hooks
                results.append(
                    measure(
                        channel,
                        count,
                        rounds=rounds,
                        sink=sink,
                        work=Path(tmp),
                        profile=args.profile,
                    )
                )
    rows = []
    for r in results:
        rows += [
            (f"{r['channel']} x {r['subscribers']:,}: ours /s", r["ours_per_s"]),
            (f"{r['channel']} x {r['subscribers']:,}: bare /s", r["bare_per_s"]),
            (f"{r['channel']} x {r['subscribers']:,}: ratio (target 0.7)", r["ratio"]),
            (f"{r['channel']} x {r['subscribers']:,}: peak RSS MiB", r["peak_rss_mib"]),
        ]
    show("fan-out from the instant: ours vs bare senders, same sinks, same run", rows)
    write_result(
        "fanout",
        {
            "smtp_pool": SMTP_POOL,
            "concurrency": CONCURRENCY,
            "email_bytes": len(sample_email()),
            "webhook_body_bytes": len(sample_body()),
            "results": results,
            "targets": {"ratio_at_5000": 0.7},
            "git_head": _git_head(),
        },
    )


def _git_head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
