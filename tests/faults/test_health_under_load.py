"""`/healthz` and `/metrics` polled by 50 clients as fast as they can while a 2,000-webhook
burst goes out (issue 12: each request used to run two store queries on the delivery
loop, and the burst took 12x as long). The same burst is timed without the pollers and
with them, in one test: every delivery must arrive once and every probe be answered. The
ratio of the two times is a figure (printed, and in docs/reliability.md), not an
assertion: a time ratio on a shared 2-core machine depends on what else runs there, and
speed is the benchmarks' job. What keeps the ratio low, one store read per second
however many probes, is asserted in tests/unit/test_health_snapshot.py."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import delivery_section, feed_section, notifier_section, webhook_subscriber
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

SUBSCRIBERS = 200
ENTRIES = 10
BURST = SUBSCRIBERS * ENTRIES  # 2,000 webhooks
CLIENTS = 50

POLLERS = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    import aiohttp

    # Probes come from other machines in production; here they share 2 cores with the
    # daemon. Niced, they still poll as fast as they can, but the ratio measures what
    # serving them costs the daemon rather than the CPU this generator takes from it.
    os.nice(19)

    async def main(port: int, clients: int) -> None:
        counts = {"healthz": 0, "metrics": 0, "bad": 0}
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        answered_once: set[int] = set()
        polling = asyncio.Event()

        async def client(session: aiohttp.ClientSession, n: int) -> None:
            path = "/healthz" if n % 2 else "/metrics"
            while not stop.is_set():
                try:
                    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                        await resp.read()
                        counts[path.strip("/")] += 1
                        counts["bad"] += resp.status != 200
                except aiohttp.ClientError:
                    counts["bad"] += 1
                answered_once.add(n)
                if len(answered_once) == clients:
                    polling.set()

        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [asyncio.create_task(client(session, n)) for n in range(clients)]
            # "ready" once every client has had an answer: all 50 are in their loops before
            # the burst starts, and stay there until it has ended (SIGTERM).
            await polling.wait()
            print("ready", flush=True)
            await stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        print(json.dumps(counts), flush=True)

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


async def test_health_and_metrics_polled_by_50_clients_do_not_slow_a_2000_webhook_burst(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer, daemons: list[Daemon]
) -> None:
    secret = new_secret()
    for i in range(SUBSCRIBERS):
        hooks.set_secret(f"/h{i}", secret)
    feeds.feeds["burst"] = [FeedItem("seed", "Seed entry")]
    port = free_port()
    config = write_config(
        notifier_section(health_port=port)
        + delivery_section(("1s", "1s", "2s"), timeout="5s", concurrency=50)
        + feed_section("burst", feeds.url("burst"))
        + "".join(
            webhook_subscriber(f"s{i}", hooks.url(f"/h{i}"), secret) for i in range(SUBSCRIBERS)
        )
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("burst", 0) >= 2, timeout_s=30, what="baseline")

    async def burst(tag: str) -> float:
        """Seconds from the first to the last of BURST webhooks of a fresh set of entries."""
        before = len(hooks.calls)
        feeds.feeds["burst"][:0] = [
            FeedItem(f"{tag}{i}", f"Notice {tag} {i}") for i in range(ENTRIES)
        ]
        await wait_for(
            lambda: len(hooks.calls) >= before + BURST, timeout_s=90, what=f"the {tag} burst"
        )
        calls = hooks.calls[before:]
        assert len(calls) == BURST, len(calls)  # nothing twice
        assert {c.json["data"]["entry"]["id"][: len(tag)] for c in calls} == {tag}
        return calls[-1].received_at - calls[0].received_at

    quiet_s = await burst("q")
    pollers = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        POLLERS,
        str(port),
        str(CLIENTS),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert pollers.stdout is not None
        assert (await asyncio.wait_for(pollers.stdout.readline(), 30)).strip() == b"ready"
        loaded_s = await burst("p")
    finally:
        if pollers.returncode is None:
            pollers.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(pollers.communicate(), 30)
    counts = json.loads(out.decode().strip().splitlines()[-1])
    code, _ = await daemon.stop()
    assert code == 0

    ratio = loaded_s / quiet_s
    answered = counts["healthz"] + counts["metrics"]
    assert counts["bad"] == 0, counts
    # Every client polled from before the burst to after it (ready, then SIGTERM); how many
    # answers fit in the burst depends on the burst's speed, so it is a figure.
    assert answered >= CLIENTS, counts
    print(
        f"\nFIGURE health-under-load: {BURST} webhooks in {quiet_s:.2f} s alone, "
        f"{loaded_s:.2f} s while {CLIENTS} clients made {answered} requests to /healthz and "
        f"/metrics ({answered / loaded_s:.0f}/s): ratio {ratio:.2f}"
    )
