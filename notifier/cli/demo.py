"""`tariff-notifier demo`: the US-Japan tariff story of 2025, replayed offline in seconds.

Everything a real deployment talks to runs in this process on 127.0.0.1: a news feed whose
articles appear as a simulated clock passes their dates, an SMTP sink (aiosmtpd) and an
ERP webhook receiver that checks every Standard Webhooks signature. The notifier itself
is the real one (:class:`notifier.runtime.runtime.Notifier` and the jobs of ``once``, one
pass per instant, the shipped calendar),
so the demo shows what a subscriber would have received, on the day they would have.

The articles are written for this demo in the style of the wire services and agencies
named; their facts follow the shipped calendar, their links point at the real Federal
Register or CBP documents where there is one and at ``news.example`` otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks import Webhook

from notifier.config import load_config
from notifier.core.calendar import all_transitions
from notifier.core.model import Rule
from notifier.resources import shipped_path
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier

EASTERN = ZoneInfo("America/New_York")
START = datetime(2025, 4, 16, 12, 0, tzinfo=EASTERN)  # the silent baseline
END = datetime(2025, 9, 30, 23, 59, tzinfo=EASTERN)
REMIND = ("7d", "1d")
HOOK_PATH = "/hooks/erp"


@dataclass(frozen=True, slots=True)
class Article:
    guid: str
    published: datetime
    source: str
    title: str
    summary: str
    link: str


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


STORY: tuple[Article, ...] = (
    Article(
        "upi-2025-04-09-pause",
        _at("2025-04-09T14:20:00-04:00"),
        "UPI",
        "Trump pauses higher 'reciprocal' tariffs for 90 days, keeps 10% baseline",
        "President Donald Trump on Wednesday paused for 90 days the country-specific rates "
        "that took effect hours earlier, leaving a 10% baseline duty on most imports. "
        "The rate on Chinese goods was raised to 125%.",
        "https://news.example/upi/2025/04/09/reciprocal-tariff-pause",
    ),
    Article(
        "upi-2025-04-17-japan-talks",
        _at("2025-04-17T09:12:00-04:00"),
        "UPI",
        "Japan, U.S. begin tariff talks as 25% duties on cars bite",
        "Japan's chief negotiator Ryosei Akazawa met President Donald Trump in Washington "
        "for the first round of talks on U.S. tariffs. Japanese steel and aluminum have paid "
        "25% since March 12 and Japanese cars 25% since April 3; a 25% tariff on auto parts "
        "starts May 3. Most other Japanese goods pay the 10% baseline while the 24% rate "
        "announced for Japan on April 2 is paused for 90 days.",
        "https://news.example/upi/2025/04/17/japan-us-tariff-talks",
    ),
    Article(
        "reuters-2025-05-03-auto-parts",
        _at("2025-05-03T07:15:00-04:00"),
        "Reuters",
        "U.S. 25% tariff on imported auto parts takes effect; Japanese suppliers brace",
        "A 25% Section 232 tariff on imported auto parts, including engines, transmissions "
        "and electrical components, applies to goods entered from 12:01 a.m. EDT on "
        "Saturday, CBP said in a CSMS message to importers. USMCA-compliant parts stay "
        "duty-free for now. Japanese auto parts makers already face the 25% tariff on "
        "finished cars.",
        "https://content.govdelivery.com/bulletins/gd/USDHSCBP-3de7ef9",
    ),
    Article(
        "reuters-2025-05-12-geneva",
        _at("2025-05-12T06:40:00-04:00"),
        "Reuters",
        "U.S. and China agree to cut tariffs for 90 days after Geneva talks",
        "The United States will lower its extra duty on Chinese goods from 125% to 10% "
        "from May 14 for 90 days; the 20% fentanyl tariff stays.",
        "https://news.example/reuters/2025/05/12/us-china-geneva",
    ),
    Article(
        "upi-2025-05-30-steel-50",
        _at("2025-05-30T19:05:00-04:00"),
        "UPI",
        "Trump says steel tariff will double to 50% at rally near Pittsburgh",
        "Speaking at U.S. Steel's Irvin Works after backing its partnership with Japan's "
        "Nippon Steel, President Trump said the tariff on imported steel would rise from "
        "25% to 50%. A proclamation sets June 4 as the start date for steel and aluminum.",
        "https://news.example/upi/2025/05/30/steel-tariff-50",
    ),
    Article(
        "reuters-2025-07-22-japan-deal",
        _at("2025-07-22T21:05:00-04:00"),
        "Reuters",
        "Trump announces trade deal with Japan: 15% tariff",
        "President Trump said the United States reached a deal with Japan under which "
        "Japanese goods, cars included, will face a 15% tariff instead of the 25% "
        "threatened for August 1, and Japan will invest $550 billion in the U.S. Tokyo said "
        "the 15% on cars includes the existing 2.5% duty.",
        "https://news.example/reuters/2025/07/22/trump-japan-trade-deal",
    ),
    Article(
        "wh-2025-09-04-japan-eo",
        _at("2025-09-04T19:30:00-04:00"),
        "The White House",
        "Executive order implements U.S.-Japan agreement",
        "The President signed an executive order implementing the agreement with Japan: "
        "goods of Japan pay 15% in all (most-favored-nation duty plus the reciprocal "
        "tariff), retroactive to August 7, and Japanese cars and auto parts 15% in all "
        "once Commerce publishes the tariff changes. Civil aircraft are exempt.",
        "https://www.federalregister.gov/d/2025-17389",
    ),
    Article(
        "fr-2025-09-16-japan-autos",
        _at("2025-09-16T08:45:00-04:00"),
        "Federal Register",
        "Japanese autos and auto parts: 15% tariff now in effect",
        "Commerce notice implementing the U.S.-Japan agreement: passenger vehicles, light "
        "trucks and auto parts of Japan entered from 12:01 a.m. EDT on September 16, 2025 "
        "pay 15% including the MFN duty instead of 25% plus MFN (HTS 9903.94.40-.43).",
        "https://www.federalregister.gov/d/2025-17908",
    ),
)


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    about: str  # one line for the printout
    filters: str  # TOML lines of its [[subscriber]] table besides id and email
    email: tuple[str, ...] = ()

    def toml(self) -> str:
        email = f"email = {json.dumps(list(self.email))}\n" if self.email else ""
        return f'\n[[subscriber]]\nid = "{self.id}"\n{email}{self.filters}\n'


def subscribers(*, hook_url: str, secret: str) -> tuple[Subscriber, ...]:
    return (
        Subscriber(
            "jp-auto-importer",
            "email; origins JP, HTS 8703 (cars) and 8708 (auto parts)",
            'origins = ["JP"]\nhts = ["8703", "8708"]',
            email=("imports@jp-autoparts.example",),
        ),
        Subscriber(
            "steel-buyer",
            "email; origins JP, HTS 72 and 73 (steel)",
            'origins = ["JP"]\nhts = ["72", "73"]',
            email=("purchasing@steel-buyer.example",),
        ),
        Subscriber(
            "erp",
            "Standard Webhooks; events tariff.*, origins JP",
            f'webhook = "{hook_url}"\nsecret = "{secret}"\nevents = ["tariff.*"]\norigins = ["JP"]',
        ),
        Subscriber(
            "news-watcher",
            'email; events feed.entry.*, keyword "japan"',
            'events = ["feed.entry.*"]\nkeywords = ["japan"]',
            email=("desk@news-watcher.example",),
        ),
    )


# --- the simulated clock and the instants it visits ------------------------------------


@dataclass
class SimClock:
    """The notifier's clock, also read by the local peers to stamp what they receive."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def concerns_japan(rule: Rule) -> bool:
    """Every demo subscriber filters on Japan: only these rules can reach one."""
    return "JP" in rule.origins or "*" in rule.origins


