"""fetch_feed against a real aiohttp.web server on 127.0.0.1: validators, caps, deadline.

Each hostile endpoint is what PITFALLS.md says feedparser's own fetcher would not survive.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from notifier.errors import FetchError
from notifier.sources.http import fetch_feed
from notifier.sources.rss import parse_feed

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>FR</title>
<item><title>Adjusting Imports of Automobile Parts</title>
<link>https://www.federalregister.gov/d/2025-05930</link>
<guid>https://www.federalregister.gov/d/2025-05930</guid></item></channel></rss>"""
ETAG = '"fr-v1"'
LAST_MODIFIED = "Thu, 03 Apr 2025 04:00:00 GMT"
CAP = 64 * 1024  # max_bytes in these tests


def gzip_bombs() -> dict[str, bytes]:
    """Small gzip bodies that inflate to 64 MB (one member) and 256 MB (256 members,
    which RFC 1952 §2.2 allows). Built in 1 MB steps: never 64 MB at once."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(2**20)
    single = b"".join([*(compressor.compress(block) for _ in range(64)), compressor.flush()])
    return {"single-member": single, "multi-member": gzip.compress(block, 9) * 256}


@dataclass
class FeedServer:
    server: TestServer
    requests: list[web.BaseRequest] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


def make_app(  # noqa: C901 (one small handler per endpoint)
    requests: list[web.BaseRequest], bombs: dict[str, bytes]
) -> web.Application:
    async def feed(request: web.Request) -> web.StreamResponse:
        requests.append(request)
        validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers=validators)
        return web.Response(body=FEED, content_type="application/rss+xml", headers=validators)

    async def feed_encoded(request: web.Request) -> web.StreamResponse:
        encoding = request.match_info["encoding"]
        wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15}[encoding]
        compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
        return web.Response(
            body=compressor.compress(FEED) + compressor.flush(),
            headers={
                "Content-Encoding": encoding.removeprefix("raw-"),
                "Content-Type": "application/rss+xml",
            },
        )

    async def big_with_length(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * (CAP + 1))

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(CAP // 1024 + 10):
            await response.write(b"x" * 1024)
        return response

    async def bomb(request: web.Request) -> web.StreamResponse:
        body = bombs[request.match_info["kind"]]
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        for byte in FEED * 100:  # ~1 byte per 0.2 s: the feed would take ~15 minutes
            await response.write(bytes([byte]))
            await asyncio.sleep(0.2)
        return response

    def redirect(location: str) -> web.Response:
        return web.Response(status=302, headers={"Location": location})

    async def loop_a(request: web.Request) -> web.StreamResponse:
        return redirect("/loop-b")

    async def loop_b(request: web.Request) -> web.StreamResponse:
        return redirect("/loop-a")

    async def chain(request: web.Request) -> web.StreamResponse:
        hop = int(request.match_info["hop"])
        return redirect(f"/chain/{hop + 1}") if hop < 10 else web.Response(body=FEED)

    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": "/feed"})

    async def to_ftp(request: web.Request) -> web.StreamResponse:
        return redirect("ftp://127.0.0.1/feed.xml")

    async def to_file(request: web.Request) -> web.StreamResponse:
        return redirect("file:///etc/passwd")

    async def error(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="boom\nwith a second line")

    app = web.Application()
    app.router.add_get("/feed", feed)
    app.router.add_get("/encoded/{encoding}", feed_encoded)
    app.router.add_get("/big-with-length", big_with_length)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/bomb/{kind}", bomb)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/loop-a", loop_a)
    app.router.add_get("/loop-b", loop_b)
    app.router.add_get("/chain/{hop}", chain)
    app.router.add_get("/moved", moved)
    app.router.add_get("/to-ftp", to_ftp)
    app.router.add_get("/to-file", to_file)
    app.router.add_get("/error", error)
    return app


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return gzip_bombs()


@pytest.fixture
async def feed_server(bombs: dict[str, bytes]) -> AsyncIterator[FeedServer]:
    requests: list[web.BaseRequest] = []
    server = TestServer(make_app(requests, bombs), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield FeedServer(server, requests)
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def fetch(session: aiohttp.ClientSession, url: str, **kwargs: object) -> object:
    options: dict[str, object] = {"etag": None, "last_modified": None, "max_bytes": CAP}
    return await fetch_feed(session, url, **{**options, **kwargs})  # type: ignore[arg-type]


# --- validators ----------------------------------------------------------------------------


async def test_conditional_get_is_answered_304_with_no_body(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    first = await fetch_feed(session, feed_server.url("/feed"), etag=None, last_modified=None)
    second = await fetch_feed(
        session, feed_server.url("/feed"), etag=first.etag, last_modified=first.last_modified
    )

    assert (first.status, first.body, first.etag) == (200, FEED, ETAG)
    assert first.last_modified == LAST_MODIFIED
    assert first.body_hash == hashlib.sha256(FEED).hexdigest()
    assert first.content_type == "application/rss+xml"
    assert "If-None-Match" not in feed_server.requests[0].headers
    conditional = feed_server.requests[1].headers
    assert conditional["If-None-Match"] == ETAG
    assert conditional["If-Modified-Since"] == LAST_MODIFIED
    assert conditional["User-Agent"].startswith("tariff-notifier/")
    assert (second.status, second.body, second.body_hash) == (304, None, None)
    assert (second.etag, second.last_modified) == (ETAG, LAST_MODIFIED)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_body_is_decoded_and_hashed_as_decoded(
    feed_server: FeedServer, session: aiohttp.ClientSession, encoding: str
) -> None:
    url = feed_server.url(f"/encoded/{encoding}")
    result = await fetch_feed(session, url, etag=None, last_modified=None)

    assert result.body == FEED
    assert result.body_hash == hashlib.sha256(FEED).hexdigest()
    assert parse_feed(result.body, content_type=result.content_type).entries


async def test_redirect_is_followed_and_final_url_reported(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    result = await fetch_feed(session, feed_server.url("/moved"), etag=None, last_modified=None)

    assert result.body == FEED
    assert result.final_url == feed_server.url("/feed")


async def test_many_unchanged_feeds_answer_304_quickly(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    # Design guard for the 1,000-feed benchmark: our per-fetch overhead stays small.
    url = feed_server.url("/feed")
    started = time.perf_counter()
    results = await asyncio.gather(
        *(fetch_feed(session, url, etag=ETAG, last_modified=None) for _ in range(300))
    )

    assert {r.status for r in results} == {304}
    assert time.perf_counter() - started < 3


# --- caps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/big-with-length", rf"^Content-Length {CAP + 1} exceeds the {CAP}-byte cap$"),
        ("/big-chunked", rf"^body exceeds the {CAP}-byte cap$"),
    ],
)
async def test_body_above_max_bytes_fails(
    feed_server: FeedServer, session: aiohttp.ClientSession, path: str, reason: str
) -> None:
    with pytest.raises(FetchError, match=reason):
        await fetch(session, feed_server.url(path))


@pytest.mark.parametrize("kind", ["single-member", "multi-member"])
async def test_gzip_bomb_fails_without_inflating_it(
    feed_server: FeedServer, session: aiohttp.ClientSession, bombs: dict[str, bytes], kind: str
) -> None:
    cap = 2**20
    assert len(bombs[kind]) < cap  # the compressed body alone passes the cap
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match=rf"^decompressed body exceeds the {cap}-byte cap$"):
            await fetch(session, feed_server.url(f"/bomb/{kind}"), max_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 16 * 2**20  # 64-256 MB inflated would show here


# --- redirects and schemes -------------------------------------------------------------------


async def test_redirect_loop_fails(feed_server: FeedServer, session: aiohttp.ClientSession) -> None:
    with pytest.raises(FetchError, match=r"^redirect loop$"):
        await fetch(session, feed_server.url("/loop-a"))


async def test_too_many_redirects_fail(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError, match=r"^more than 5 redirects$"):
        await fetch(session, feed_server.url("/chain/0"))
    ok = await fetch_feed(
        session, feed_server.url("/chain/0"), etag=None, last_modified=None, max_redirects=10
    )
    assert ok.body == FEED


@pytest.mark.parametrize(("path", "scheme"), [("/to-ftp", "ftp:"), ("/to-file", "file:")])
async def test_redirect_to_a_non_http_scheme_fails(
    feed_server: FeedServer, session: aiohttp.ClientSession, path: str, scheme: str
) -> None:
    with pytest.raises(FetchError, match=f"^redirect target scheme {scheme} refused"):
        await fetch(session, feed_server.url(path))


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml", "/etc/passwd", "feed://x.example/"]
)
async def test_non_http_url_is_refused_before_any_io(
    session: aiohttp.ClientSession, url: str
) -> None:
    with pytest.raises(FetchError, match=r"^feed URL scheme .* refused: http\(s\) only$"):
        await fetch(session, url)


# --- deadline and failures ---------------------------------------------------------------


async def test_trickling_server_fails_within_the_deadline(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(3):  # the proof: fetch_feed gave up on its own, in time
        with pytest.raises(FetchError, match=r"^no complete answer within 1 s$"):
            await fetch(session, feed_server.url("/trickle"), timeout_s=1)


async def test_http_500_fails_with_a_one_line_reason(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError, match=r"^HTTP 500 Internal Server Error$"):
        await fetch(session, feed_server.url("/error"))


async def test_http_error_is_a_fetch_error_with_a_raise_for_status_session(
    feed_server: FeedServer,
) -> None:
    async with aiohttp.ClientSession(raise_for_status=True) as strict:
        with pytest.raises(FetchError, match=r"^HTTP 500 "):
            await fetch(strict, feed_server.url("/error"))


async def test_connection_refused_fails(session: aiohttp.ClientSession) -> None:
    with socket.socket() as bound_not_listening:  # a port nobody accepts on
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        with pytest.raises(FetchError, match=f"^cannot connect to 127.0.0.1:{port}: "):
            await fetch(session, f"http://127.0.0.1:{port}/feed")


async def test_unresolvable_host_fails(session: aiohttp.ClientSession) -> None:
    # .invalid never resolves (RFC 6761 §6.4); without a resolver this may time out instead.
    with pytest.raises(FetchError, match=r"^(DNS lookup failed for|no complete answer)"):
        await fetch(session, "http://feed.tariff-notifier.invalid/rss", timeout_s=2)
