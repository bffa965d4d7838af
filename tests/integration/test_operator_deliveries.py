"""The deliveries tooling, through the CLI, on both backends: id prefixes, filters,
masked targets and next try, `deliveries show ID`, `retry --all-dead`, and errors that
say which case applies."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.config import load_config
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier
from tests.conftest import FakeClock, WriteConfig, new_secret
from tests.integration.test_operator_gone import rule
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer


def config(state: str, smtp: SmtpPeer, hooks: WebhookPeer, secret: str) -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"

[delivery]
backoff = ["1s"]
timeout = "2s"

[[subscriber]]
id = "desk"
email = ["desk@example.com"]

[[subscriber]]
id = "erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"

[[subscriber]]
id = "team-chat"
webhook = "{hooks.url("/slack/T000/B000/XXXXSECRET")}"
format = "slack"
"""


class Cli:
    def __init__(self, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.path = path
        self.capsys = capsys

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, [*args, "-c", str(self.path)])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


async def test_deliveries_prefixes_filters_show_and_bulk_retry(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    state_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock(now=datetime.now(UTC))  # `retry` re-queues for the wall clock
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    body = config(state_url, smtp, hooks, secret)
    path = write_config(body, calendar=rule("base"))
    cli = Cli(path, capsys)

    async def once() -> None:
        async with Notifier(load_config(path), clock=clock, parse_in_processes=False) as app:
            await Jobs(app).run_once()

    await once()  # baseline
    hooks.script("/erp", 503, 503)
    write_config(body, calendar=rule("base") + rule("first"))
    await once()  # desk and team-chat sent, erp to retry
    code, out, _ = await cli("deliveries")
    assert code == 0
    assert "XXXXSECRET" not in out and "/slack" not in out  # a Slack URL: scheme and host
    assert re.search(r"team-chat\s+http://127\.0\.0\.1:\d+/…", out), out
    assert "desk@example.com" in out and "/erp" in out
    erp_line = next(line for line in out.splitlines() if " erp " in line)
    assert re.search(r"queued\s+1 .* \d{4}-\d\d-\d\d \d\d:\d\d E[SD]T", erp_line), erp_line
    clock.advance(seconds=2)
    await once()  # erp: last try, dead

    code, out, _ = await cli("deliveries", "--json")
    rows = json.loads(out)
    by_sub = {r["subscriber"]: r for r in rows}
    assert {r["status"] for r in rows} == {"sent", "dead"} and by_sub["erp"]["status"] == "dead"
    assert "XXXXSECRET" not in out
    # Filters.
    code, out, _ = await cli("deliveries", "--json", "--subscriber", "erp")
    assert [r["subscriber"] for r in json.loads(out)] == ["erp"]
    code, out, _ = await cli("deliveries", "--json", "--event", "tariff.rule.*")
    assert len(json.loads(out)) == 3
    code, out, _ = await cli("deliveries", "--event", "feed.*")
    assert code == 0 and "no deliveries match" in out
    event_id = by_sub["erp"]["event_id"]
    code, out, _ = await cli("deliveries", "--json", "--event", event_id[:12])
    assert {r["event_id"] for r in json.loads(out)} == {event_id}
    code, out, _ = await cli("deliveries", "--json", "--since", "2000-01-01")
    assert len(json.loads(out)) == 3
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    code, out, _ = await cli("deliveries", "--json", "--since", tomorrow)
    assert json.loads(out) == []
    code, _, err = await cli("deliveries", "--event", "nonsense")
    assert code == 2 and "matches no event type" in err
    code, _, err = await cli("deliveries", "--since", "yesterday")
    assert code == 2 and "--since" in err

    # show: every attempt, with the ledger's hash; by a unique prefix.
    dead_id = by_sub["erp"]["id"]
    code, out, _ = await cli("deliveries", "show", dead_id[:10])
    assert code == 0, out
    attempts = [line for line in out.splitlines() if "sha256" in line]
    assert len(attempts) == 2 and all(re.search(r"sha256 [0-9a-f]{64}", a) for a in attempts)
    code, out, _ = await cli("deliveries", "show", dead_id, "--json")
    item = json.loads(out)
    assert [a["attempt"] for a in item["attempt_history"]] == [1, 2]

    # Errors say which case applies.
    sent_id = by_sub["desk"]["id"]
    code, out, _ = await cli("deliveries", "retry", sent_id[:14])
    assert code == 1 and "not dead: it is sent" in out
    code, out, _ = await cli("deliveries", "retry", "dlv_nope")
    assert code == 1 and "not found" in out
    code, out, _ = await cli("deliveries", "retry", "dlv_")
    assert code == 2 and "ambiguous prefix" in out and dead_id in out
    code, out, err = await cli("deliveries", "retry")
    assert code == 2 and "--all-dead" in err

    # Bulk retry, scoped to one subscriber.
    code, out, _ = await cli("deliveries", "retry", "--all-dead", "--subscriber", "desk")
    assert code == 0 and "re-queued 0" in out
    code, out, _ = await cli("deliveries", "retry", "--all-dead", "--subscriber", "erp")
    assert code == 0 and "re-queued 1" in out
    clock.now = datetime.now(UTC)
    await once()
    calls = hooks.calls_to("/erp")
    assert len(calls) == 3 and len({c.headers["webhook-id"] for c in calls}) == 1
    code, out, _ = await cli("deliveries", "--json", "--status", "dead")
    assert json.loads(out) == []
