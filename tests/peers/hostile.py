"""A feed server on 127.0.0.1 that misbehaves on purpose, one route per fault.

``await HostileFeeds().start()``, then point feeds at ``server.url(name)``:

- ``bomb``: billion laughs, the DTD on one line (feedparser's own filter only removes
  ``<!ENTITY`` at the start of a line), 10 levels of 10 references: 10^10 expansions.
- ``xxe``: an external entity naming a local file (feedparser issue #107).
- ``huge``: a 50 MB body streamed without ``Content-Length`` (the cap must stop reading).
- ``huge-declared``: the same, announced by ``Content-Length`` (refused before reading).
- ``gzip-bomb``: 50 MB of zeros as a ~50 KB gzip body (the decoded size must be capped).
- ``random``: 256 KB of random bytes served as ``application/rss+xml``.
- ``loop``: ``/loop`` and ``/loop-b`` redirect to each other.
- ``endless``: ``/endless/<n>`` redirects to ``/endless/<n+1>`` forever (no loop to see).
- ``to-file``: a redirect to ``file:///etc/passwd``.
- ``trickle``: a well-formed start, then one byte a second, forever.

``requests[name]`` counts hits per route; ``disconnects[name]`` counts answers the client
abandoned (a capped body, a trickle given up).
"""

from __future__ import annotations

import asyncio
import gzip
import random
from collections import Counter

from aiohttp import web

BIG_BYTES = 50 * 2**20
_CHUNK = 64 * 1024
_RSS_HEAD = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'


def billion_laughs(levels: int = 10, fanout: int = 10) -> bytes:
    """An RSS document whose one entity expands to ``fanout ** levels`` copies of "lol"."""
    decls = ['<!ENTITY l0 "lol">']
    for level in range(1, levels):
        refs = f"&l{level - 1};" * fanout
        decls.append(f'<!ENTITY l{level} "{refs}">')
    dtd = "<!DOCTYPE rss [" + "".join(decls) + "]>"  # one line on purpose
    item = f"<item><title>&l{levels - 1};</title><guid>bomb</guid></item>"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        + dtd
        + '<rss version="2.0"><channel><title>bomb</title>'
        + item
        + "</channel></rss>"
    ).encode()


def external_entity(path: str = "/etc/passwd") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<!DOCTYPE rss [\n<!ENTITY secret SYSTEM "file://{path}">\n]>\n'
        '<rss version="2.0"><channel><title>xxe</title>'
        "<item><title>leak &secret; here</title><guid>xxe</guid>"
        "<description>&secret;</description></item></channel></rss>"
    ).encode()


class HostileFeeds:
    """The misbehaving routes listed in the module docstring."""

    def __init__(self, *, seed: int = 6) -> None:
        self.requests: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self._random = random.Random(seed).randbytes(256 * 1024)
        self._gzip_bomb = gzip.compress(b"\0" * BIG_BYTES, compresslevel=9)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def start(self) -> HostileFeeds:
        app = web.Application()
        app.router.add_get("/bomb", self._fixed(billion_laughs(), "bomb"))
        app.router.add_get("/xxe", self._fixed(external_entity(), "xxe"))
        app.router.add_get("/random", self._fixed(self._random, "random"))
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/huge-declared", self._huge_declared)
        app.router.add_get("/gzip-bomb", self._gzip)
        app.router.add_get("/loop", self._redirect("loop", "/loop-b"))
        app.router.add_get("/loop-b", self._redirect("loop", "/loop"))
        app.router.add_get("/endless/{n}", self._endless)
        app.router.add_get("/to-file", self._redirect("to-file", "file:///etc/passwd"))
        app.router.add_get("/trickle", self._trickle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- routes --------------------------------------------------------------------------

    def _fixed(self, body: bytes, name: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            self.requests[name] += 1
            return web.Response(body=body, content_type="application/rss+xml")

        return handle

    def _redirect(self, name: str, location: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            self.requests[name] += 1
            return web.Response(status=302, headers={"Location": location})

        return handle

    async def _endless(self, request: web.Request) -> web.Response:
        self.requests["endless"] += 1
        n = int(request.match_info["n"]) + 1
        return web.Response(status=301, headers={"Location": f"/endless/{n}"})

    async def _stream(
        self, request: web.Request, name: str, *, declared: bool
    ) -> web.StreamResponse:
        self.requests[name] += 1
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        if declared:
            response.content_length = BIG_BYTES
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        filler = b"<!-- " + b"x" * (_CHUNK - 9) + b" -->"
        try:
            await response.write(_RSS_HEAD)
            for _ in range(BIG_BYTES // _CHUNK):
                await response.write(filler)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects[name] += 1
            raise
        return response

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "huge", declared=False)

    async def _huge_declared(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, "huge-declared", declared=True)

    async def _gzip(self, request: web.Request) -> web.Response:
        self.requests["gzip-bomb"] += 1
        return web.Response(
            body=self._gzip_bomb,
            headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"},
        )

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        self.requests["trickle"] += 1
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for byte in _RSS_HEAD * 1000:
                await response.write(bytes([byte]))
                await asyncio.sleep(1.0)
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects["trickle"] += 1
            raise
        return response
