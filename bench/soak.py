"""Soak: `tariff-notifier run` for a while; does its memory grow?

Churn (the default): local feeds polled every 2 s, a new entry in one of them every second
(``--rate``), a webhook and an email (Maildir) subscriber for every event, and a calendar
transition every 20 s. ``--shipped``: the shipped config and calendar as they are (their
real feeds fail here, with no internet), only the health port moved to a free one, and
/healthz and /metrics asked every 10 s.

The daemon's RSS (VmRSS) and its parse workers' are sampled every 10 s; the figure that
matters is the growth over the second half of the run, after caches and pools have warmed
up. ``--probe`` runs the daemon under bench/memprobe.py, which also says where its memory
is (Python, SQLite, malloc arenas) once a minute.

    python bench/soak.py --minutes 10
    python bench/soak.py --minutes 120 --feeds 20 --probe --name soak
    python bench/soak.py --minutes 120 --shipped --name soak-shipped
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
from aiohttp import web

RESULTS = Path(__file__).resolve().parent / "results"
SHIPPED = Path(__file__).resolve().parent.parent / "config"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def workers_rss_kb(pid: int) -> int:
    """The daemon's parse workers (its child processes)."""
    total = 0
    for child in Path(f"/proc/{pid}/task").iterdir():
        children = Path(f"/proc/{pid}/task/{child.name}/children")
        if children.exists():
            for cpid in children.read_text().split():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += rss_kb(int(cpid))
    return total


