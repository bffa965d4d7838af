"""Prometheus metrics of one running daemon, in a registry of its own.

Each :class:`Metrics` holds its own ``CollectorRegistry`` rather than the process-wide
default one: two apps in one process (tests, the demo) would otherwise collide on metric
names ("Duplicated timeseries in CollectorRegistry").

Counters count what this process did since it started; the gauges that describe shared
state (queue depth, dead letters, failing feeds) are set from the state store, which is
the truth across instances.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from notifier import __version__

if TYPE_CHECKING:
    from notifier.config import Config

POLL_OUTCOMES = frozenset({"ok", "not_modified", "unchanged", "error"})
SOURCE_STATES = ("ok", "failing", "stale", "held")
DELIVERY_OUTCOMES = frozenset({"sent", "retry", "failed", "dead"})
CHANNELS = ("email", "webhook")


def config_hash(config: Config) -> str:
    """A short fingerprint of a loaded config (its validated model and calendar rules):
    ``notifier_config_info{hash}`` and ``/healthz`` say which config an instance runs,
    so two instances, or one after a rejected reload, can be compared at a glance."""
    blob = json.dumps(
        {
            "model": config.model.model_dump(mode="json"),
            "rules": [rule.to_dict() for rule in config.rules],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# From a fast webhook (~50 ms) to a delivery that waited out most of the backoff
# schedule (5s, 5m, 30m, 2h, 5h, 10h, …): about one bucket per factor of 2-3.
LATENCY_BUCKETS_S = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)


class Metrics:
    """The daemon's metrics and the registry they live in."""

    def __init__(self, *, started_at_s: float | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # prometheus_client appends `_total` to counter names itself.
        self.polls = Counter(
            "notifier_polls", "Feed polls by outcome.", ["feed", "outcome"], registry=r
        )
        self.poll_failures = Counter(
            "notifier_poll_failures", "Failed feed polls.", ["feed"], registry=r
        )
        self.events = Counter("notifier_events", "Events emitted, by type.", ["type"], registry=r)
        self.deliveries = Counter(
            "notifier_deliveries",
            "Delivery attempts by channel and outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "notifier_queue_depth", "Deliveries queued (due now or later).", registry=r
        )
        self.dead_deliveries = Gauge(
            "notifier_dead_deliveries", "Deliveries that gave up (dead letters).", registry=r
        )
        self.delivery_latency = Histogram(
            "notifier_delivery_latency_seconds",
            "From delivery creation to sent, retries included.",
            ["channel"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.feed_failing = Gauge(
            "notifier_feed_failing",
            "1 while a feed's last poll failed, else 0.",
            ["feed"],
            registry=r,
        )
        self.pruned = Counter(
            "notifier_pruned_rows",
            "Rows forgotten by retention, by what they were.",
            ["kind"],
            registry=r,
        )
        self.source_state = Gauge(
            "notifier_source_state",
            "1 for the state each source is in (ok, failing, stale, held), else 0.",
            ["source", "state"],
            registry=r,
        )
        self.reloads = Counter(
            "notifier_reloads", "Config reloads (SIGHUP) by result.", ["result"], registry=r
        )
        # Per subscriber, never per target: a label per address or URL would grow without
        # bound and put endpoints (sometimes secrets) into the metrics. Only configured
        # subscribers get series (set_subscribers), so cardinality follows the config.
        self.subscriber_deliveries = Counter(
            "notifier_subscriber_deliveries",
            "Delivery attempts by configured subscriber, channel and outcome.",
            ["subscriber", "channel", "outcome"],
            registry=r,
        )
        self.gone_endpoints = Gauge(
            "notifier_gone_endpoints",
            "Endpoints that answered 410 Gone and get nothing more, by subscriber.",
            ["subscriber"],
            registry=r,
        )
        self.config_info = Gauge(
            "notifier_config_info", "The loaded config's hash (always 1).", ["hash"], registry=r
        )
        self.up = Gauge("notifier_up", "1 while the daemon runs.", registry=r)
        self.start_time = Gauge(
            "notifier_start_time_seconds", "Start time of the daemon (Unix time).", registry=r
        )
        self.build_info = Gauge(
            "notifier_build_info", "The running version (always 1).", ["version"], registry=r
        )
        self.up.set(1)
        self.start_time.set(time.time() if started_at_s is None else started_at_s)
        self.build_info.labels(version=__version__).set(1)
        # process_* (CPU, memory, open files) and python_info, in this registry.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._feeds: set[str] = set()
        self._subscribers: set[str] | None = None  # None: not scoped yet (any id counts)
        # (channel, outcome) -> the total's and the latency's series
        self._delivery_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        # (subscriber, channel, outcome) -> the subscriber's series
        self._subscriber_children: dict[tuple[str, str, str], Any] = {}
        self._config_hash: str | None = None
        self._gone: set[str] = set()

    # --- what the daemon calls -------------------------------------------------------

    def observe_poll(self, feed_id: str, outcome: str) -> None:
        """One poll of a feed: ``ok``, ``not_modified``, ``unchanged`` or ``error``."""
        if outcome not in POLL_OUTCOMES:
            raise ValueError(f"unknown poll outcome {outcome!r}")
        self._feeds.add(feed_id)
        self.polls.labels(feed=feed_id, outcome=outcome).inc()
        if outcome == "error":
            self.poll_failures.labels(feed=feed_id).inc()

    def observe_event(self, event_type: str) -> None:
        self.events.labels(type=event_type).inc()

    def observe_delivery(
        self,
        channel: str,
        outcome: str,
        latency_s: float | None = None,
        *,
        subscriber: str | None = None,
    ) -> None:
        """One attempt: ``sent``, ``retry``, ``failed`` or ``dead``.

        ``latency_s`` (creation to now) is recorded for ``sent`` only: it is the time an
        alert took to reach its subscriber, which is what an SLO is about. ``subscriber``
        also counts it per subscriber, when that subscriber is configured.
        """
        if outcome not in DELIVERY_OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r}")
        # The series' children are looked up once each (``labels`` costs a few µs, and
        # a fan-out calls this once per delivery).
        shared = self._delivery_children.get((channel, outcome))
        if shared is None:
            shared = self._delivery_children[(channel, outcome)] = (
                self.deliveries.labels(channel=channel, outcome=outcome),
                # Only sent attempts have a latency series (none appears before one).
                self.delivery_latency.labels(channel=channel) if outcome == "sent" else None,
            )
        total, latency = shared
        total.inc()
        if subscriber is not None:
            per_subscriber = self._subscriber_children.get((subscriber, channel, outcome))
            if per_subscriber is None and (
                self._subscribers is None or subscriber in self._subscribers
            ):
                per_subscriber = self._subscriber_child(subscriber, channel, outcome)
            if per_subscriber is not None:
                per_subscriber.inc()
        if latency is not None and latency_s is not None:
            latency.observe(max(latency_s, 0.0))

    def _subscriber_child(self, subscriber: str, channel: str, outcome: str) -> Any:
        child = self._subscriber_children[(subscriber, channel, outcome)] = (
            self.subscriber_deliveries.labels(
                subscriber=subscriber, channel=channel, outcome=outcome
            )
        )
        return child

    def set_queue(self, depth: int, dead: int) -> None:
        self.queue_depth.set(depth)
        self.dead_deliveries.set(dead)

    def set_feed_failing(self, feed_id: str, failing: bool) -> None:
        self._feeds.add(feed_id)
        self.feed_failing.labels(feed=feed_id).set(1 if failing else 0)

    def set_feeds(self, feed_ids: Iterable[str]) -> None:
        """Start (and after a reload, re-scope) the per-feed series.

        Each configured feed gets zero-valued series at once, so ``rate()`` and alerts on
        ``notifier_feed_failing`` work before its first poll; a feed removed from the
        config loses its series instead of reporting a stale value forever.
        """
        wanted = set(feed_ids)
        for feed_id in self._feeds - wanted:
            self._forget_feed(feed_id)
        for feed_id in wanted:
            for outcome in POLL_OUTCOMES:
                self.polls.labels(feed=feed_id, outcome=outcome)
            self.poll_failures.labels(feed=feed_id)
            if feed_id not in self._feeds:
                self.feed_failing.labels(feed=feed_id).set(0)
        self._feeds = wanted

    def set_subscribers(self, subscriber_ids: Iterable[str]) -> None:
        """Scope the per-subscriber series to the configured subscribers (at start and
        after each reload): a removed subscriber loses its series."""
        wanted = set(subscriber_ids)
        self._subscriber_children.clear()  # they hold the series of the old scope
        for sub in (self._subscribers or set()) - wanted:
            for channel in CHANNELS:
                for outcome in DELIVERY_OUTCOMES:
                    self.subscriber_deliveries.remove(sub, channel, outcome)
        self._subscribers = wanted

    def set_config(self, config: Config) -> None:
        """``notifier_config_info{hash}`` for the config now running, and the subscriber
        scope that goes with it."""
        self.set_config_hash(config_hash(config))
        self.set_subscribers(s.id for s in config.subscribers)
        # Each subscriber's "sent" series exists from the start, at 0 (rate() works before
        # its first alert): created here, while idle, and not one by one in the fan-out
        # at the instant a rule takes effect (~15 µs each).
        for sub in config.subscribers:
            for channel, used in (("email", sub.email), ("webhook", sub.webhook)):
                if used:
                    self._subscriber_child(sub.id, channel, "sent")

    def set_config_hash(self, value: str) -> None:
        if value == self._config_hash:
            return
        if self._config_hash is not None:
            self.config_info.remove(self._config_hash)
        self.config_info.labels(hash=value).set(1)
        self._config_hash = value

    def set_gone(self, counts: Mapping[str, int]) -> None:
        """Gone endpoints per subscriber (from the store)."""
        for sub in self._gone - set(counts):
            self.gone_endpoints.remove(sub)
        for sub, count in counts.items():
            self.gone_endpoints.labels(subscriber=sub).set(count)
        self._gone = set(counts)

    def set_down(self) -> None:
        """Shutting down: ``notifier_up`` drops to 0 for a last scrape."""
        self.up.set(0)

    def apply_status(self, status: Mapping[str, Any]) -> None:
        """Refresh the store-derived gauges from a ``/healthz`` status dict."""
        if "queue_depth" in status and "dead_deliveries" in status:
            self.set_queue(int(status["queue_depth"]), int(status["dead_deliveries"]))
        if isinstance(status.get("config_hash"), str):
            self.set_config_hash(status["config_hash"])
        if "gone_endpoints" in status:
            counts: dict[str, int] = {}
            for item in status["gone_endpoints"]:
                counts[item["subscriber"]] = counts.get(item["subscriber"], 0) + 1
            self.set_gone(counts)
        for feed_id, feed in status.get("feeds", {}).items():
            self.set_feed_failing(feed_id, bool(feed.get("failing")))
            if "state" in feed:
                for state in SOURCE_STATES:
                    self.source_state.labels(source=feed_id, state=state).set(
                        1 if feed["state"] == state else 0
                    )

    def observe_reload(self, *, ok: bool) -> None:
        self.reloads.labels(result="ok" if ok else "rejected").inc()

    def render(self) -> bytes:
        """The text exposition format (serve with ``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)

    # --- internals ---------------------------------------------------------------------

    def _forget_feed(self, feed_id: str) -> None:
        # `remove` ignores series that were never created.
        for outcome in POLL_OUTCOMES:
            self.polls.remove(feed_id, outcome)
        self.poll_failures.remove(feed_id)
        self.feed_failing.remove(feed_id)
        for state in SOURCE_STATES:
            self.source_state.remove(feed_id, state)
        self._feeds.discard(feed_id)
