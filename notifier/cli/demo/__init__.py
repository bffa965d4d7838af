"""`tariff-notifier demo`: the US-Japan tariff story of 2025, replayed offline in seconds.

Everything a real deployment talks to runs in this process on 127.0.0.1: a news feed and
the official sources (the Federal Register API and its Public Inspection desk, CBP's CSMS
bulletins on GovDelivery, the USITC HTS export), whose documents appear as a simulated
clock passes their dates; an SMTP sink (aiosmtpd) and webhook receivers that check every
Standard Webhooks signature. The notifier itself is the real one
(:class:`notifier.runtime.runtime.Notifier` and the jobs of ``once``, one pass per
instant, the shipped calendar), so the demo shows what a subscriber would have received,
on the day they would have.

The parts: :mod:`.story` (articles, subscribers, instants), :mod:`.official` (the
official documents), :mod:`.peers` (the local servers), :mod:`.report` (the printout).
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
from collections.abc import Iterator, Sequence
from pathlib import Path

from notifier.cli.demo import official
from notifier.cli.demo.peers import (
    CSMS_WIDGET_PATH,
    FEED_PATH,
    FR_PATH,
    HTS_PATH,
    PI_PATH,
    MailSink,
    Received,
    hook_handler,
    publisher_handler,
    serve,
    smtp_sink,
)
from notifier.cli.demo.report import Replay, format_report, span
from notifier.cli.demo.story import (
    BROKER_HOOK,
    EASTERN,
    END,
    ERP_HOOK,
    REMIND,
    START,
    STORY,
    Article,
    SimClock,
    Subscriber,
    concerns_japan,
    story_instants,
    subscribers,
)
from notifier.config import load_config
from notifier.resources import shipped_path
from notifier.runtime.jobs import Jobs
from notifier.runtime.runtime import Notifier
from notifier.sources import federal_register

__all__ = [
    "END",
    "START",
    "STORY",
    "Article",
    "Replay",
    "SimClock",
    "Subscriber",
    "concerns_japan",
    "config_text",
    "format_report",
    "replay",
    "run_demo",
    "story_instants",
    "subscribers",
]

# The official sources, as a user would configure them (the shipped config's queries).
_FR_QUERY = "?conditions%5Btype%5D%5B%5D=PRESDOCU&conditions%5Bterm%5D=tariff&order=newest"
_PI_QUERY = "?conditions%5Bagencies%5D%5B%5D=executive-office-of-the-president"
_HTS_QUERY = "?from=8708&to=9903.94&format=JSON&styles=false"


def config_text(*, state: Path, smtp_port: int, base: str, subs: Sequence[Subscriber]) -> str:
    """The demo's notifier.toml: the shipped calendar, the local feed and official sources.

    Each poll of an official source carries a handful of changes at most (the HTS
    release: two lines added, two footnotes changed), well under the held-change guard's
    default of 20, so nothing is held for an operator.
    """
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
url = "{base}{FEED_PATH}"
every = "15m"

[[feed]]
id = "public-inspection"
title = "Federal Register: Public Inspection (demo)"
kind = "federal-register-inspection"
url = "{base}{PI_PATH}{_PI_QUERY}"
every = "15m"

[[feed]]
id = "federal-register"
title = "Federal Register: presidential documents on tariffs (demo)"
kind = "federal-register"
url = "{base}{FR_PATH}{_FR_QUERY}"
every = "15m"

[[feed]]
id = "cbp-csms"
title = "CBP CSMS bulletins (demo)"
kind = "csms"
url = "{base}{CSMS_WIDGET_PATH}"
every = "15m"

[[feed]]
id = "hts-8708-9903-94"
title = "HTS: heading 8708 and 9903.94 (demo)"
kind = "hts"
url = "{base}{HTS_PATH}{_HTS_QUERY}"
every = "1d"
{tables}"""


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def replay(workdir: Path) -> Replay:
    """Run the story through a real notifier against local peers; return what they received."""
    clock = SimClock(START)
    received = Received()
    hook_secrets = {ERP_HOOK: _secret(), BROKER_HOOK: _secret()}
    async with contextlib.AsyncExitStack() as peers:
        smtp_port = await smtp_sink(peers, MailSink(received, clock))
        publisher_port = await serve(peers, publisher_handler(received, clock))
        hook_port = await serve(peers, hook_handler(received, clock, hook_secrets))
        subs = subscribers(hook_base=f"http://127.0.0.1:{hook_port}", secrets=hook_secrets)
        path = workdir / "notifier.toml"
        path.write_text(
            config_text(
                state=workdir / "state.db",
                smtp_port=smtp_port,
                base=f"http://127.0.0.1:{publisher_port}",
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
            also=official.official_instants(),
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
                problems += [f"{day} source {feed} held" for feed in report.sources.held]
    return Replay(received, subs, len(instants), problems)


@contextlib.contextmanager
def _local_federal_register() -> Iterator[None]:
    """Lift the Federal Register's 5 requests/s limit while the demo runs.

    The limit (one limiter for the process, :data:`federal_register.FEDERAL_REGISTER_LIMITER`)
    protects federalregister.gov; the demo's Federal Register is its own server on
    127.0.0.1, polled twice a pass (documents and Public Inspection), and at 5 requests/s
    those polls alone would take 15 s of the replay. The real limiter is put back after.
    """
    real = federal_register.FEDERAL_REGISTER_LIMITER
    federal_register.FEDERAL_REGISTER_LIMITER = federal_register.RateLimiter(1000.0)
    try:
        yield
    finally:
        federal_register.FEDERAL_REGISTER_LIMITER = real


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
        "tariff-notifier demo: replaying the 2025 US-Japan tariff story (the proclamation on\n"
        "cars and auto parts on public inspection on Apr 2 and published on Apr 3, talks on\n"
        "Apr 17, CBP's guidance and the 25% on parts in May, the 15% deal from July to\n"
        "September) through a local news feed, the Federal Register API, CBP's CSMS feed and\n"
        f"the HTS export served locally, the shipped calendar on a simulated clock ({span()}),\n"
        "and a local SMTP sink and webhook receivers on 127.0.0.1. The calendar is today's,\n"
        "so it already knows the rules announced later: their reminders arrive on time.",
        flush=True,
    )
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="tariff-notifier-demo-") as tmp,
        _quiet_logs(),
        _local_federal_register(),
    ):
        result = asyncio.run(replay(Path(tmp)))
    print(format_report(result, elapsed_s=time.monotonic() - started))
    failed = result.problems or not all(h.verified for h in result.received.hooks)
    return 1 if failed else 0
