"""The fault suite (issue 6): `tariff-notifier` subprocesses against real, misbehaving peers.

Helpers shared by the test modules: TOML fragments for the configs, the delivery log
read through the CLI (``deliveries --json``), and a process's peak memory from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from notifier.config import Config
from notifier.delivery.outbox import Outbox, build_channels
from notifier.delivery.render import Renderer
from notifier.runtime.runtime import Clock
from notifier.store import Store
from tests.peers.daemon import Daemon

#: The memory bound the daemon must stay under, in MB of peak RSS (VmHWM).
MEMORY_BOUND_MB = 300


def notifier_section(*, health_port: int = 0, state: str = "sqlite:///state/n.db") -> str:
    health = f'health = "127.0.0.1:{health_port}"' if health_port else ""
    return f'[notifier]\nstate = "{state}"\ntimezone = "America/New_York"\n{health}\n'


def smtp_section(port: int, *, pool_size: int = 4) -> str:
    return (
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f'sender = "Tariff Alerts <alerts@example.com>"\npool_size = {pool_size}\n'
    )


def delivery_section(
    backoff: tuple[str, ...] = ("1s", "1s", "2s"), *, timeout: str = "3s", concurrency: int = 50
) -> str:
    waits = ", ".join(f'"{b}"' for b in backoff)
    return f'[delivery]\nbackoff = [{waits}]\ntimeout = "{timeout}"\nconcurrency = {concurrency}\n'


def feed_section(feed_id: str, url: str, *, every: str = "1s", **extra: str | int) -> str:
    lines = [f'[[feed]]\nid = "{feed_id}"\nurl = "{url}"\nevery = "{every}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def email_subscriber(sub_id: str, *addresses: str, extra: str = "") -> str:
    emails = ", ".join(f'"{a}"' for a in addresses)
    return f'[[subscriber]]\nid = "{sub_id}"\nemail = [{emails}]\n{extra}\n'


def webhook_subscriber(sub_id: str, url: str, secret: str | None, *, extra: str = "") -> str:
    signed = f'secret = "{secret}"\n' if secret else ""
    return f'[[subscriber]]\nid = "{sub_id}"\nwebhook = "{url}"\n{signed}{extra}\n'


async def cli(config: Path, *args: str, timeout_s: float = 30.0) -> tuple[int, str, str]:
    """Run ``python -m notifier ARGS -c CONFIG``; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        *args,
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=config.parent,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def deliveries(config: Path) -> list[dict[str, Any]]:
    """The delivery log as the CLI reports it (``deliveries --json``)."""
    code, out, err = await cli(config, "deliveries", "--json", "--limit", "100000")
    assert code == 0, err
    items: list[dict[str, Any]] = json.loads(out)
    return items


def statuses(items: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return counts


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (the parse pool and its forkserver)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: ppid follows ")".
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == current]
        found += kids
        frontier += kids
    return found


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MB."""
    return _status_kb(pid, "VmHWM") / 1024


def daemon_pid(daemon: Daemon) -> int:
    assert daemon.proc is not None and daemon.proc.returncode is None
    return daemon.proc.pid


def processes_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = _proc_state(pid)
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


@contextlib.asynccontextmanager
async def open_outbox(config: Config, clock: Clock) -> AsyncIterator[tuple[Store, Outbox]]:
    """An outbox on the config's (fresh) store with the shipped templates and ``clock``;
    channels and store are closed on the way out."""
    store = await Store.open(config.state_url)
    channels = build_channels(config)
    await channels.open()
    try:
        yield (
            store,
            Outbox(
                config,
                store,
                renderer=Renderer(override_dir=None, timezone=config.zone),
                channels=channels,
                clock=clock,
            ),
        )
    finally:
        await channels.close()
        await store.close()
