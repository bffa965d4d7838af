"""Commands beside a running `run` daemon on SQLite (a subprocess): `send-test` sends a
marked sample that the subscriber's filters match, and the read-only commands work.

Waits are on conditions with deadlines (the peers' recorded messages, the daemon's log).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.peers.daemon import Daemon, free_port
from tests.peers.daemon import run_cli as cli
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

LATER = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)

# The first rule of the calendar is one the subscriber does not watch (the old sample).
CALENDAR = f"""
[[rule]]
id = "ieepa-china"
title = "IEEPA tariff on goods from China"
imposed_by = "US"
origins = ["CN"]
hts = ["*"]
rate = "20%"
effective = {LATER.isoformat()}
source = "https://www.federalregister.gov/d/2025-03775"

[[rule]]
id = "us-232-auto-parts-jp"
title = "Section 232 tariff on automobile parts from Japan"
imposed_by = "US"
origins = ["JP"]
hts = ["8708"]
rate = "15%"
effective = {LATER.isoformat()}
source = "https://www.federalregister.gov/d/2025-05930"
"""


def config(*, smtp: SmtpPeer, hooks: WebhookPeer, secret: str, state: str) -> str:
    return f"""
[notifier]
state = "{state}"
timezone = "America/New_York"
health = "127.0.0.1:{free_port()}"

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
sender = "Tariff Alerts <alerts@example.com>"

[[subscriber]]
id = "japan-parts"
email = ["broker@example.com"]
origins = ["JP"]
hts = ["8708.29"]
events = ["tariff.rule.*"]
digest = "daily 08:00"

[[subscriber]]
id = "mexico-erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"
origins = ["MX"]
hts = ["7208"]
"""


async def test_send_test_beside_a_running_daemon_sends_a_marked_matching_sample(
    write_config: WriteConfig,
    smtp: SmtpPeer,
    hooks: WebhookPeer,
    daemons: list[Daemon],
    tmp_path: Path,
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    path = write_config(
        config(smtp=smtp, hooks=hooks, secret=secret, state=state), calendar=CALENDAR
    )
    daemon = await Daemon(path).start()
    daemons.append(daemon)

    code, out, err = await cli("send-test", "japan-parts", "-c", str(path))
    assert code == 0, err
    [mail] = await smtp.wait_for_count(1, timeout_s=20)  # at once, though a digest subscriber
    message = mail.message
    assert str(message["Subject"]).startswith("[TEST] ")
    assert "automobile parts from Japan" in str(message["Subject"])  # the matching rule
    assert message["X-Tariff-Notifier-Test"] == "1"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "This is a test alert sent by `tariff-notifier send-test`" in text
    assert "This is a test alert sent by" in html and "Test alert." in html
    assert "China" not in text
    # The footer does not claim the subscription matched a real event.
    assert "matches this rule" not in text and "not a real event" in text

    # A subscriber no calendar rule matches gets a synthetic sample that says so.
    code, out, err = await cli("send-test", "mexico-erp", "-c", str(path))
    assert code == 0, err
    [call] = await hooks.wait_for_count(1, path="/erp", timeout_s=20)
    assert call.verified
    data = call.json["data"]
    assert data["test"] is True and data["synthetic"] is True
    assert data["rule"]["origins"] == ["MX"] and data["rule"]["hts"] == ["7208"]
    assert "synthetic" in out

    # Read-only commands beside the daemon.
    for args in (
        ("deliveries", "--json"),
        ("deliveries",),
        ("sources",),
        ("calendar", "--days", "90"),
        ("calendar", "--in-force", "--origin", "JP"),
        ("check",),
        ("digests",),
    ):
        code, out, err = await cli(*args, "-c", str(path))
        assert code == 0, (args, out, err)
        assert "another tariff-notifier" not in err
    code, out, _ = await cli("deliveries", "--json", "-c", str(path))
    assert json.loads(out) == []  # a test is not an event of the delivery log
    assert not daemon.exited()
    code, _ = await daemon.stop()
    assert code == 0