def story_instants(
    rules: Iterable[Rule],
    *,
    remind: Iterable[timedelta],
    articles: Iterable[Article],
    start: datetime,
    end: datetime,
    zone: ZoneInfo | None = None,
) -> list[datetime]:
    """The baseline, each article's time and each transition of a rule touching Japan.

    Stepping exactly onto a transition's instant is what makes its alert on time
    (``late: false``); other rules' transitions in between fire late but reach no
    demo subscriber, all of whom filter on Japan.
    """
    marks = {start}
    marks.update(a.published for a in articles if start < a.published <= end)
    marks.update(
        tr.at
        for tr in all_transitions([r for r in rules if concerns_japan(r)], remind=remind, zone=zone)
        if start < tr.at <= end
    )
    return sorted(marks)


# --- local peers -------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Hook:
    at: datetime
    type: str
    subject: str
    late: bool
    verified: bool


@dataclass
class Received:
    mails: list[Mail] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)


class _MailSink:
    """aiosmtpd handler: keeps each message's recipients and subject."""

    def __init__(self, received: Received, clock: SimClock) -> None:
        self.received, self.clock = received, clock

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        for recipient in envelope.rcpt_tos:
            self.received.mails.append(Mail(self.clock(), recipient, str(message["Subject"])))
        return "250 2.0.0 OK"


