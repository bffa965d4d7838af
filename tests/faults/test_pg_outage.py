"""PostgreSQL restarted in the middle of a burst, under two `tariff-notifier run` instances
on one database (issue 12): both keep running, say so once per state change, back off,
and deliver everything by themselves once the database is back; SIGTERM then exits 0.

The test stops and starts a PostgreSQL server of its own (initdb in a temporary folder,
on a free port), never the machine's shared one: another test run beside this one, or
another copy of the suite, keeps its database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import PG_URL_ENV, WriteConfig, new_secret, pg_database
from tests.faults import delivery_section, feed_section, webhook_subscriber
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow

SUBSCRIBERS = 200
ENTRIES = 5
BURST = SUBSCRIBERS * ENTRIES  # 1,000 webhooks
OUTAGE_S = 5.0


class PrivateServer:
    """A PostgreSQL server of this test's own (initdb in a temporary folder, a free port):
    stopping it cannot disturb another test run sharing the machine's server."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tn-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        # PostgreSQL refuses to run as root: the server runs as `postgres` when we are.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, user="postgres")
        self.root.chmod(0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        # `-l`: the server must not inherit our pipes (communicate() would wait for it).
        log = str(self.root / "server.log")
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            log,
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
            timeout=30,
        )
        return done.returncode == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    """A private server for the test to stop and start; removed at the end."""
    if not os.environ.get(PG_URL_ENV):
        pytest.skip(f"needs PostgreSQL: set {PG_URL_ENV}")
    bindir = next((p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")), None)
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("needs PostgreSQL's initdb and pg_ctl to run a private server")
    private = PrivateServer(bindir)
    try:
        private.init()
        private.start()
        yield private
    finally:
        if private.running():
            with contextlib.suppress(subprocess.SubprocessError):
                private.stop()
        shutil.rmtree(private.root, ignore_errors=True)


@pytest.fixture
async def pg_url(server: PrivateServer) -> AsyncIterator[str]:
    async with pg_database(server.url) as url:
        yield url


def instance_config(state: str, port: int, feed_url: str, hooks: WebhookPeer, secret: str) -> str:
    subscribers = "".join(
        webhook_subscriber(f"s{i}", hooks.url(f"/h{i}"), secret) for i in range(SUBSCRIBERS)
    )
    return (
        f'[notifier]\nstate = "{state}"\nhealth = "127.0.0.1:{port}"\n'
        + delivery_section(("1s", "1s", "2s", "2s", "4s", "4s", "4s"), timeout="2s", concurrency=10)
        + feed_section("burst", feed_url, max_changes="100000")
        + subscribers
    )


async def health_code(port: int) -> int:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def test_postgresql_restarted_mid_burst_under_two_instances_loses_nothing(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    feeds: FeedServer,
    server: PrivateServer,
    pg_url: str,
    daemons: list[Daemon],
) -> None:
    secret = new_secret()
    for i in range(SUBSCRIBERS):
        hooks.set_secret(f"/h{i}", secret)
    hooks.default = Reply(204, hang_s=0.1)  # at most 200 a second over both instances
    feeds.feeds["burst"] = [FeedItem("seed", "Seed entry")]
    ports = [free_port(), free_port()]
    instances: list[Daemon] = []
    for index, port in enumerate(ports):
        path: Path = write_config(
            instance_config(pg_url, port, feeds.url("burst"), hooks, secret),
            name=f"instance{index}.toml",
        )
        instance = Daemon(path, log_name=f"instance{index}.log")
        daemons.append(instance)
        instances.append(instance)
    await asyncio.gather(*(d.start() for d in instances))
    await wait_for(lambda: feeds.requests.get("burst", 0) >= 2, timeout_s=30, what="baseline")

    def delivered() -> set[tuple[str, str]]:
        return {(c.path, c.json["data"]["entry"]["id"]) for c in hooks.calls}

    feeds.feeds["burst"][:0] = [FeedItem(f"e{i}", f"Tariff notice {i}") for i in range(ENTRIES)]
    await wait_for(lambda: len(delivered()) >= BURST // 6, timeout_s=60, what="the burst under way")
    server.stop()
    down_at = time.monotonic()
    at_stop = len(delivered())
    try:
        # Both report the store down (503) while it is: they do not pretend to be fine.
        for port in ports:
            deadline = time.monotonic() + 20
            while await health_code(port) != 503:
                assert time.monotonic() < deadline, f"/healthz on {port} never said 503"
                await asyncio.sleep(0.2)
        # The outage itself: a fixed fault duration, not a wait for a condition.
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert all(not d.exited() for d in instances), "an instance died with the database"
    finally:
        server.start()
    up_at = time.monotonic()
    assert at_stop < BURST, "the outage must hit the middle of the burst"

    await wait_for(lambda: len(delivered()) >= BURST, timeout_s=60, what="every delivery")
    recovered_s = time.monotonic() - up_at
    for port in ports:
        deadline = time.monotonic() + 20
        while await health_code(port) != 200:
            assert time.monotonic() < deadline, f"/healthz on {port} never came back"
            await asyncio.sleep(0.2)
    # Each instance found the store again by itself (not only the one that delivered).
    await wait_for(
        lambda: all("state store reachable again" in d.log() for d in instances),
        timeout_s=15,
        what="both instances to reach the store again",
    )
    back_s = time.monotonic() - up_at
    assert all(not d.exited() for d in instances)
    logs = [d.log() for d in instances]
    codes = [code for code, _ in await asyncio.gather(*(d.stop() for d in instances))]

    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for call in hooks.calls:
        assert call.verified, call.error
        ids[(call.path, call.json["data"]["entry"]["id"])].add(call.headers["webhook-id"])
    assert len(ids) == BURST
    assert all(len(found) == 1 for found in ids.values()), "a repeat with a new webhook-id"
    repeats = len(hooks.calls) - BURST
    # One line per state change from the daemon (not one per job run or per retry), and
    # a bounded number of ERROR lines in all: the outbox names the attempts in flight
    # that could not be recorded (at most one line per finished batch, <= concurrency).
    changes = [log.count("state store unreachable (") for log in logs]
    errors = [sum(" ERROR " in line for line in log.splitlines()) for log in logs]
    for log in logs:
        assert "Traceback" not in log, log[-3000:]
        assert "Task exception was never retrieved" not in log
    assert all(1 <= count <= 3 for count in changes), changes
    # /healthz was probed every 0.2 s while the database was down: one line, not one a second.
    health_lines = [log.count("ERROR   notifier.runtime.health") for log in logs]
    assert all(count <= 2 for count in health_lines), health_lines
    assert all(count <= 10 + 6 for count in errors), errors
    assert codes == [0, 0], codes
    print(
        f"\nFIGURE pg-restart: {BURST} webhooks over 2 instances; PostgreSQL stopped after "
        f"{at_stop}, down {up_at - down_at:.1f} s; all delivered {recovered_s:.1f} s after it "
        f"started again (both instances on the store again within {back_s:.1f} s); "
        f"{repeats} repeat(s), each with its webhook-id; "
        f"'state store unreachable' lines per instance {changes}, ERROR lines {errors}; "
        f"exit codes {codes}"
    )
