"""A feed with far more than 1,000 entries: every entry is kept, so one appended at the
end of a 20,000-entry, oldest-first feed is alerted on the next poll (issue 12: the
parser used to keep the first 1,000 and drop the rest, saying so only in an INFO line)."""

from __future__ import annotations

import resource
import time

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import cli, deliveries, feed_section, notifier_section, webhook_subscriber
from tests.peers.feeds import FeedServer
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

ENTRIES = 20_000


def minimal_rss(items: list[tuple[str, str]]) -> bytes:
    body = "".join(
        f'<item><guid isPermaLink="false">{guid}</guid><title>{title}</title>'
        f"<link>https://example.test/{guid}</link></item>"
        for guid, title in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>archive</title><link>https://example.test/</link>{body}</channel></rss>"
    ).encode()


async def test_an_entry_appended_to_a_20000_entry_oldest_first_feed_is_alerted(
    write_config: WriteConfig, hooks: WebhookPeer, feeds: FeedServer
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    # Oldest first, as some publishers order them: the new entry comes last. Items carry a
    # guid, a title and a link only: feedparser spends ~1 ms on an item with a pubDate
    # and a description, which would make this test a parser benchmark.
    archive = [(f"a{i:05d}", f"Archived notice {i}") for i in range(ENTRIES)]
    feeds.raw["archive"] = minimal_rss(archive)
    config = write_config(
        notifier_section()
        + feed_section("archive", feeds.url("archive"))
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
    )
    started = time.monotonic()
    code, out, err = await cli(config, "once", timeout_s=90)
    baseline_s = time.monotonic() - started
    assert code == 0, err
    assert "archive" in out.split("baseline taken silently for:")[1], out
    assert "0 failed" in out, out

    feeds.raw["archive"] = minimal_rss([*archive, ("appended", "Tariff on steel raised")])
    started = time.monotonic()
    code, out, err = await cli(config, "once", timeout_s=90)
    second_s = time.monotonic() - started
    assert code == 0, err
    assert "1 events" in out and "deliveries: 1 sent" in out, out
    [call] = await hooks.wait_for_count(1, path="/erp")
    assert call.verified, call.error
    assert call.json["data"]["entry"]["id"] == "appended"
    assert "first 1000" not in out + err and "only the first" not in out + err
    assert [d["status"] for d in await deliveries(config)] == ["sent"]
    size_mb = len(feeds.raw["archive"]) / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"\nFIGURE large-feed: {ENTRIES:,} entries ({size_mb:.1f} MB) baselined by "
        f"`once` in {baseline_s:.1f} s, the appended entry alerted by the next `once` in "
        f"{second_s:.1f} s; peak RSS of a child process {peak_mb:.0f} MB"
    )
