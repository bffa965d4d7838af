"""A webhook receiver on 127.0.0.1 (aiohttp.web) that verifies Standard Webhooks.

Every request is recorded with whether its signature verified, using the
``standardwebhooks`` package and the secret configured for its path. Answers can be
scripted per path::

    async with WebhookPeer(secrets={"/erp": SECRET}) as hooks:
        hooks.script("/erp", 500, 500, 204)
        hooks.script("/busy", Reply(429, headers={"Retry-After": "7"}))
        hooks.script("/slow", Reply(hang_s=30))
        hooks.script("/flaky", Reply(drop=True))
        ...  # POST to hooks.url("/erp")
        calls = await hooks.wait_for_count(3, path="/erp")

After a path's script runs out it answers ``default`` (204). Like the SMTP peer it can
run in a background thread (``start_in_thread``) and be stopped and restarted on the
same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from standardwebhooks import Webhook

from tests.peers import LoopThread, Peer, wait_for, wait_for_sync


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 204
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang_s: float | None = None  # wait this long first (the client may give up)
    drop: bool = False  # close the connection without answering


@dataclass(frozen=True)
class WebhookCall:
    """One request as received."""

    path: str
    method: str
    headers: CIMultiDictProxy[str]  # case-insensitive
    body: bytes
    json: Any  # None when the body is not JSON
    verified: bool  # the signature verified with the path's secret
    error: str | None  # why not verified ("no secret for this path", the library's reason)
    received_at: float  # time.time()


class WebhookPeer(Peer):
    """A recording, verifying, scriptable webhook receiver."""

    thread_name = "webhook-peer"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secrets: Mapping[str, str] | None = None,
        default: Reply | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.default = default or Reply()
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = dict(secrets or {})
        self._scripts: dict[str, deque[Reply]] = {}
        self._calls: list[WebhookCall] = []
        self._runner: web.ServerRunner | None = None
        self._thread: LoopThread | None = None
        self._stopping: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def _start(self) -> None:
        if self._runner is not None:
            return
        self._stopping = asyncio.Event()
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._stopping is not None:
            self._stopping.set()
        await runner.cleanup()

    # --- scripting ---------------------------------------------------------------------

    def set_secret(self, path: str, secret: str | None) -> None:
        """The ``whsec_`` secret requests to ``path`` are verified with (None: unsigned)."""
        with self._lock:
            if secret is None:
                self._secrets.pop(path, None)
            else:
                self._secrets[path] = secret

    def script(self, path: str, *replies: Reply | int) -> None:
        """Queue answers for ``path`` (an int is a bare status); then ``default``."""
        with self._lock:
            queue = self._scripts.setdefault(path, deque())
            queue.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else self.default

    # --- the receiver ------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            secret = self._secrets.get(request.path)
        verified, error = _verify(secret, body, request.headers)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        call = WebhookCall(
            path=request.path,
            method=request.method,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            json=parsed,
            verified=verified,
            error=error,
            received_at=time.time(),
        )
        with self._lock:
            self._calls.append(call)
        reply = self._next_reply(request.path)
        if reply.hang_s is not None and self._stopping is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.hang_s)
        if reply.drop:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing more to say on a dead connection
        return web.Response(status=reply.status, headers=dict(reply.headers), body=reply.body)

    # --- what happened -----------------------------------------------------------------

    @property
    def calls(self) -> list[WebhookCall]:
        """Every request, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, path: str) -> list[WebhookCall]:
        return [c for c in self.calls if c.path == path]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    async def wait_for(
        self, predicate: Callable[[WebhookPeer], bool], *, timeout_s: float = 10.0
    ) -> None:
        await wait_for(lambda: predicate(self), timeout_s=timeout_s, what="the webhook peer")

    async def wait_for_count(
        self, count: int, *, path: str | None = None, timeout_s: float = 10.0
    ) -> list[WebhookCall]:
        """Wait until at least ``count`` requests (to ``path``, if given) arrived."""
        await wait_for(
            lambda: len(self._select(path)) >= count,
            timeout_s=timeout_s,
            what=f"{count} request(s) to {path or 'any path'} at the webhook peer",
        )
        return self._select(path)

    def wait_for_count_sync(
        self, count: int, *, path: str | None = None, timeout_s: float = 10.0
    ) -> list[WebhookCall]:
        wait_for_sync(
            lambda: len(self._select(path)) >= count,
            timeout_s=timeout_s,
            what=f"{count} request(s) to {path or 'any path'} at the webhook peer",
        )
        return self._select(path)

    def _select(self, path: str | None) -> list[WebhookCall]:
        return self.calls if path is None else self.calls_to(path)


def _verify(secret: str | None, body: bytes, headers: Mapping[str, str]) -> tuple[bool, str | None]:
    if secret is None:
        return False, "no secret for this path"
    try:
        Webhook(secret).verify(body, dict(headers))
    except Exception as exc:  # WebhookVerificationError, or a malformed header
        return False, f"{type(exc).__name__}: {exc}"
    return True, None
