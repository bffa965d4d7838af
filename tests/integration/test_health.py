"""/healthz and /metrics served by aiohttp over a real SQLite state store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from notifier.config import Config, ConfigModel, FeedSection
from notifier.runtime.health import HealthServer, store_status
from notifier.runtime.metrics import Metrics
from notifier.store import Store

NOW = datetime(2025, 5, 3, 12, 0, tzinfo=UTC)
FEEDS = [
    FeedSection(id="fr", url="http://127.0.0.1:9/fr"),
    FeedSection(id="cbp", url="http://127.0.0.1:9/cbp"),
]
# A loaded config with those two feeds (store_status reads its feeds and subscribers).
CONFIG = Config(ConfigModel(feed=FEEDS), path=Path("/nonexistent/notifier.toml"), rules=[])

Status = Callable[[], Awaitable[dict[str, Any]]]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Metrics, Status], Awaitable[str]]]:
    """Start a HealthServer on 127.0.0.1, port 0; returns its base URL."""
    servers: list[HealthServer] = []

    async def start(metrics: Metrics, status: Status) -> str:
        server = HealthServer(host="127.0.0.1", port=0, metrics=metrics, status=status)
        await server.start()
        servers.append(server)
        assert server.port != 0
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


async def record_polls(store: Store) -> None:
    async with store.transaction() as tx:
        await store.record_poll(tx, "fr", now=NOW - timedelta(minutes=30), error=None)
        await store.record_poll(tx, "fr", now=NOW, error="HTTP 503 from origin")
        await store.record_poll(tx, "cbp", now=NOW, error=None, etag='"abc"')


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_healthz_reports_failing_feed_and_queue_from_store(
    store: Store, serve: Callable[[Metrics, Status], Awaitable[str]]
) -> None:
    await record_polls(store)
    started = NOW - timedelta(hours=1)
    next_fr = NOW + timedelta(minutes=5)

    async def status() -> dict[str, Any]:
        return await store_status(
            store,
            CONFIG,
            started_at=started,
            next_polls={"fr": next_fr, "cbp": None},
            now=NOW,
        )

    base = await serve(Metrics(), status)
    code, body = await get_json(base + "/healthz")
    assert code == 200
    assert body["up"] is True
    assert body["started_at"] == "2025-05-03T11:00:00Z"
    assert body["failing_feeds"] == ["fr"]
    assert body["queue_depth"] == 0 and body["dead_deliveries"] == 0
    fr = body["feeds"]["fr"]
    assert fr == {
        "kind": "rss",
        "state": "ok",  # one failure: not yet `alert_after` (3), and not stale
        "last_poll_at": "2025-05-03T12:00:00Z",
        "last_ok_at": "2025-05-03T11:30:00Z",
        "failures": 1,
        "last_error": "HTTP 503 from origin",
        "failing": True,
        "next_poll_at": "2025-05-03T12:05:00Z",
    }
    cbp = body["feeds"]["cbp"]
    assert cbp["failing"] is False and cbp["failures"] == 0 and cbp["next_poll_at"] is None
    assert body["status"] == "ok" and body["sources"] == body["feeds"]


async def test_feed_never_polled_is_listed_and_not_failing(store: Store) -> None:
    status = await store_status(store, CONFIG, started_at=NOW, next_polls={}, now=NOW)
    assert set(status["feeds"]) == {"fr", "cbp"}
    assert status["feeds"]["fr"]["last_poll_at"] is None
    assert status["failing_feeds"] == []


async def test_healthz_is_503_when_status_says_down_or_raises(
    serve: Callable[[Metrics, Status], Awaitable[str]],
) -> None:
    async def stopping() -> dict[str, Any]:
        return {"up": False, "reason": "stopping"}

    async def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    code, body = await get_json(await serve(Metrics(), stopping) + "/healthz")
    assert (code, body) == (503, {"up": False, "reason": "stopping"})
    code, body = await get_json(await serve(Metrics(), broken) + "/healthz")
    assert code == 503
    assert body["up"] is False and "boom" in body["error"]


def delete_files(folder: Path, pattern: str) -> None:
    for path in folder.glob(pattern):
        path.unlink()


async def test_unreadable_store_makes_status_down(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/gone.db")
    await store.close()
    delete_files(tmp_path, "gone.db*")
    try:
        # The engine reconnects to a fresh, empty file: no tables to read.
        status = await store_status(store, CONFIG, started_at=NOW, next_polls={}, now=NOW)
    finally:
        await store.close()
    assert status["up"] is False
    assert "state store unreadable" in status["error"]


async def test_metrics_endpoint_exposes_observed_values(
    store: Store, serve: Callable[[Metrics, Status], Awaitable[str]]
) -> None:
    await record_polls(store)
    metrics = Metrics()
    metrics.set_feeds(["fr", "cbp"])
    metrics.observe_poll("fr", "ok")
    metrics.observe_poll("fr", "error")
    metrics.observe_poll("fr", "error")
    metrics.observe_poll("cbp", "not_modified")
    metrics.observe_event("tariff.rule.effective")
    metrics.observe_delivery("webhook", "sent", 0.2)
    metrics.observe_delivery("webhook", "sent", 7200.0)
    metrics.observe_delivery("email", "retry", 3.0)
    metrics.observe_delivery("email", "dead", 90000.0)
    metrics.set_queue(7, 2)

    async def status() -> dict[str, Any]:
        return await store_status(store, CONFIG, started_at=NOW, next_polls={}, now=NOW)

    base = await serve(metrics, status)
    code, content_type, text = await get(base + "/metrics")
    assert code == 200
    assert content_type == CONTENT_TYPE_LATEST
    got = samples(text)
    assert got[("notifier_polls_total", (("feed", "fr"), ("outcome", "error")))] == 2
    assert got[("notifier_polls_total", (("feed", "fr"), ("outcome", "ok")))] == 1
    assert got[("notifier_polls_total", (("feed", "cbp"), ("outcome", "error")))] == 0
    assert got[("notifier_poll_failures_total", (("feed", "fr"),))] == 2
    assert got[("notifier_events_total", (("type", "tariff.rule.effective"),))] == 1
    assert got[("notifier_deliveries_total", (("channel", "webhook"), ("outcome", "sent")))] == 2
    assert got[("notifier_deliveries_total", (("channel", "email"), ("outcome", "dead")))] == 1
    # Latency is measured for sent deliveries only.
    hist = "notifier_delivery_latency_seconds"
    assert got[(hist + "_count", (("channel", "webhook"),))] == 2
    assert got[(hist + "_bucket", (("channel", "webhook"), ("le", "0.25")))] == 1
    assert got[(hist + "_bucket", (("channel", "webhook"), ("le", "86400.0")))] == 2
    assert (hist + "_count", (("channel", "email"),)) not in got
    # The scrape refreshed the store-derived gauges: the queue is empty in the store, and
    # the store says fr is failing.
    assert got[("notifier_queue_depth", ())] == 0
    assert got[("notifier_dead_deliveries", ())] == 0
    assert got[("notifier_feed_failing", (("feed", "fr"),))] == 1
    assert got[("notifier_feed_failing", (("feed", "cbp"),))] == 0
    assert got[("notifier_up", ())] == 1
    assert got[("notifier_start_time_seconds", ())] > 0


async def test_metrics_keep_daemon_gauges_when_status_is_down(
    serve: Callable[[Metrics, Status], Awaitable[str]],
) -> None:
    async def down() -> dict[str, Any]:
        return {"up": False}

    metrics = Metrics()
    metrics.set_queue(7, 2)
    metrics.set_feed_failing("fr", True)
    code, _, text = await get(await serve(metrics, down) + "/metrics")
    assert code == 200
    got = samples(text)
    assert got[("notifier_queue_depth", ())] == 7
    assert got[("notifier_dead_deliveries", ())] == 2
    assert got[("notifier_feed_failing", (("feed", "fr"),))] == 1


def test_two_metrics_objects_do_not_collide() -> None:
    first, second = Metrics(), Metrics()
    first.observe_event("feed.entry.new")
    got = samples(second.render().decode())
    assert ("notifier_events_total", (("type", "feed.entry.new"),)) not in got
    assert (
        samples(first.render().decode())[("notifier_events_total", (("type", "feed.entry.new"),))]
        == 1
    )


def test_unknown_outcomes_are_rejected() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="poll outcome"):
        metrics.observe_poll("fr", "fine")
    with pytest.raises(ValueError, match="delivery outcome"):
        metrics.observe_delivery("email", "queued", 1.0)


def test_set_feeds_drops_series_of_removed_feeds() -> None:
    metrics = Metrics()
    metrics.set_feeds(["fr", "old"])
    metrics.set_feed_failing("old", True)
    metrics.set_feeds(["fr"])
    got = samples(metrics.render().decode())
    assert ("notifier_feed_failing", (("feed", "fr"),)) in got
    assert not any(dict(labels).get("feed") == "old" for _, labels in got)


async def test_server_binds_only_the_configured_host(
    serve: Callable[[Metrics, Status], Awaitable[str]],
) -> None:
    async def up() -> dict[str, Any]:
        return {"up": True}

    base = await serve(Metrics(), up)
    port = int(base.rsplit(":", 1)[1])
    code, _ = await get_json(base + "/healthz")
    assert code == 200
    # 127.0.0.2 is loopback too, but not the bound address: the connection is refused.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.2:{port}/healthz")
