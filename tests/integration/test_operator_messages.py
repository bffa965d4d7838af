"""What an operator reads, through the CLI as its own process: `--help`, config mistakes
in words (with the line, an example and the nearest known key), masked database
passwords, `once --strict` for cron, log lines (JSON fields, text timestamps with their
zone) and the feed's own title in alerts."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.peers.daemon import run_cli as cli
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

BASE = """\
[notifier]
state = "sqlite:///state/n.db"
timezone = "America/New_York"
health = "127.0.0.1:8787"

[calendar]
paths = ["calendar/*.toml"]

[[subscriber]]
id = "team"
email = ["trade@example.com"]
"""


async def test_the_top_level_help_describes_the_commands() -> None:
    code, out, _ = await cli("--help")
    assert code == 0
    assert out.startswith("usage: tariff-notifier ")
    flat = " ".join(out.split())
    assert "sends each change once" in flat
    for described in (
        "run the daemon, in the foreground",
        "once one pass, then exit",
        "send-test send a sample alert the subscriber's filters match, marked as a test",
        "digests what waits for each digest and when it goes",
        "subscribers `unblock SUBSCRIBER_ID`: lift a 410 Gone block",
    ):
        assert described in flat, (described, out)
    assert "notifier/cli" not in out and "exit codes (0 ok" not in out  # not the module


@pytest.mark.parametrize(
    ("old", "new", "where", "expected"),
    [
        (
            'email = ["trade@example.com"]',
            'email = ["trade@example.com"]\ndigest = "daily 8am"',
            ":12: subscriber[0].digest: ",
            'expected "daily HH:MM" or "weekly DAY HH:MM"',
        ),
        (
            'health = "127.0.0.1:8787"',
            'health = "8787"',
            ":4: notifier.health: ",
            'expected HOST:PORT like "127.0.0.1:8787"',
        ),
        (
            "[calendar]",
            '[smtpp]\nhost = "localhost"\n\n[calendar]',
            ":6: smtpp: ",
            "unknown key (did you mean [smtp]?)",
        ),
        (
            "[[subscriber]]",
            "[[subscribers]]",
            ":9: subscribers: ",
            "unknown key (did you mean [[subscriber]]?)",
        ),
        (
            'id = "team"',
            'id = "${TEAM_ID_IS_NOT_SET}"',
            ":10: subscriber[0].id: ",
            "environment variable TEAM_ID_IS_NOT_SET is not set",
        ),
        (
            '"calendar/*.toml"',
            '"calender/*.toml"',
            ":7: calendar.paths[0]: ",
            "matches no file",
        ),
        (
            '"sqlite:///state/n.db"',
            '"mysql://alerts:s3cret@db.example/tariffs"',
            ":2: notifier.state: ",
            'unsupported state URL scheme "mysql"',
        ),
    ],
    ids=[
        "digest",
        "health",
        "unknown-table",
        "unknown-array",
        "missing-var",
        "empty-glob",
        "mysql",
    ],
)
async def test_a_config_mistake_says_where_and_what_is_expected_in_words(
    write_config: WriteConfig, old: str, new: str, where: str, expected: str
) -> None:
    assert old in BASE
    path = write_config(BASE.replace(old, new), calendar="")
    for command in ("check", "once"):
        code, out, err = await cli(command, "-c", str(path))
        assert code == 2, (command, out, err)
        [line] = err.strip().splitlines()  # one line, no traceback
        assert line.startswith(f"tariff-notifier: invalid config: {path}{where}"), line
        assert expected in line, line
        assert "pattern" not in line and "String should" not in line, line  # no pydantic
        assert "s3cret" not in line


async def test_a_database_password_is_masked_in_check_migrate_and_logs(
    write_config: WriteConfig,
) -> None:
    url = "postgresql://alerts:s3cret-pw@127.0.0.1:1/tariffs"  # nobody listens on port 1
    path = write_config(BASE.replace("sqlite:///state/n.db", url), calendar="")
    code, out, err = await cli("check", "-c", str(path))
    assert code == 0, err
    assert "state:       postgresql://alerts:***@127.0.0.1:1/tariffs" in out
    for command in ("migrate", "once"):
        code, out, err = await cli(command, "-c", str(path))
        assert code == 1, (command, out, err)
        [line] = err.strip().splitlines()  # one line, no traceback
        assert line.startswith(
            "tariff-notifier: state database postgresql://alerts:***@127.0.0.1:1/tariffs "
            "unreachable: [Errno 111] "
        ), line
    for command in ("check", "migrate", "once"):
        code, out, err = await cli(command, "-c", str(path), "--log-level", "debug")
        assert "s3cret" not in out + err, command


# The feed server titles each feed by its name: this one's <title> is not its config id.
NEWS = "Trade-News-Desk"


def strict_config(feeds: FeedServer, hooks: WebhookPeer, secret: str, *, broken: bool) -> str:
    extra = f'\n[[feed]]\nid = "broken"\nurl = "{feeds.url("broken")}"\n' if broken else ""
    return f"""