async def _serve(
    stack: contextlib.AsyncExitStack,
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
) -> int:
    """An aiohttp server on 127.0.0.1 (a free port), stopped with ``stack``; its port."""
    runner = web.ServerRunner(web.Server(handler, access_log=None), shutdown_timeout=1.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return port


async def _smtp_sink(stack: contextlib.AsyncExitStack, handler: _MailSink) -> int:
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


def _feed_handler(clock: SimClock) -> Callable[[web.BaseRequest], Awaitable[web.Response]]:
    async def handle(request: web.BaseRequest) -> web.Response:
        published = [a for a in STORY if a.published <= clock()]
        return web.Response(body=rss(published), content_type="application/rss+xml")

    return handle


def _hook_handler(
    received: Received, clock: SimClock, secret: str
) -> Callable[[web.BaseRequest], Awaitable[web.Response]]:
    verifier = Webhook(secret)

    async def handle(request: web.BaseRequest) -> web.Response:
        body = await request.read()
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
        subject = (data.get("rule") or {}).get("id") or (data.get("entry") or {}).get("id", "?")
        received.hooks.append(
            Hook(clock(), payload.get("type", "?"), subject, bool(data.get("late")), verified)
        )
        # A receiver rejects what it cannot verify (the notifier then records a failure).
        return web.Response(status=204 if verified else 401)

    return handle


# --- the replay ---------------------------------------------------------------------------


def config_text(*, state: Path, smtp_port: int, feed_url: str, subs: Sequence[Subscriber]) -> str:
    calendar = shipped_path("config") / "calendar" / "us-2025.toml"
    tables = "".join(s.toml() for s in subs)
    return f"""
[notifier]
state = {json.dumps("sqlite:///" + str(state))}
timezone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Tariff Alerts <alerts@tariff-notifier.example>"

[delivery]
timeout = "5s"

[calendar]
paths = [{json.dumps(str(calendar.resolve()))}]
remind = {json.dumps(list(REMIND))}

[[feed]]
id = "trade-wire"
title = "Trade wire (demo)"
url = "{feed_url}"
every = "15m"
{tables}"""


@dataclass
class Replay:
    received: Received
    subscribers: tuple[Subscriber, ...]
    passes: int
    problems: list[str]


async def replay(workdir: Path) -> Replay:
    """Run the story through a real notifier against local peers; return what they received."""
    clock = SimClock(START)
    received = Received()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with contextlib.AsyncExitStack() as peers:
        smtp_port = await _smtp_sink(peers, _MailSink(received, clock))
        feed_port = await _serve(peers, _feed_handler(clock))
        hook_port = await _serve(peers, _hook_handler(received, clock, secret))
        subs = subscribers(hook_url=f"http://127.0.0.1:{hook_port}{HOOK_PATH}", secret=secret)
        path = workdir / "notifier.toml"
        path.write_text(
            config_text(
                state=workdir / "state.db",
                smtp_port=smtp_port,
                feed_url=f"http://127.0.0.1:{feed_port}/feed.xml",
                subs=subs,
            ),
            encoding="utf-8",
        )
        config = load_config(path)
        instants = story_instants(
            config.rules,
            remind=config.model.calendar.remind,
            articles=STORY,
            start=START,
            end=END,
            zone=config.zone,
        )
        problems: list[str] = []
        async with Notifier(config, clock=clock, parse_in_processes=False) as notifier:
            jobs = Jobs(notifier)
            for instant in instants:
                clock.now = instant
                report = await jobs.run_once()
                day = instant.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M")
                problems += [f"{day} feed {k}: {v}" for k, v in report.sources.feed_errors.items()]
                problems += [
                    f"{day} delivery {i} {status}: {detail}"
                    for i, status, detail in report.delivery.outcomes
                    if status != "sent"
                ]
    return Replay(received, subs, len(instants), problems)


# --- the printout -------------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return moment.astimezone(EASTERN).strftime("%a %Y-%m-%d %H:%M")


def format_report(result: Replay, *, elapsed_s: float) -> str:
    """What each subscriber received, in simulated time order, and a summary line."""
    lines: list[str] = []
    for sub in result.subscribers:
        lines.append(f"\n== {sub.id}: {sub.about}")
        if sub.id == "erp":
            got = [
                f"  {_when(h.at)}  {h.type} {h.subject} late={str(h.late).lower()} "
                f"verified={'yes' if h.verified else 'NO'}"
                for h in result.received.hooks
            ]
        else:
            got = [
                f"  {_when(m.at)}  {m.subject}"
                for m in result.received.mails
                if m.recipient in sub.email
            ]
        lines += got or ["  (nothing)"]
    hooks = result.received.hooks
    verified = sum(h.verified for h in hooks)
    lines.append(
        f"\n{len(result.received.mails)} emails and {len(hooks)} webhooks ({verified} verified) "
        f"from {result.passes} passes over {_span()} of simulated time, in {elapsed_s:.1f} s."
    )
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s):")
        lines += [f"  {p}" for p in result.problems]
    return "\n".join(lines)


def _span() -> str:
    return f"{START:%b %d} - {END:%b %d %Y}"


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Warnings only while replaying: aiosmtpd and the notifier log every message at info."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def run_demo() -> int:
    """Replay the story, print what each subscriber got; 0 when every delivery went through."""
    print(
        "tariff-notifier demo: replaying the 2025 US-Japan tariff story (talks on Apr 17, the\n"
        "auto parts duty on May 3, the 15% deal from July to September) through a local feed,\n"
        f"the shipped calendar on a simulated clock ({_span()}), and a local SMTP sink\n"
        "and webhook receiver on 127.0.0.1. The calendar is today's, so it already knows the\n"
        "rules announced after April: their reminders arrive on time.",
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tariff-notifier-demo-") as tmp, _quiet_logs():
        result = asyncio.run(replay(Path(tmp)))
    print(format_report(result, elapsed_s=time.monotonic() - started))
    failed = result.problems or not all(h.verified for h in result.received.hooks)
    return 1 if failed else 0
