"""A 410 Gone is visible and reversible.

Under `run` (a subprocess on SQLite): a webhook answers 410 once, then 2xx. The block is
logged once; the next event records a `failed` delivery saying `gone`; /healthz is
degraded and lists the endpoint (masked), /metrics counts it, `check` and `deliveries`
show it; `subscribers unblock` lifts it, and the skipped and the next alerts arrive.
With `once`: `deliveries retry` of a gone delivery (by id prefix) lifts the block too.
Events come from calendar edits (an announced rule alerts at once), so no test depends
on a wall-clock window.
"""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from notifier.cli import main
from notifier.config import load_config
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.daemon import run_cli as cli
from tests.peers.webhook import WebhookPeer

LATER = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)


def rule(rule_id: str) -> str:
    return f"""
[[rule]]
id = "{rule_id}"
title = "Rule {rule_id}"
origins = ["JP"]
hts = ["8708"]
rate = "25%"
effective = {LATER.isoformat()}
"""


def config(*, hooks: WebhookPeer, secret: str, state: str, health: int = 0) -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"
{f'health = "127.0.0.1:{health}"' if health else ""}

[delivery]
backoff = ["1s"]
timeout = "3s"

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"
"""


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


@pytest.mark.slow
async def test_a_410_is_visible_in_healthz_and_lifted_by_subscribers_unblock(
    write_config: WriteConfig, hooks: WebhookPeer, daemons: list[Daemon], tmp_path: Path
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    hooks.script("/erp", 410)  # once; then the default 204
    port = free_port()
    state = f"sqlite:///{tmp_path / 'state.db'}"
    body = config(hooks=hooks, secret=secret, state=state, health=port)
    path = write_config(body, calendar=rule("base"))
    daemon = await Daemon(path).start()
    daemons.append(daemon)
    healthz = f"http://127.0.0.1:{port}/healthz"

    calendar = rule("base") + rule("first")
    write_config(body, calendar=calendar)
    daemon.signal(signal.SIGHUP)
    await hooks.wait_for_count(1, path="/erp", timeout_s=20)
    await wait_for(lambda: "answered 410 Gone" in daemon.log(), timeout_s=10, what="410 log")

    # The next event: a failed delivery that says why, nothing sent.
    calendar += rule("second")
    write_config(body, calendar=calendar)
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: daemon.log().count("reloaded") >= 2, timeout_s=20, what="reload")
    code, out, err = await cli("deliveries", "--json", "-c", str(path))
    assert code == 0, err
    rows = json.loads(out)
    [gone_row] = [r for r in rows if r["gone"]]
    assert gone_row["status"] == "failed"
    assert gone_row["last_error"].startswith("gone: endpoint answered 410 Gone")
    assert len(hooks.calls_to("/erp")) == 1
    assert daemon.log().count("answered 410 Gone") == 1  # logged once, at the 410

    async def degraded() -> dict[str, object]:
        status: dict[str, object] = {}

        async def probe() -> bool:
            nonlocal status
            _, text = await get(healthz)
            status = json.loads(text)
            return bool(status.get("gone_endpoints"))

        deadline = asyncio.get_running_loop().time() + 10
        while not await probe():
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.2)
        return status

    status = await degraded()
    assert status["status"] == "degraded"
    [endpoint] = status["gone_endpoints"]  # type: ignore[misc]
    assert endpoint["subscriber"] == "erp" and "/erp" in endpoint["target"]
    assert any("gone" in reason for reason in status["reasons"])  # type: ignore[attr-defined]
    _, metrics = await get(f"http://127.0.0.1:{port}/metrics")
    assert 'notifier_gone_endpoints{subscriber="erp"} 1.0' in metrics
    assert f'notifier_config_info{{hash="{status["config_hash"]}"}} 1.0' in metrics
    assert "process_cpu_seconds_total" in metrics and "python_info" in metrics

    code, out, _ = await cli("check", "-c", str(path))
    assert code == 0 and "gone: webhook" in out and "subscribers unblock erp" in out
    code, out, _ = await cli("deliveries", "-c", str(path))
    assert code == 0 and "gone: webhook" in out and gone_row["id"] in out
    assert secret not in out

    # Unblock: the 410'd and the skipped alerts go again, and the next one goes too.
    code, out, err = await cli("subscribers", "unblock", "erp", "-c", str(path))
    assert code == 0, err
    assert "re-queued 2" in out
    await hooks.wait_for_count(3, path="/erp", timeout_s=20)
    calendar += rule("third")
    write_config(body, calendar=calendar)
    daemon.signal(signal.SIGHUP)
    calls = await hooks.wait_for_count(4, path="/erp", timeout_s=20)
    ids = {c.json["data"]["rule"]["id"] for c in calls[1:]}
    assert ids == {"first", "second", "third"}
    code, out, _ = await cli("subscribers", "unblock", "erp", "-c", str(path))
    assert code == 1  # nothing blocked any more
    code, _ = await daemon.stop()
    assert code == 0


async def test_deliveries_retry_of_a_gone_delivery_lifts_the_block(
    write_config: WriteConfig,
    hooks: WebhookPeer,
    state_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock(now=datetime.now(UTC))
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    hooks.script("/erp", 410)
    body = config(hooks=hooks, secret=secret, state=state_url)
    path = write_config(body, calendar=rule("base"))

    async def once() -> None:
        async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
            await Jobs(app).run_once()

    await once()  # baseline
    write_config(body, calendar=rule("base") + rule("first"))
    await once()  # 410
    write_config(body, calendar=rule("base") + rule("first") + rule("second"))
    await once()  # planned as a failed "gone" delivery
    assert len(hooks.calls_to("/erp")) == 1
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["deliveries", "--json", "-c", str(path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    [gone_row] = [r for r in rows if r["gone"]]
    prefix = gone_row["id"][:12]
    assert await asyncio.to_thread(main, ["deliveries", "retry", prefix, "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "re-queued and 1 more to it; the 410 block" in out
    clock.now = datetime.now(UTC)
    await once()
    calls = hooks.calls_to("/erp")
    assert {c.json["data"]["rule"]["id"] for c in calls} == {"first", "second"}
    assert len(calls) == 3
