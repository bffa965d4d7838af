"""Soak: `tariff-notifier run` for a while under steady churn; does its memory grow?

50 local feeds polled every 2 s, a new entry in one of them every second, a webhook and an
email (Maildir) subscriber for every event, and a calendar transition every 20 s. The
daemon's RSS (VmRSS) is sampled every 10 s; the figure that matters is the slope over the
second half of the run, after caches and pools have warmed up.

    python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from aiohttp import web

RESULTS = Path(__file__).resolve().parent / "results"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def family_rss_kb(pid: int) -> int:
    """The daemon plus its parse workers."""
    total = rss_kb(pid)
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


async def main(minutes: float, feeds: int) -> dict[str, object]:
    peers = Peers(feeds)
    runner = await peers.start()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    (workdir / "calendar").mkdir()
    duration_s = minutes * 60
    (workdir / "calendar" / "rules.toml").write_text(
        rules(datetime.now(UTC) + timedelta(seconds=20), int(duration_s // 20) + 1, 20)
    )
    feed_tables = "".join(
        f'[[feed]]\nid = "f{i}"\nurl = "http://127.0.0.1:{peers.port}/f/{i}"\nevery = "2s"\n\n'
        for i in range(feeds)
    )
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    (workdir / "notifier.toml").write_text(
        f'[notifier]\nstate = "sqlite:///state/n.db"\n\n[delivery]\ntimeout = "5s"\n\n'
        f"{feed_tables}"
        f'[[subscriber]]\nid = "hook"\nwebhook = "http://127.0.0.1:{peers.port}/hook"\n'
        f'secret = "{secret}"\n\n[[subscriber]]\nid = "mail"\nemail = ["desk@example.com"]\n'
    )
    log = (workdir / "daemon.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "run",
        "-c",
        str(workdir / "notifier.toml"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    counter = 0
    next_sample = started
    while time.monotonic() - started < duration_s:
        counter += 1
        now = datetime.now(UTC)
        peers.items[counter % feeds].append((f"e{counter}", f"Entry {counter} on tariffs", now))
        if time.monotonic() >= next_sample:
            samples.append((round(time.monotonic() - started, 1), family_rss_kb(proc.pid)))
            next_sample += 10
        await asyncio.sleep(1)
    proc.terminate()
    code = await proc.wait()
    await runner.cleanup()
    half = [kb for t, kb in samples if t >= duration_s / 2]
    second_half_growth_kb = (half[-1] - half[0]) if len(half) >= 2 else 0
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": minutes,
        "feeds": feeds,
        "entries_published": counter,
        "webhooks_received": peers.received,
        "exit_code": code,
        "rss_mb_first": round(samples[0][1] / 1024, 1),
        "rss_mb_max": round(max(kb for _, kb in samples) / 1024, 1),
        "rss_mb_last": round(samples[-1][1] / 1024, 1),
        "second_half_growth_mb": round(second_half_growth_kb / 1024, 1),
        "samples": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--feeds", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(args.minutes, args.feeds))
