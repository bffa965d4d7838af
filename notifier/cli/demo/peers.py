"""The local peers of the demo, all on 127.0.0.1: the publishers (a news feed and the
official APIs, in one aiohttp server), an SMTP sink (aiosmtpd) and a webhook receiver
that checks every Standard Webhooks signature."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks import Webhook

from notifier.cli.demo import official
from notifier.cli.demo.story import STORY, Article, SimClock

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# Where each source lives on the publishers' server (the publishers' own paths).
FEED_PATH = "/feed.xml"
FR_PATH = "/api/v1/documents.json"
PI_PATH = "/api/v1/public-inspection-documents/current.json"
CSMS_WIDGET_PATH = "/accounts/USDHSCBP/widgets/USDHSCBP_WIDGET_2.json"
CSMS_BULLETIN_PREFIX = "/accounts/USDHSCBP/bulletins/"
HTS_PATH = "/reststop/exportList"


def rss(articles: Sequence[Article]) -> bytes:
    items = "".join(
        "<item>"
        f"<title>{escape(a.title)}</title><link>{escape(a.link)}</link>"
        f"<description>{escape(a.summary)}</description>"
        f"<dc:creator>{escape(a.source)}</dc:creator>"
        f"<pubDate>{format_datetime(a.published)}</pubDate>"
        f'<guid isPermaLink="false">{escape(a.guid)}</guid>'
        "</item>"
        for a in sorted(articles, key=lambda a: a.published, reverse=True)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>Trade wire (demo)</title><link>https://news.example/</link>"
        f"<description>US-Japan tariff news, 2025</description>{items}</channel></rss>"
    ).encode()


@dataclass(frozen=True, slots=True)
class Mail:
    at: datetime
    recipient: str
    subject: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Hook:
    at: datetime
    path: str  # which subscriber's endpoint
    webhook_id: str
    type: str
    subject: str
    late: bool
    verified: bool
    data: Mapping[str, Any]


@dataclass
class Received:
    mails: list[Mail] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # publishers' paths served


class MailSink:
    """aiosmtpd handler: keeps each message's recipients, subject and Message-ID."""

    def __init__(self, received: Received, clock: SimClock) -> None:
        self.received, self.clock = received, clock

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        for recipient in envelope.rcpt_tos:
            self.received.mails.append(
                Mail(
                    self.clock(),
                    recipient,
                    str(message["Subject"]),
                    str(message["Message-ID"] or ""),
                )
            )
        return "250 2.0.0 OK"


async def serve(stack: contextlib.AsyncExitStack, handler: Handler) -> int:
    """An aiohttp server on 127.0.0.1 (a free port), stopped with ``stack``; its port."""
    runner = web.ServerRunner(web.Server(handler, access_log=None), shutdown_timeout=1.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return port


async def smtp_sink(stack: contextlib.AsyncExitStack, handler: MailSink) -> int:
    """An aiosmtpd server on 127.0.0.1 (a free port), stopped with ``stack``; its port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.localhost", loop=loop), host="127.0.0.1", port=0
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    stack.push_async_callback(stop)
    port: int = server.sockets[0].getsockname()[1]
    return port


def publisher_handler(received: Received, clock: SimClock) -> Handler:
    """Every publisher of the story, by path; what each serves depends on the clock."""

    async def handle(request: web.BaseRequest) -> web.Response:
        path, now = request.path, clock()
        received.requests[path] = received.requests.get(path, 0) + 1
        base = f"http://{request.host}"
        if path == FEED_PATH:
            body = rss([a for a in STORY if a.published <= now])
            return web.Response(body=body, content_type="application/rss+xml")
        if path == FR_PATH:
            fields = request.query.getall("fields[]", [])
            return _json(official.documents_json(now, fields=fields))
        if path == PI_PATH:
            return _json(official.inspection_json(now))
        if path == CSMS_WIDGET_PATH:
            body = official.csms_widget(now, base=base)
            return web.Response(body=body, content_type="application/javascript")
        if path.startswith(CSMS_BULLETIN_PREFIX):
            page = official.bulletin_html(path.removeprefix(CSMS_BULLETIN_PREFIX))
            if page is not None:
                return web.Response(body=page, content_type="text/html", charset="utf-8")
        if path == HTS_PATH:
            return _json(official.hts_export(now))
        return web.Response(status=404, text="not found")

    return handle


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def hook_handler(received: Received, clock: SimClock, secrets: Mapping[str, str]) -> Handler:
    """Webhook endpoints by path, each verifying with its own subscriber's secret."""
    verifiers = {path: Webhook(secret) for path, secret in secrets.items()}

    async def handle(request: web.BaseRequest) -> web.Response:
        body = await request.read()
        verifier = verifiers.get(request.path)
        if verifier is None:
            return web.Response(status=404)
        try:
            verifier.verify(body, dict(request.headers))
            verified = True
        except Exception:  # WebhookVerificationError or a malformed header
            verified = False
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        data = payload.get("data") or {}
        subject = (
            (data.get("rule") or {}).get("id")
            or (data.get("line") or {}).get("htsno")
            or (data.get("entry") or {}).get("id", "?")
        )
        received.hooks.append(
            Hook(
                clock(),
                request.path,
                request.headers.get("webhook-id", ""),
                payload.get("type", "?"),
                subject,
                bool(data.get("late")),
                verified,
                data,
            )
        )
        # A receiver rejects what it cannot verify (the notifier then records a failure).
        return web.Response(status=204 if verified else 401)

    return handle
