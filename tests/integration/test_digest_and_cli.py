"""Digests across a restart, and the delivery-log commands, on both backends."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.config import load_config
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer


def config(state: str, smtp: SmtpPeer, feeds: FeedServer, hooks: WebhookPeer, secret: str) -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"
password = "{secret[-12:]}"

[delivery]
backoff = ["1s"]
timeout = "2s"

[[feed]]
id = "news"
url = "{feeds.url("news")}"

[[subscriber]]
id = "morning"
email = ["desk@example.com"]
digest = "daily 08:00"

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"
"""


async def cli(args: list[str]) -> int:
    """The CLI runs its own event loop: give it a thread, keep the peers' loop free."""
    return await asyncio.to_thread(main, args)


async def once(path: Path, clock: FakeClock) -> None:
    async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
        await Jobs(app).run_once()


@pytest.fixture
def setup(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    feeds: FeedServer,
    hooks: WebhookPeer,
    state_url: str,
) -> Path:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds["news"] = [FeedItem("a0", "Old notice")]
    return write_config(config(state_url, smtp, feeds, hooks, secret))


async def test_digest_collects_events_into_one_email_across_a_restart(
    setup: Path, clock: FakeClock, smtp: SmtpPeer, feeds: FeedServer
) -> None:
    clock.now = datetime.fromisoformat("2025-04-17T06:00:00-04:00")
    await once(setup, clock)  # baseline
    for n, hour in enumerate((6, 7), start=1):
        feeds.feeds["news"].append(FeedItem(f"a{n}", f"Tariff notice number {n}"))
        clock.now = datetime.fromisoformat(f"2025-04-17T0{hour}:10:00-04:00")
        await once(setup, clock)  # each `once` is a fresh process-like start
    assert smtp.messages == []  # held for the digest
    clock.now = datetime.fromisoformat("2025-04-17T08:00:30-04:00")
    await once(setup, clock)
    [digest] = await smtp.wait_for_count(1)
    text = digest.message.get_body(("plain",)).get_content()
    assert "Tariff notice number 1" in text and "Tariff notice number 2" in text
    clock.advance(hours=2)
    await once(setup, clock)
    assert len(smtp.messages) == 1  # sent once, never again
    # An event after 08:00 waits for the next morning.
    feeds.feeds["news"].append(FeedItem("a3", "Tariff notice number 3"))
    await once(setup, clock)
    clock.now = datetime.fromisoformat("2025-04-18T08:00:01-04:00")
    await once(setup, clock)
    assert len(smtp.messages) == 2
    assert "number 3" in smtp.messages[1].message.get_body(("plain",)).get_content()


async def test_deliveries_list_json_and_retry_of_dead(
    setup: Path,
    clock: FakeClock,
    hooks: WebhookPeer,
    feeds: FeedServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock.now = datetime.now(UTC)  # `deliveries retry` (wall clock) re-queues for now
    await once(setup, clock)
    hooks.script("/erp", 503, 503)
    feeds.feeds["news"].append(FeedItem("a1", "New tariff notice"))
    await once(setup, clock)
    clock.advance(seconds=2)
    await once(setup, clock)  # second and last try: dead
    capsys.readouterr()
    assert await cli(["deliveries", "--status", "dead", "--json", "-c", str(setup)]) == 0
    [dead] = json.loads(capsys.readouterr().out)
    assert (dead["subscriber"], dead["attempts"], dead["status"]) == ("erp", 2, "dead")
    assert "503" in dead["last_error"]
    assert await cli(["deliveries", "-c", str(setup)]) == 0
    assert dead["id"] in capsys.readouterr().out
    assert await cli(["deliveries", "retry", dead["id"], "-c", str(setup)]) == 0
    assert "re-queued" in capsys.readouterr().out
    clock.now = datetime.now(UTC)
    await once(setup, clock)
    calls = hooks.calls_to("/erp")
    assert len(calls) == 3 and len({c.headers["webhook-id"] for c in calls}) == 1
    assert await cli(["deliveries", "retry", "dlv_nope", "-c", str(setup)]) == 1


async def test_send_test_reaches_a_subscriber_at_once(
    setup: Path, smtp: SmtpPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(["send-test", "morning", "-c", str(setup)]) == 0  # digest or not
    [mail] = await smtp.wait_for_count(1)
    assert mail.rcpt_tos == ("desk@example.com",)
    assert await cli(["send-test", "nobody", "-c", str(setup)]) == 2
    assert "nobody" in capsys.readouterr().err


async def test_secrets_never_reach_logs_or_the_delivery_log(
    setup: Path,
    clock: FakeClock,
    smtp: SmtpPeer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    feeds: FeedServer,
) -> None:
    from notifier.logs import configure_logging

    config = load_config(setup)
    secrets = [config.model.smtp.password, config.subscribers[1].secret]  # type: ignore[union-attr]
    configure_logging(level="debug", fmt="json")
    smtp.fail_rcpt("desk@example.com", "451 4.3.0 later", times=None)
    feeds.feeds["news"].append(FeedItem("a1", "Notice"))
    await cli(["once", "-c", str(setup), "--log-level", "debug", "--log-format", "json"])
    await cli(["deliveries", "--json", "-c", str(setup)])
    captured = capsys.readouterr()
    logging.getLogger().handlers.clear()
    for secret in secrets:
        assert secret and secret not in captured.out and secret not in captured.err
