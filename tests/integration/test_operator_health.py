"""Health that tells the truth, under `run` (a subprocess on SQLite): `/healthz` is
`degraded` with reasons while deliveries are dead and after a rejected reload (HTTP 200
both times, and `ok` again once fixed); `/metrics` counts per subscriber and reloads by
result; a `deliveries retry` beside the daemon goes out within about a second.

Events come from calendar edits (an announced rule alerts at once), so no test depends
on a wall-clock window.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.integration.test_operator_gone import config, get, rule
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.daemon import run_cli as cli
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow


async def healthz_until(
    port: int, predicate: Callable[[dict[str, Any]], bool], *, timeout_s: float = 15
) -> dict[str, Any]:
    """The first /healthz answer (always HTTP 200 here) for which ``predicate`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        code, text = await get(f"http://127.0.0.1:{port}/healthz")
        status: dict[str, Any] = json.loads(text)
        assert code == 200, (code, status)
        if predicate(status):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)


async def test_healthz_is_degraded_by_dead_deliveries_and_a_rejected_reload_then_ok(
    write_config: WriteConfig, hooks: WebhookPeer, daemons: list[Daemon], tmp_path: Path
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    hooks.default = Reply(503)
    port = free_port()
    body = config(hooks=hooks, secret=secret, state=f"sqlite:///{tmp_path / 's.db'}", health=port)
    calendar = rule("base")
    path = write_config(body, calendar=calendar)
    daemon = await Daemon(path).start()
    daemons.append(daemon)
    first = await healthz_until(port, lambda s: True)
    assert first["status"] == "ok" and first["reasons"] == []

    # An announced rule; the receiver answers 503 to both tries: the delivery is dead.
    calendar += rule("first")
    write_config(body, calendar=calendar)
    daemon.signal(signal.SIGHUP)
    await hooks.wait_for_count(2, path="/erp", timeout_s=20)
    status = await healthz_until(port, lambda s: s["dead_deliveries"] == 1)
    assert status["status"] == "degraded"
    assert "1 dead deliveries" in status["reasons"]
    _, metrics = await get(f"http://127.0.0.1:{port}/metrics")
    dead = 'notifier_subscriber_deliveries_total{channel="webhook",outcome="dead",subscriber="erp"}'
    assert f"{dead} 1.0" in metrics
    assert 'notifier_reloads_total{result="ok"} 1.0' in metrics

    # Retried beside the daemon: it goes out within about a second (not at a 30 s sweep).
    hooks.default = Reply(204)
    code, out, err = await cli("deliveries", "retry", "--all-dead", "-c", str(path))
    assert code == 0 and "re-queued 1" in out, (out, err)
    requeued = time.time()
    [*_, sent] = await hooks.wait_for_count(3, path="/erp", timeout_s=10)
    assert sent.received_at - requeued < 3.0, sent.received_at - requeued
    ok = await healthz_until(port, lambda s: s["dead_deliveries"] == 0)
    assert ok["status"] == "ok" and ok["reasons"] == []

    # A rejected reload: the instance runs an older config, and says so.
    write_config(body.replace('timeout = "3s"', 'timeout = "soon"'), calendar=calendar)
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: "reload rejected" in daemon.log(), timeout_s=10, what="rejection")
    status = await healthz_until(port, lambda s: s["status"] == "degraded")
    [reason] = status["reasons"]
    assert reason.startswith("last reload rejected: ") and "delivery.timeout" in reason
    assert status["config_hash"] == ok["config_hash"]  # still the old config
    _, metrics = await get(f"http://127.0.0.1:{port}/metrics")
    assert 'notifier_reloads_total{result="rejected"} 1.0' in metrics
    assert f'notifier_config_info{{hash="{ok["config_hash"]}"}} 1.0' in metrics

    # Fixed and reloaded: ok again, under the new config's hash.
    write_config(body.replace('timeout = "3s"', 'timeout = "4s"'), calendar=calendar)
    daemon.signal(signal.SIGHUP)
    # (/healthz answers from a snapshot up to a second old: wait for the new hash.)
    fixed = await healthz_until(port, lambda s: s["config_hash"] != ok["config_hash"])
    assert fixed["status"] == "ok" and fixed["reasons"] == []
    code, _ = await daemon.stop()
    assert code == 0
