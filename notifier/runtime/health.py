"""``/healthz`` and ``/metrics`` over HTTP, for load balancers, systemd and Prometheus.

Served by aiohttp on the address of ``[notifier] health`` only (no wildcard bind: the
status names feeds and their errors). ``/healthz`` answers 200 while the daemon is up and
503 when it is stopping or its state store cannot be read, so a probe notices both.
Failing feeds are reported but keep the answer 200: one broken feed is not a reason for
an orchestrator to restart the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from notifier.config import Config
from notifier.core.decide import HealthView, source_state
from notifier.core.model import isoformat_z
from notifier.errors import NotifierError
from notifier.runtime.metrics import Metrics
from notifier.store import Store

log = logging.getLogger("notifier.runtime.health")

# /healthz and /metrics answer from a snapshot refreshed at most this often.
STATUS_TTL_S = 1.0

StatusFn = Callable[[], Awaitable[dict[str, Any]]]
# (subscriber id, token) -> the unsubscribed address, or None for an invalid link.
UnsubscribeFn = Callable[[str, str], Awaitable[str | None]]

_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>Unsubscribe</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
{body}</body></html>"""


class HealthServer:
    """A small aiohttp server: ``GET /healthz`` (JSON status) and ``GET /metrics``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Metrics,
        status: StatusFn,
        refresh_metrics: bool = True,
        unsubscribe: UnsubscribeFn | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.status = status
        # Refresh the store-derived gauges on each scrape, so they are current even
        # when nothing else has touched the queue for a while.
        self.refresh_metrics = refresh_metrics
        self.unsubscribe = unsubscribe
        # The address as configured (before port 0 became a real port): a reload
        # restarts the server only when this changes.
        self.requested = f"{host}:{port}"
        self._runner: web.AppRunner | None = None
        # The rendered /metrics body and when: a render costs ~1 ms of the delivery
        # loop's CPU, so 50 scrapers a second share one render per STATUS_TTL_S.
        self._metrics_body: tuple[float, bytes] | None = None

    async def start(self) -> None:
        """Bind and serve; ``.port`` is the bound port afterwards (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        if self.unsubscribe is not None:
            app.router.add_get("/unsubscribe/{subscriber}/{token}", self._unsubscribe_form)
            app.router.add_post("/unsubscribe/{subscriber}/{token}", self._unsubscribe_post)
        # No access log: a scrape every 15 s would drown the daemon's own log lines.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise NotifierError(
                f"cannot serve health on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _read_status(self) -> dict[str, Any]:
        try:
            return await self.status()
        except Exception as exc:  # a probe gets an answer, never a 500 with a traceback
            log.exception("health status failed")
            return {"up": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _unsubscribe_form(self, request: web.Request) -> web.Response:
        """A GET (a person, or a mail scanner following links) only shows a button."""
        body = (
            "<h1>Unsubscribe from tariff alerts?</h1>"
            '<form method="post"><button type="submit" style="font-size:1rem;padding:.5rem 1rem">'
            "Unsubscribe</button></form>"
        )
        return web.Response(text=_PAGE.format(body=body), content_type="text/html")

    async def _unsubscribe_post(self, request: web.Request) -> web.Response:
        """RFC 8058 one-click POST: act, answer 200, never redirect."""
        assert self.unsubscribe is not None
        target = await self.unsubscribe(
            request.match_info["subscriber"], request.match_info["token"]
        )
        if target is None:
            body = "<h1>This unsubscribe link is not valid.</h1>"
            return web.Response(status=404, text=_PAGE.format(body=body), content_type="text/html")
        body = "<h1>You are unsubscribed.</h1><p>No more alerts will be sent there.</p>"
        return web.Response(text=_PAGE.format(body=body), content_type="text/html")

    async def _healthz(self, request: web.Request) -> web.Response:
        status = await self._read_status()
        code = 200 if status.get("up") else 503
        return web.json_response(status, status=code, headers={"Cache-Control": "no-store"})

    async def _metrics(self, request: web.Request) -> web.Response:
        cached = self._metrics_body
        if cached is None or time.monotonic() - cached[0] >= STATUS_TTL_S:
            if self.refresh_metrics:
                status = await self._read_status()
                if status.get("up"):
                    self.metrics.apply_status(status)
            cached = self._metrics_body = (time.monotonic(), self.metrics.render())
        return web.Response(
            body=cached[1],
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )


class HealthService:
    """The health server of a daemon: where it listens follows the current runtime (a
    reload may move or drop it), and what it answers comes from a snapshot of the store
    refreshed at most every ``STATUS_TTL_S``, so 50 probes a second cost the store two
    queries a second and never slow delivery."""

    def __init__(self, *, metrics: Metrics, status: StatusFn, unsubscribe: UnsubscribeFn) -> None:
        self.metrics = metrics
        self.status = status
        self.unsubscribe = unsubscribe
        self.server: HealthServer | None = None
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._refresh: asyncio.Lock = asyncio.Lock()
        self._store_down = False  # the last snapshot found the store unreadable

    @property
    def address(self) -> str | None:
        return f"{self.server.host}:{self.server.port}" if self.server is not None else None

    async def follow(self, wanted: str | None) -> None:
        """Serve on ``wanted`` (HOST:PORT; port 0 picks one, logged), or stop serving."""
        current = self.server
        if current is not None and wanted == current.requested:
            return
        await self.stop()
        if not wanted:
            return
        host, _, port = wanted.rpartition(":")
        server = HealthServer(
            host=host.strip("[]"),
            port=int(port),
            metrics=self.metrics,
            status=self._answer,
            unsubscribe=self.unsubscribe,
        )
        server.requested = wanted
        await server.start()
        self.server = server
        log.info("health on http://%s:%d/healthz", server.host, server.port)

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def _answer(self) -> dict[str, Any]:
        status = await self.status()
        if self.address is not None:
            status["health"] = self.address
        return status

    async def snapshot(self, read: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """``read()`` at most once per ``STATUS_TTL_S`` (concurrent callers share one)."""
        async with self._refresh:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= STATUS_TTL_S:
                self._cache = (now, await read())
                self._note_store(self._cache[1])
            return dict(self._cache[1])

    def _note_store(self, status: Mapping[str, Any]) -> None:
        """One log line per change of the store's readability, not one per refresh."""
        down = status.get("status") == "down"
        if down and not self._store_down:
            log.error("health: %s; /healthz answers 503 until it can be read", status.get("error"))
        elif self._store_down and not down:
            log.info("health: state store readable again")
        self._store_down = down


def _at(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


async def store_status(
    store: Store,
    config: Config,
    *,
    started_at: datetime,
    next_polls: Mapping[str, datetime | None],
    now: datetime,
) -> dict[str, Any]:
    """The ``/healthz`` body from the state store, for the configured sources.

    Each source has a state (``ok``, ``failing``, ``stale``; CONTRACT "Trust"). The answer
    is ``"status": "degraded"`` with ``reasons`` when sources fail, deliveries are dead or
    endpoints are gone (410, under the subscriber's current config entry; listed in
    ``gone_endpoints`` with masked targets) (still HTTP 200: one broken feed is no reason
    to restart the daemon), and ``up: false`` (503) when the store cannot be read.
    ``config_hash`` names the config this answer was computed for.
    """
    from notifier.delivery.masking import shown_target
    from notifier.runtime.metrics import config_hash

    subscribers = {s.id: s for s in config.subscribers}
    try:
        states = await store.feed_states()
        counts = await store.counts()
        gone = await store.gone_endpoints({s.id: s.config_hash for s in config.subscribers})
    except NotifierError as exc:
        log.debug("health: state store unreadable: %s", exc)  # HealthService logs changes
        return {
            "up": False,
            "status": "down",
            "started_at": _at(started_at),
            "error": f"state store unreadable: {exc}",
        }
    report: dict[str, dict[str, Any]] = {}
    for feed in config.feeds:
        state = states.get(feed.id)
        view = HealthView(
            failures=state.failures if state else 0,
            last_ok_at=state.last_ok_at if state else None,
            first_seen_at=state.last_ok_at if state else None,
            last_error=state.last_error if state else None,
        )
        report[feed.id] = {
            "kind": feed.kind,
            "state": source_state(
                view, now=now, alert_after=feed.alert_after, stale_after=feed.stale_limit
            ),
            "last_poll_at": _at(state.last_poll_at) if state else None,
            "last_ok_at": _at(view.last_ok_at),
            "failures": view.failures,
            "last_error": view.last_error,
            "failing": view.failures > 0,
            "next_poll_at": _at(next_polls.get(feed.id)),
        }
    reasons = [
        f"source {fid} is {item['state']}: {item['last_error']}"
        for fid, item in report.items()
        if item["state"] != "ok"
    ]
    if counts.get("dead"):
        reasons.append(f"{counts['dead']} dead deliveries")
    gone_items = []
    for endpoint in gone:
        sub = subscribers.get(endpoint.subscriber_id)
        target = shown_target(endpoint.url, subscriber=sub, env_values=config.env_values)
        gone_items.append(
            {"subscriber": endpoint.subscriber_id, "target": target, "since": _at(endpoint.at)}
        )
        reasons.append(
            f"webhook {target} of subscriber {endpoint.subscriber_id} is gone (410 since "
            f"{_at(endpoint.at)}); `subscribers unblock {endpoint.subscriber_id}` lifts it"
        )
    return {
        "up": True,
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "started_at": _at(started_at),
        "config_hash": config_hash(config),
        "sources": report,
        "feeds": report,
        "failing_feeds": sorted(fid for fid, item in report.items() if item["failing"]),
        "queue_depth": counts.get("queued", 0),
        "dead_deliveries": counts.get("dead", 0),
        "gone_endpoints": gone_items,
    }
