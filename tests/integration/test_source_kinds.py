"""Each source kind's fetch / complete / events against a real aiohttp server on 127.0.0.1
serving the fixtures of tests/data/sources/ (hand-written; the shapes are the publishers'
documented ones: Federal Register API v1, GovDelivery RSS and widget JSONP, USITC HTS REST
``exportList``; see tests/data/sources/README.md). The context is a real one: an aiohttp
session, parsing in a thread, and ``seen`` over a dict standing in for the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from notifier.config import FeedSection
from notifier.core.model import Entry
from notifier.errors import FetchError
from notifier.sources.base import Change, FetchContext, Fetched, Validators
from notifier.sources.registry import source_kind
from notifier.sources.tagging import Tagger

DATA = Path(__file__).parent.parent / "data" / "sources"
NOW = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)


_RECOVERED = {"broken": "maintenance"}


@dataclass
class Publisher:
    """Serves the fixtures; tests swap files and break pages between polls."""

    files: dict[str, str] = field(
        default_factory=lambda: {
            "fr1": "fr_page1.json",
            "pi": "pi_current.json",
            "hts": "hts_v1.json",
        }
    )
    broken: set[str] = field(default_factory=lambda: {"broken"})
    requests: list[tuple[str, Mapping[str, str], str]] = field(default_factory=list)
    base: str = ""

    def body(self, name: str) -> bytes:
        return (DATA / name).read_bytes().replace(b"{BASE}", self.base.encode())

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query), request.headers["User-Agent"]))
        path = request.path
        if path == "/api/v1/documents.json":
            page = request.query.get("page", "1")
            name = self.files["fr1"] if page == "1" else f"fr_page{page}.json"
            return web.Response(body=self.body(name), content_type="application/json")
        if path == "/api/v1/public-inspection-documents/current.json":
            return web.Response(body=self.body(self.files["pi"]), content_type="application/json")
        if path == "/accounts/USDHSCBP/bulletins.rss":
            return web.Response(body=self.body("csms_bulletins.rss"), content_type="text/xml")
        if path == "/accounts/USDHSCBP/widgets/USDHSCBP_WIDGET_2.json":
            return web.Response(body=self.body("csms_widget.jsonp"), content_type="text/javascript")
        if path.startswith("/accounts/USDHSCBP/bulletins/"):
            bulletin = path.rsplit("/", 1)[1]
            if bulletin in self.broken:  # "broken" fails while listed here, then recovers
                return web.Response(status=500, text="upstream error")
            return web.Response(
                body=self.body(f"csms_bulletin_{_RECOVERED.get(bulletin, bulletin)}.html"),
                content_type="text/html",
            )
        if path == "/reststop/exportList":
            return web.Response(body=self.body(self.files["hts"]), content_type="application/json")
        return web.Response(status=404)

    def count(self, path: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == path)


@pytest.fixture
async def publisher() -> AsyncIterator[Publisher]:
    server = Publisher()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@dataclass
class Store:
    """The store's view of one source: key -> (hash, title, summary)."""

    rows: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    async def seen(self, keys: Iterable[str]) -> Mapping[str, str]:
        return {key: self.rows[key][0] for key in keys if key in self.rows}

    def remember(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.rows[entry.key] = (entry.content_hash, entry.title, entry.summary)

    def changes(self, entries: Iterable[Entry], *, removals: bool = False) -> list[Change]:
        """The job's diff: new, updated (with what was stored), removed."""
        out: list[Change] = []
        carried = set()
        for entry in entries:
            carried.add(entry.key)
            previous = self.rows.get(entry.key)
            if previous is None:
                out.append(Change("new", entry))
            elif previous[0] != entry.content_hash:
                out.append(Change("updated", entry, previous))
        if removals:
            for key, previous in self.rows.items():
                if key not in carried:
                    gone = Entry(key, previous[1], "", None, previous[2], previous[0])
                    out.append(Change("removed", gone, previous))
        return out


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def context(session: aiohttp.ClientSession, store: Store) -> FetchContext:
    async def parse(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    return FetchContext(session=session, parse=parse, seen=store.seen, clock=lambda: NOW)


def feed(publisher: Publisher, path: str, kind: str, **extra: Any) -> FeedSection:
    return FeedSection(id=f"test-{kind}", url=publisher.base + path, kind=kind, **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.from_files()


FR_SEARCH = "/api/v1/documents.json?conditions%5Bterm%5D=tariff&per_page=2"

# ---------------------------------------------------------------- federal-register


async def test_a_first_baseline_follows_next_page_url_through_every_page(
    publisher: Publisher, session: aiohttp.ClientSession
) -> None:
    source = feed(publisher, FR_SEARCH, "federal-register")
    fetched = await source_kind("federal-register").fetch(
        source, Validators(), context(session, Store())
    )
    assert [e.key for e in fetched.entries] == [
        "2025-05930",
        "2025-07100",
        "2025-06063",
        "2025-06200",
        "2025-02833",
    ]
    assert publisher.count("/api/v1/documents.json") == 3
    first_query = publisher.requests[0][1]
    assert first_query["conditions[term]"] == "tariff"
    assert first_query["per_page"] == "2"
    assert fetched.body_hash and not fetched.unchanged and fetched.warning is None


async def test_a_later_poll_stops_at_page_one_when_it_is_all_seen(
    publisher: Publisher, session: aiohttp.ClientSession
) -> None:
    source = feed(publisher, FR_SEARCH, "federal-register")
    kind = source_kind("federal-register")
    store = Store()
    baseline = await kind.fetch(source, Validators(), context(session, store))
    store.remember(baseline.entries)
    publisher.requests.clear()
    # the body differs from the one hashed (say the count moved), the documents do not
    again = await kind.fetch(source, Validators(body_hash="other"), context(session, store))
    assert publisher.count("/api/v1/documents.json") == 1
    assert store.changes(again.entries) == []
    publisher.requests.clear()
    same = await kind.fetch(
        source, Validators(body_hash=baseline.body_hash), context(session, store)
    )
    assert same.unchanged and publisher.count("/api/v1/documents.json") == 1


async def test_a_correction_is_new_and_its_original_is_updated(
    publisher: Publisher, session: aiohttp.ClientSession, tagger: Tagger
) -> None:
    source = feed(publisher, FR_SEARCH, "federal-register")
    kind = source_kind("federal-register")
    store = Store()
    baseline = await kind.fetch(source, Validators(), context(session, store))
    store.remember(baseline.entries)
    publisher.files["fr1"] = "fr_page1_corrected.json"
    publisher.requests.clear()
    fetched = await kind.fetch(
        source, Validators(body_hash=baseline.body_hash), context(session, store)
    )
    assert publisher.count("/api/v1/documents.json") == 2  # page 2 is all seen: stop
    changes = store.changes(fetched.entries)
    _completed, partial = await kind.complete(
        source, [c.entry for c in changes], context(session, store)
    )
    assert partial == set()
    events = kind.events(source, changes, now=NOW, tagger=tagger)
    assert [(e.type, e.data["entry"]["id"]) for e in events] == [
        ("feed.entry.new", "C1-2025-05930"),
        ("feed.entry.updated", "2025-05930"),
    ]
    assert events[0].data["entry"]["document"]["correction_of"] == "2025-05930"
    assert events[1].data["entry"]["document"]["corrections"] == ["C1-2025-05930"]
    assert events[1].data["entry"]["link"].startswith("https://www.federalregister.gov/")


async def test_a_proclamation_with_an_empty_effective_on_gets_the_date_in_its_text(
    publisher: Publisher, session: aiohttp.ClientSession, tagger: Tagger
) -> None:
    source = feed(publisher, FR_SEARCH, "federal-register")
    kind = source_kind("federal-register")
    fetched = await kind.fetch(source, Validators(), context(session, Store()))
    changes = [Change("new", e) for e in fetched.entries if e.key == "2025-07100"]
    (event,) = kind.events(source, changes, now=NOW, tagger=tagger)
    document = event.data["entry"]["document"]
    assert document["effective_on"] == "2025-05-03"
    assert document["effective_on_source"] == "text"
    assert document["type"] == "PRESDOCU" and document["proclamation_number"] == "10925"


async def test_a_malformed_answer_fails_the_source(
    publisher: Publisher, session: aiohttp.ClientSession
) -> None:
    publisher.files["fr1"] = "hts_v1.json"  # an array, not a search answer
    source = feed(publisher, FR_SEARCH, "federal-register")
    with pytest.raises(FetchError, match="expected `results`"):
        await source_kind("federal-register").fetch(source, Validators(), context(session, Store()))


# ----------------------------------------------------- federal-register-inspection


async def test_public_inspection_documents_with_filed_at_and_the_urls_agencies(
    publisher: Publisher, session: aiohttp.ClientSession, tagger: Tagger
) -> None:
    url = (
        "/api/v1/public-inspection-documents/current.json"
        "?conditions%5Bagencies%5D%5B%5D=executive-office-of-the-president"
    )
    source = feed(publisher, url, "federal-register-inspection")
    kind = source_kind("federal-register-inspection")
    fetched: Fetched = await kind.fetch(source, Validators(), context(session, Store()))
    assert [e.key for e in fetched.entries] == ["2025-07310"]
    events = kind.events(source, [Change("new", fetched.entries[0])], now=NOW, tagger=tagger)
    document = events[0].data["entry"]["document"]
    assert document["filed_at"] == "2025-09-08T08:45:00-04:00"
    assert document["filing_type"] == "special"
    assert document["publication_date"] == "2025-09-09"
    assert "JP" in events[0].origins  # "Japan" in the subject, tagged like any entry


# ---------------------------------------------------------------------------- csms


async def test_csms_from_rss_reads_each_new_bulletins_page(
    publisher: Publisher, session: aiohttp.ClientSession, tagger: Tagger
) -> None:
    source = feed(publisher, "/accounts/USDHSCBP/bulletins.rss", "csms")
    kind = source_kind("csms")
    store = Store()
    fetched = await kind.fetch(source, Validators(), context(session, store))
    assert [e.key for e in fetched.entries][:2] == ["65794272", "64913145"]
    completed, partial = await kind.complete(source, fetched.entries, context(session, store))
    assert partial == set()
    by_key = {e.key: e for e in completed}
    copper = by_key["65794272"]
    assert copper.summary.startswith("CSMS # 65794272 - GUIDANCE")
    assert copper.details["csms"]["chapter99"] == ["9903.78.01", "9903.78.02"]
    assert "8544" in copper.details["csms"]["hts"]
    assert copper.content_hash == fetched.entries[0].content_hash
    agents = {agent for path, _, agent in publisher.requests if "/bulletins/" in path}
    assert len(agents) == 1 and "Mozilla/5.0" in agents.pop()  # cbp.gov refuses bare agents
    (event,) = kind.events(source, [Change("new", copper)], now=NOW, tagger=tagger)
    assert event.data["entry"]["csms"]["number"] == "65794272"


async def test_csms_from_jsonp_leaves_a_bulletin_whose_page_fails_partial(
    publisher: Publisher, session: aiohttp.ClientSession
) -> None:
    source = feed(publisher, "/accounts/USDHSCBP/widgets/USDHSCBP_WIDGET_2.json", "csms")
    kind = source_kind("csms")
    store = Store()
    fetched = await kind.fetch(source, Validators(), context(session, store))
    assert [e.key for e in fetched.entries] == ["65794272", "64913145", "64000000"]
    assert fetched.entries[0].published == "2025-07-31T21:26:00Z"
    completed, partial = await kind.complete(source, fetched.entries, context(session, store))
    assert partial == {"64000000"}
    assert sorted(e.key for e in completed) == ["64913145", "65794272"]
    parts = next(e for e in completed if e.key == "64913145")
    assert parts.details["csms"]["chapter99"] == ["9903.94.05", "9903.94.06"]
    assert "87082950" in parts.details["csms"]["hts"]
    # next poll, the page answers: the bulletin completes then
    publisher.broken.clear()
    retried, partial = await kind.complete(
        source, [e for e in fetched.entries if e.key == "64000000"], context(session, store)
    )
    assert partial == set() and retried[0].key == "64000000"


# ----------------------------------------------------------------------------- hts

HTS = "/reststop/exportList?from=8701&to=9904&format=JSON&styles=false"


async def test_an_hts_export_diffed_across_releases(
    publisher: Publisher, session: aiohttp.ClientSession, tagger: Tagger
) -> None:
    source = feed(publisher, HTS, "hts")
    kind = source_kind("hts")
    assert kind.reports_removals
    store = Store()
    v1 = await kind.fetch(source, Validators(), context(session, store))
    by_key = {e.key: e for e in v1.entries}
    assert "8703" in by_key["9903.94.01"].details["line"]["applies_to"]
    assert by_key["9903.94.05"].details["line"]["applies_to"] == ("8708",)
    store.remember(v1.entries)
    same = await kind.fetch(source, Validators(body_hash=v1.body_hash), context(session, store))
    assert same.unchanged

    publisher.files["hts"] = "hts_v2.json"
    v2 = await kind.fetch(source, Validators(body_hash=v1.body_hash), context(session, store))
    changes = store.changes(v2.entries, removals=True)
    _completed, partial = await kind.complete(
        source, [c.entry for c in changes], context(session, store)
    )
    assert partial == set()
    events = kind.events(source, changes, now=NOW, tagger=tagger)
    assert sorted(e.type for e in events) == ["hts.line.changed", "hts.line.removed"]
    changed = next(e for e in events if e.type == "hts.line.changed")
    assert changed.data["changes"] == [{"field": "general", "from": "2.5%", "to": "3%"}]
    assert changed.data["line"]["htsno"] == "8708.29.50"
    removed = next(e for e in events if e.type == "hts.line.removed")
    assert removed.data["line"]["htsno"] == "8708.40.11"


async def test_a_malformed_hts_export_fails_the_source(
    publisher: Publisher, session: aiohttp.ClientSession
) -> None:
    publisher.files["hts"] = "hts_malformed.json"
    with pytest.raises(FetchError, match="not a JSON array"):
        await source_kind("hts").fetch(
            feed(publisher, HTS, "hts"), Validators(), context(session, Store())
        )