[notifier]
state = "sqlite:///state/n.db"
timezone = "America/New_York"

[delivery]
backoff = ["1h"]

[[feed]]
id = "news"
url = "{feeds.url(NEWS)}"
{extra}
[[subscriber]]
id = "erp"
webhook = "{hooks.url("/erp")}"
secret = "{secret}"
"""


async def test_once_strict_exits_3_when_sources_failed_or_deliveries_wait_and_plain_once_0(
    write_config: WriteConfig, feeds: FeedServer, hooks: WebhookPeer
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds[NEWS] = [FeedItem("a0", "Old notice")]
    feeds.broken["broken"] = 500
    path = write_config(strict_config(feeds, hooks, secret, broken=True))
    code, out, err = await cli("once", "-c", str(path))
    assert code == 0, err  # the contract: the pass ran
    assert "1 failed" in out and "source broken: HTTP 500" in out
    code, out, err = await cli("once", "--strict", "-c", str(path))
    assert code == 3, (out, err)

    path = write_config(strict_config(feeds, hooks, secret, broken=False))
    code, out, err = await cli("once", "--strict", "-c", str(path))
    assert code == 0, (out, err)  # nothing failed, nothing waits
    feeds.feeds[NEWS].append(FeedItem("a1", "Tariff notice"))
    hooks.script("/erp", 503)
    code, out, err = await cli("once", "--strict", "-c", str(path))
    assert code == 3, (out, err)
    assert "1 to retry" in out
    assert len(hooks.calls_to("/erp")) == 1


async def test_log_lines_carry_fields_and_zones_and_alerts_name_the_feed_by_its_title(
    write_config: WriteConfig,
    feeds: FeedServer,
    hooks: WebhookPeer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds[NEWS] = [FeedItem("a0", "Old notice")]  # served with <title>Trade-News-Desk</title>
    feeds.broken["broken"] = 500
    path = write_config(strict_config(feeds, hooks, secret, broken=True))

    # Text lines: a local timestamp with its offset.
    monkeypatch.setenv("TZ", "America/New_York")
    code, _, err = await cli("once", "-c", str(path))
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert any("source broken failed" in line for line in lines), err
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-0[45]:00 ", line), line

    # JSON lines: the source, the subscriber as fields of their own.
    feeds.feeds[NEWS].append(FeedItem("a1", "Tariff notice on Japanese auto parts"))
    hooks.script("/erp", 410)
    json_logs = ("--log-format", "json", "--log-level", "debug")
    code, _, err = await cli("once", *json_logs, "-c", str(path))
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failing = [r for r in records if "still failing" in r["message"]]
    assert failing and failing[0]["feed"] == "broken" and failing[0]["source"] == "broken"
    [gone] = [r for r in records if "answered 410 Gone" in r["message"]]
    assert gone["subscriber"] == "erp" and gone["level"] == "warning"
    # A line about one delivery names it, its subscriber and its event as fields.
    [failed] = [r for r in records if "after attempt" in r["message"]]
    assert failed["delivery_id"] and failed["delivery_id"] in failed["message"]
    assert failed["subscriber"] == "erp" and failed["event_id"]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)

    # The feed has no `title` in the config: the alert names it by its own <title>.
    [call] = hooks.calls_to("/erp")
    assert call.json["data"]["feed"] == "news"
    assert call.json["data"]["feed_title"] == NEWS
