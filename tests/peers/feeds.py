"""A feed server on 127.0.0.1 whose feeds tests edit between passes.

Serves ``/feeds/<name>`` as RSS 2.0 with an ETag (answering 304 to a matching
If-None-Match), counts requests per feed, and can be told to fail a feed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web


@dataclass
class FeedItem:
    guid: str
    title: str
    description: str = ""
    link: str | None = None
    published: datetime = field(default_factory=lambda: datetime(2025, 4, 17, 12, 0, tzinfo=UTC))


def rss(title: str, items: list[FeedItem]) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>https://example.test/</link>",
        "<description>test feed</description>",
    ]
    for item in items:
        parts.append(
            "<item>"
            f"<title>{escape(item.title)}</title>"
            f"<link>{escape(item.link or 'https://example.test/' + item.guid)}</link>"
            f"<description>{escape(item.description)}</description>"
            f"<pubDate>{format_datetime(item.published)}</pubDate>"
            f'<guid isPermaLink="false">{escape(item.guid)}</guid>'
            "</item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


class FeedServer:
    """``feeds[name]`` is a list of FeedItem; edit it and the next poll sees the change."""

    def __init__(self) -> None:
        self.feeds: dict[str, list[FeedItem]] = {}
        self.broken: dict[str, int] = {}  # name -> HTTP status to answer instead
        self.raw: dict[str, bytes] = {}  # name -> body served as is
        self.requests: dict[str, int] = {}
        self.not_modified: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/feeds/{name}"

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests[name] = self.requests.get(name, 0) + 1
        if name in self.broken:
            return web.Response(status=self.broken[name], text="broken")
        if name in self.raw:
            return web.Response(body=self.raw[name], content_type="application/rss+xml")
        if name not in self.feeds:
            return web.Response(status=404)
        body = rss(name, self.feeds[name])
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified[name] = self.not_modified.get(name, 0) + 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": etag})

    async def start(self) -> FeedServer:
        app = web.Application()
        app.router.add_get("/feeds/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