class Peers:
    def __init__(self, feeds: int) -> None:
        self.items: dict[int, list[tuple[str, str, datetime]]] = {i: [] for i in range(feeds)}
        self.received = 0
        self.port = 0

    async def feed(self, request: web.Request) -> web.Response:
        index = int(request.match_info["n"])
        items = "".join(
            f"<item><title>{title}</title><link>https://example.test/{guid}</link>"
            f"<guid>{guid}</guid><pubDate>{format_datetime(at)}</pubDate>"
            f"<description>Tariff notice about steel from Japan.</description></item>"
            for guid, title, at in self.items[index][-30:]
        )
        body = (
            '<?xml version="1.0"?><rss version="2.0"><channel>'
            f"<title>f{index}</title>{items}</channel></rss>"
        )
        return web.Response(body=body.encode(), content_type="application/rss+xml")

    async def hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.received += 1
        return web.Response(status=204)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/f/{n}", self.feed)
        app.router.add_post("/hook", self.hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner


def rules(start: datetime, count: int, every_s: int) -> str:
    out = []
    for i in range(count):
        at = start + timedelta(seconds=every_s * (i + 1))
        out.append(
            f'[[rule]]\nid = "soak-{i}"\ntitle = "Soak rule {i}"\norigins = ["JP"]\n'
            f'hts = ["8708"]\nrate = "25%"\neffective = {at.isoformat(timespec="seconds")}\n'
        )
    return "\n".join(out)


def write_churn(
    workdir: Path, peers: Peers, duration_s: float, state: str = "sqlite:///state/n.db"
) -> str | None:
    (workdir / "calendar").mkdir()
    (workdir / "calendar" / "rules.toml").write_text(
        rules(datetime.now(UTC) + timedelta(seconds=20), int(duration_s // 20) + 1, 20)
    )
    feed_tables = "".join(
        f'[[feed]]\nid = "f{i}"\nurl = "http://127.0.0.1:{peers.port}/f/{i}"\nevery = "2s"\n\n'
        for i in range(len(peers.items))
    )
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    (workdir / "notifier.toml").write_text(
        f'[notifier]\nstate = "{state}"\n\n[delivery]\ntimeout = "5s"\n\n'
        f"{feed_tables}"
        f'[[subscriber]]\nid = "hook"\nwebhook = "http://127.0.0.1:{peers.port}/hook"\n'
        f'secret = "{secret}"\n\n[[subscriber]]\nid = "mail"\nemail = ["desk@example.com"]\n'
    )
    return None


def write_shipped(workdir: Path) -> str:
    """The shipped config folder, with its health server on a free port."""
    shutil.copytree(SHIPPED, workdir, dirs_exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = workdir / "notifier.toml"
    text = config.read_text()
    assert 'health = "127.0.0.1:8787"' in text
    config.write_text(text.replace('health = "127.0.0.1:8787"', f'health = "127.0.0.1:{port}"'))
    return f"http://127.0.0.1:{port}"


async def ask_health(session: aiohttp.ClientSession, base: str) -> int:
    """1 when /healthz and /metrics both answered (the daemon may still be starting)."""
    try:
        async with session.get(f"{base}/healthz") as health, session.get(f"{base}/metrics") as m:
            await health.read()
            await m.read()
            return int(health.status in (200, 503) and m.status == 200)
    except aiohttp.ClientError:
        return 0


async def main(
    minutes: float,
    feeds: int,
    rate: float,
    probe: bool,
    name: str,
    probe_args: list[str],
    shipped: bool = False,
    state: str = "sqlite:///state/n.db",
) -> dict[str, object]:
    peers = Peers(feeds)
    runner = await peers.start()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    duration_s = minutes * 60
    health_url = (
        write_shipped(workdir) if shipped else write_churn(workdir, peers, duration_s, state)
    )
    command = [sys.executable, "-m", "notifier"]
    probe_out = RESULTS / f"{name}-probe.jsonl"
    if probe:
        RESULTS.mkdir(exist_ok=True)
        probe_out.unlink(missing_ok=True)
        baseline = str(min(600.0, duration_s / 4))
        command = [sys.executable, str(Path(__file__).with_name("memprobe.py")), str(probe_out)]
        command += ["--every", "60", "--baseline", baseline, *probe_args, "--"]
    log = (workdir / "daemon.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        *command,
        "run",
        "-c",
        str(workdir / "notifier.toml"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    samples: list[tuple[float, int, int]] = []  # seconds, daemon RSS kB, workers RSS kB
    started = time.monotonic()
    counter = 0
    next_sample = started
    health_answers = 0
    try:
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < duration_s:
                if not shipped:
                    counter += 1
                    now = datetime.now(UTC)
                    item = (f"e{counter}", f"Entry {counter} on tariffs", now)
                    peers.items[counter % feeds].append(item)
                if time.monotonic() >= next_sample:
                    at = round(time.monotonic() - started, 1)
                    samples.append((at, rss_kb(proc.pid), workers_rss_kb(proc.pid)))
                    next_sample += 10
                    if health_url:
                        health_answers += await ask_health(session, health_url)
                await asyncio.sleep(1 / rate if not shipped else 1)
    finally:
        if proc.returncode is None:  # also when the soak itself is stopped
            proc.terminate()
    code = await proc.wait()
    await runner.cleanup()

    def growth_mb(column: int) -> float:
        half = [row[column] for row in samples if row[0] >= duration_s / 2]
        return round((half[-1] - half[0]) / 1024, 1) if len(half) >= 2 else 0.0

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": minutes,
        "config": "shipped" if shipped else "churn",
        "feeds": feeds if not shipped else None,
        "entries_per_second": rate if not shipped else 0,
        "health_answers": health_answers,
        "entries_published": counter,
        "webhooks_received": peers.received,
        "exit_code": code,
        "probe": str(probe_out.relative_to(RESULTS.parent)) if probe else None,
        "daemon_rss_mb_first": round(samples[1][1] / 1024, 1),
        "daemon_rss_mb_max": round(max(row[1] for row in samples) / 1024, 1),
        "daemon_rss_mb_last": round(samples[-1][1] / 1024, 1),
        "workers_rss_mb_last": round(samples[-1][2] / 1024, 1),
        "daemon_second_half_growth_mb": growth_mb(1),
        "workers_second_half_growth_mb": growth_mb(2),
        "state": "sqlite" if state.startswith("sqlite") else "postgresql",
        "database_mb": round(
            sum(f.stat().st_size for f in (workdir / "state").glob("*.db")) / 2**20, 1
        )
        if state.startswith("sqlite")
        else None,
        "samples": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--feeds", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1, help="new feed entries per second")
    parser.add_argument("--probe", action="store_true", help="run under bench/memprobe.py")
    parser.add_argument("--name", default="soak", help="results go to bench/results/NAME.json")
    parser.add_argument("--shipped", action="store_true", help="run the shipped config as is")
    parser.add_argument(
        "--state", default="sqlite:///state/n.db", help="the churn config's state URL"
    )
    args, probe_args = parser.parse_known_args()  # the rest goes to memprobe.py
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the daemon too
    asyncio.run(
        main(
            args.minutes,
            args.feeds,
            args.rate,
            args.probe,
            args.name,
            probe_args,
            shipped=args.shipped,
            state=args.state,
        )
    )
