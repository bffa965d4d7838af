"""`run` as a subprocess: the composition root wires unsubscribe links, and a SIGHUP swaps
in a whole new runtime (secrets, [smtp], subscribers), against real peers.

Events are made on demand by editing the calendar and sending SIGHUP (an announced rule
alerts at once), so no test depends on a wall-clock window; every wait is on a condition
with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import WriteConfig, new_secret
from tests.peers import wait_for
from tests.peers.daemon import Daemon, free_port
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

LATER = datetime.now(UTC) + timedelta(days=60)


def rule(rule_id: str, *, rate: str = "25%") -> str:
    return f"""
[[rule]]
id = "{rule_id}"
title = "Rule {rule_id}"
origins = ["JP"]
hts = ["8708"]
rate = "{rate}"
effective = {LATER.isoformat(timespec="seconds")}
source = "https://www.federalregister.gov/d/2025-05930"
"""


def config(*, smtp_port: int, health_port: int, state: str, extra: str = "") -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"
health = "127.0.0.1:{health_port}"
public_url = "http://127.0.0.1:{health_port}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"

[delivery]
backoff = ["1s", "1s"]
timeout = "3s"

[[subscriber]]
id = "desk"
email = ["broker@example.com", "analyst@example.com"]
{extra}
"""


async def test_one_click_unsubscribe_link_of_a_received_mail_works_under_run(
    write_config: WriteConfig, smtp: SmtpPeer, daemons: list[Daemon], tmp_path: Path
) -> None:
    health = free_port()
    state = f"sqlite:///{tmp_path / 'state.db'}"
    body = config(smtp_port=smtp.port, health_port=health, state=state)
    path = write_config(body, calendar=rule("base"))
    daemon = await Daemon(path).start()
    daemons.append(daemon)

    # An announced rule reaches both addresses.
    write_config(body, calendar=rule("base") + rule("first"))
    daemon.signal(signal.SIGHUP)
    await wait_for(lambda: len(smtp.messages) >= 2, timeout_s=20, what="first alert")
    [mail] = smtp.messages_to("broker@example.com")
    header = mail.message["List-Unsubscribe"]
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<(.+)>", str(header))
    assert link is not None, header
    # RFC 8058: a POST with the one-click body, no cookies; answered 2xx, no redirect.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            link.group(1), data="List-Unsubscribe=One-Click", allow_redirects=False
        ) as resp,
    ):
        assert 200 <= resp.status < 300, await resp.text()

    # The next alert goes to the other address only.
    smtp.clear()
    write_config(body, calendar=rule("base") + rule("first") + rule("second"))
    daemon.signal(signal.SIGHUP)
    await wait_for(
        lambda: smtp.messages_to("analyst@example.com"), timeout_s=20, what="second alert"
    )
    # The analyst's mail and the (absent) broker's are planned in the same transaction:
    # once one arrived, the other would have been queued already.
    await wait_for(lambda: "reloaded" in daemon.log(), timeout_s=10, what="reload logged")
    assert smtp.messages_to("broker@example.com") == []
    assert "unsubscribed broker@example.com" in daemon.log()
    code, _ = await daemon.stop()
    assert code == 0


async def test_reload_swaps_the_whole_runtime_secrets_and_smtp_follow(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    daemons: list[Daemon],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = new_secret()
    hooks.set_secret("/ops", secret)
    monkeypatch.setenv("OPS_WEBHOOK_SECRET", secret)
    second_smtp = SmtpPeer()
    await second_smtp.start()
    try:
        health = free_port()
        state = f"sqlite:///{tmp_path / 'state.db'}"
        first = config(smtp_port=smtp.port, health_port=health, state=state)
        path = write_config(first, calendar=rule("base"))
        daemon = await Daemon(path).start()
        daemons.append(daemon)

        # The reload adds a webhook subscriber whose secret comes from the environment,
        # and moves [smtp] to another server.
        added = f"""
[[subscriber]]
id = "ops"
webhook = "{hooks.url("/ops")}"
secret = "${{OPS_WEBHOOK_SECRET}}"
"""
        second = config(smtp_port=second_smtp.port, health_port=health, state=state, extra=added)
        write_config(second, calendar=rule("base") + rule("after-reload"))
        daemon.signal(signal.SIGHUP)
        [call] = await hooks.wait_for_count(1, path="/ops", timeout_s=20)
        assert call.verified, "signed with the secret that arrived with the reload"
        await wait_for(lambda: len(second_smtp.messages) >= 2, timeout_s=20, what="new smtp")
        assert smtp.messages == [], "the old [smtp] server got nothing after the reload"

        # The secret never reaches the log, the delivery log or command output.
        code, _ = await daemon.stop()
        assert code == 0
        assert secret not in daemon.log()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "deliveries",
            "--json",
            "-c",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, stderr
        rows = json.loads(stdout)
        assert any(r["subscriber"] == "ops" and r["status"] == "sent" for r in rows), rows
        assert secret.encode() not in stdout + stderr
    finally:
        await second_smtp.stop()
