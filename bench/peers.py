"""Local peers for the benchmarks, each in a process of its own.

A peer that shares the GIL with the system under test makes every ratio meaningless:
the benchmark would measure the peer. So each peer runs in a separate process
(``multiprocessing`` spawn) and does as little as it can: the SMTP sink is aiosmtpd with
a handler that only counts, the webhook receiver answers 204 and notes the arrival time,
the feed server answers from bodies built once.

The parent talks to a peer through shared counters (SMTP) or a small HTTP control API
under ``/_ctl/`` (webhook receiver, feed server). Nothing here imports from ``tests/``.

    with SmtpSink() as smtp:          # smtp.port, smtp.count(), smtp.window()
    with WebhookReceiver() as hooks:  # hooks.url("/h/1"), hooks.stats(), hooks.arrivals()
    with FeedServer(feeds=200) as fs: # fs.url(7), fs.set(generation=1, mode="etag")
    with FeedServer(feeds=200, flavour="text") as fs:  # Atom, plain-text summaries
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import urllib.request
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

_SPAWN = multiprocessing.get_context("spawn")
_START_TIMEOUT_S = 30.0


def _ready(conn: multiprocessing.connection.Connection, port: int) -> None:
    conn.send(port)
    conn.close()


class _PeerProcess:
    """Start a peer function in its own process and learn the port it listens on."""

    target: Any = None

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.port = 0
        self._process: Any = None

    def _args(self) -> tuple[Any, ...]:
        return ()

    def start(self) -> None:
        parent, child = _SPAWN.Pipe()
        self._process = _SPAWN.Process(
            target=type(self).target, args=(child, self.options, *self._args()), daemon=True
        )
        self._process.start()
        child.close()
        if not parent.poll(_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"{type(self).__name__} did not start")
        self.port = int(parent.recv())
        parent.close()

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    def stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        self._process = None

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _quiet_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop


# --- SMTP sink ---------------------------------------------------------------------------


class SmtpSink(_PeerProcess):
    """aiosmtpd on 127.0.0.1 whose handler accepts every message and only counts it.

    ``count()`` is the number of messages accepted; ``window()`` the (first, last)
    acceptance times (``time.time()``), for a rate measured at the peer.
    """

    def __init__(self) -> None:
        super().__init__()
        # [count, first accepted at, last accepted at]; one writer (the sink).
        self._shared = _SPAWN.Array("d", 3, lock=False)

    def _args(self) -> tuple[Any, ...]:
        return (self._shared,)

    @staticmethod
    def target(conn: Any, options: dict[str, Any], shared: Any) -> None:
        _quiet_signals()
        asyncio.run(_serve_smtp(conn, shared))

    def reset(self) -> None:
        self._shared[0] = self._shared[1] = self._shared[2] = 0.0

    def count(self) -> int:
        return int(self._shared[0])

    def window(self) -> tuple[float, float]:
        return self._shared[1], self._shared[2]

    def wait_for(self, count: int, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.count() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


async def _serve_smtp(conn: Any, shared: Any) -> None:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.time()
            if shared[0] == 0:
                shared[1] = now
            shared[0] += 1
            shared[2] = now
            return "250 OK"

    handler = Handler()
    loop = asyncio.get_running_loop()
    # hostname given: aiosmtpd would otherwise call socket.getfqdn() per connection.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.local", ident="bench-sink"),
        host="127.0.0.1",
        port=0,
    )
    _ready(conn, server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


# --- webhook receiver --------------------------------------------------------------------


class WebhookReceiver(_PeerProcess):
    """aiohttp.web answering 204 to every POST, noting (arrival time, path).

    Paths under ``/slow/`` answer after ``slow_s`` seconds (one slow endpoint among
    fast ones). With ``keep_bodies`` the bodies are kept too (for the calendar
    benchmark, which needs the rule id of each arrival).
    """

    def __init__(self, *, slow_s: float = 2.0, keep_bodies: bool = False) -> None:
        super().__init__(slow_s=slow_s, keep_bodies=keep_bodies)

    @staticmethod
    def target(conn: Any, options: dict[str, Any]) -> None:
        _quiet_signals()
        asyncio.run(_serve_webhooks(conn, options))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _ctl(self, what: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.url(f"/_ctl/{what}"), method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self._ctl("reset", "POST")

    def stats(self) -> dict[str, Any]:
        """``count``, ``fast`` (not under /slow/), ``first``, ``last``, ``last_fast``."""
        return dict(self._ctl("stats"))

    def arrivals(self) -> list[list[Any]]:
        """``[time, path, body or None]`` per request, in arrival order."""
        return list(self._ctl("arrivals"))

    def wait_for(self, count: int, *, timeout_s: float, fast: bool = False) -> bool:
        deadline = time.monotonic() + timeout_s
        key = "fast" if fast else "count"
        while self.stats()[key] < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


async def _serve_webhooks(conn: Any, options: dict[str, Any]) -> None:
    from aiohttp import web

    slow_s = float(options["slow_s"])
    keep = bool(options["keep_bodies"])
    state: dict[str, Any] = {}

    def reset() -> None:
        state.update(count=0, fast=0, first=0.0, last=0.0, last_fast=0.0, arrivals=[])

    reset()

    async def hook(request: web.Request) -> web.StreamResponse:
        path = request.path
        slow = path.startswith("/slow/")
        body = await request.read() if keep else None
        if slow:
            await asyncio.sleep(slow_s)
        now = time.time()
        state["count"] += 1
        state["first"] = state["first"] or now
        state["last"] = now
        if not slow:
            state["fast"] += 1
            state["last_fast"] = now
        state["arrivals"].append((now, path, body.decode("utf-8", "replace") if body else None))
        return web.Response(status=204)

    async def ctl(request: web.Request) -> web.Response:
        what = request.match_info["what"]
        if what == "reset":
            reset()
            return web.json_response({})
        if what == "arrivals":
            return web.json_response(state["arrivals"])
        return web.json_response({k: v for k, v in state.items() if k != "arrivals"})

    app = web.Application(client_max_size=2**20)
    app.router.add_route("*", "/_ctl/{what}", ctl)
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    _ready(conn, runner.addresses[0][1])
    await asyncio.Event().wait()


# --- feed server -------------------------------------------------------------------------

_COUNTRIES = ("Japan", "China", "Canada", "Mexico", "Vietnam", "Germany", "India", "Korea")
_GOODS = ("steel", "aluminum", "auto parts", "semiconductors", "lumber", "copper", "furniture")


def entry_html(feed: int, number: int) -> str:
    """An entry description: a few sentences of HTML, about 600 characters."""
    country = _COUNTRIES[(feed + number) % len(_COUNTRIES)]
    goods = _GOODS[(feed * 3 + number) % len(_GOODS)]
    rate = 10 + (feed + number) % 4 * 5
    return (
        f"<p>The Department of Commerce announced that imports of <b>{goods}</b> from "
        f"{country} will be subject to an additional ad valorem duty of {rate}% starting "
        f"2025-06-{1 + number % 28:02d}. The notice (docket {feed}-{number}) explains the "
        "scope of the action, the HTS subheadings covered and the procedure for "
        "inclusion requests.</p><p>Importers should review entries that are in transit "
        "and consult <a href='https://www.cbp.gov/trade'>CBP guidance</a> on the "
        "applicable Chapter 99 provisions. Comments are due within 30 days of "
        "publication in the Federal Register.</p>"
    )


def entry_text(feed: int, number: int) -> str:
    """The same entry description as plain text (no markup), about 550 characters."""
    country = _COUNTRIES[(feed + number) % len(_COUNTRIES)]
    goods = _GOODS[(feed * 3 + number) % len(_GOODS)]
    rate = 10 + (feed + number) % 4 * 5
    return (
        f"The Department of Commerce announced that imports of {goods} from {country} "
        f"will be subject to an additional ad valorem duty of {rate}% starting "
        f"2025-06-{1 + number % 28:02d}. The notice (docket {feed}-{number}) explains the "
        "scope of the action, the HTS subheadings covered and the procedure for "
        "inclusion requests.\n\nImporters should review entries that are in transit and "
        "consult CBP guidance on the applicable Chapter 99 provisions. Comments are due "
        "within 30 days of publication in the Federal Register."
    )


def feed_body(
    feed: int, *, generation: int, per_generation: int, window: int, flavour: str = "html"
) -> bytes:
    """One feed: the newest ``window`` entries after ``generation`` steps.

    Generation 0 has ``per_generation`` entries; each later generation adds that many
    new ones at the top. ``flavour`` ``"html"``: RSS 2.0 with ~600 characters of HTML per
    description; ``"text"``: Atom with ``type="text"`` summaries (feedparser reports them
    as text/plain, which rss2email sends as they are: its best case).
    """
    total = per_generation * (generation + 1)
    numbers = range(total - 1, max(total - window, 0) - 1, -1)
    if flavour == "text":
        return _atom_body(feed, numbers)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>',
        f"<title>Bench feed {feed}</title><link>https://feeds.example.test/{feed}</link>",
        "<description>benchmark feed</description>",
    ]
    for number in numbers:
        country = _COUNTRIES[(feed + number) % len(_COUNTRIES)]
        goods = _GOODS[(feed * 3 + number) % len(_GOODS)]
        published = 1_745_000_000 + number * 3600
        parts.append(
            "<item>"
            f"<title>Notice {feed}-{number}: new duty on {goods} from {country}</title>"
            f"<link>https://feeds.example.test/{feed}/{number}</link>"
            f"<description>{escape(entry_html(feed, number))}</description>"
            f"<pubDate>{format_datetime(_utc(published))}</pubDate>"
            f'<guid isPermaLink="false">bench-{feed}-{number}</guid>'
            "</item>"
        )
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


def _atom_body(feed: int, numbers: range) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>Bench feed {feed}</title><id>urn:bench:feed:{feed}</id>",
        f'<link href="https://feeds.example.test/{feed}"/>',
        f"<updated>{_utc(1_745_000_000 + numbers.start * 3600).isoformat()}</updated>",
    ]
    for number in numbers:
        country = _COUNTRIES[(feed + number) % len(_COUNTRIES)]
        goods = _GOODS[(feed * 3 + number) % len(_GOODS)]
        stamp = _utc(1_745_000_000 + number * 3600).isoformat()
        parts.append(
            "<entry>"
            f"<title>Notice {feed}-{number}: new duty on {goods} from {country}</title>"
            f"<id>bench-{feed}-{number}</id>"
            f'<link href="https://feeds.example.test/{feed}/{number}"/>'
            f"<published>{stamp}</published><updated>{stamp}</updated>"
            f'<summary type="text">{escape(entry_text(feed, number))}</summary>'
            "</entry>"
        )
    parts.append("</feed>\n")
    return "".join(parts).encode("utf-8")


def _utc(epoch: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


class FeedServer(_PeerProcess):
    """Serves ``/feeds/<n>`` for n in ``range(feeds)`` from bodies built once per
    generation.

    ``mode``: ``"etag"`` sends an ETag and answers 304 to a matching If-None-Match;
    ``"plain"`` sends no validator and always answers 200 with the same body (a server
    that ignores validators).
    """

    def __init__(
        self, *, feeds: int, per_generation: int = 20, window: int = 40, flavour: str = "html"
    ) -> None:
        super().__init__(feeds=feeds, per_generation=per_generation, window=window, flavour=flavour)

    @staticmethod
    def target(conn: Any, options: dict[str, Any]) -> None:
        _quiet_signals()
        asyncio.run(_serve_feeds(conn, options))

    def url(self, feed: int) -> str:
        return f"http://127.0.0.1:{self.port}/feeds/{feed}"

    def _ctl(self, what: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/_ctl/{what}", method=method)
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def set(self, *, generation: int | None = None, mode: str | None = None) -> None:
        """Switch every feed to a generation and/or a validator mode (builds bodies)."""
        if generation is not None:
            self._ctl(f"generation/{generation}", "POST")
        if mode is not None:
            self._ctl(f"mode/{mode}", "POST")

    def stats(self) -> dict[str, int]:
        """Requests answered: ``ok`` (200) and ``not_modified`` (304) since the last reset."""
        return dict(self._ctl("stats"))

    def reset(self) -> None:
        self._ctl("reset", "POST")


async def _serve_feeds(conn: Any, options: dict[str, Any]) -> None:
    from aiohttp import web

    count = int(options["feeds"])
    per_generation = int(options["per_generation"])
    window = int(options["window"])
    flavour = str(options.get("flavour", "html"))
    content_type = "application/atom+xml" if flavour == "text" else "application/rss+xml"
    state: dict[str, Any] = {"mode": "etag", "ok": 0, "not_modified": 0}

    def build(generation: int) -> None:
        bodies = [
            feed_body(
                f,
                generation=generation,
                per_generation=per_generation,
                window=window,
                flavour=flavour,
            )
            for f in range(count)
        ]
        state["bodies"] = bodies
        state["etags"] = ['"' + hashlib.sha256(b).hexdigest()[:20] + '"' for b in bodies]

    build(0)

    async def feed(request: web.Request) -> web.Response:
        index = int(request.match_info["n"])
        if not 0 <= index < count:
            return web.Response(status=404)
        if state["mode"] == "plain":
            state["ok"] += 1
            return web.Response(body=state["bodies"][index], content_type=content_type)
        etag = state["etags"][index]
        if request.headers.get("If-None-Match") == etag:
            state["not_modified"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        state["ok"] += 1
        return web.Response(
            body=state["bodies"][index],
            content_type=content_type,
            headers={"ETag": etag},
        )

    async def ctl(request: web.Request) -> web.Response:
        what, _, value = request.match_info["what"].partition("/")
        if what == "generation":
            build(int(value))
        elif what == "mode":
            state["mode"] = value
        elif what == "reset":
            state.update(ok=0, not_modified=0)
        return web.json_response({"ok": state["ok"], "not_modified": state["not_modified"]})

    app = web.Application()
    app.router.add_get("/feeds/{n}", feed)
    app.router.add_route("*", "/_ctl/{what:.*}", ctl)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    _ready(conn, runner.addresses[0][1])
    await asyncio.Event().wait()


# --- measuring processes -----------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, in KiB; 0 when it has gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def children_of(pid: int) -> list[int]:
    """Direct and indirect child pids (from /proc), for pools that a process starts."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
