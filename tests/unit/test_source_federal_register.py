"""The Federal Register and Public Inspection parsers (pure): fixtures in
tests/data/sources/ (shapes: Federal Register API v1 documentation, see its README.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from notifier.config import FeedSection
from notifier.errors import FetchError
from notifier.sources.events import entry_event
from notifier.sources.federal_register import RateLimiter, next_page, search_url
from notifier.sources.fr_documents import (
    document_entry,
    effective_date_in_text,
    parse_documents_page,
    type_code,
)
from notifier.sources.inspection import parse_inspection_page, url_filters
from notifier.sources.tagging import Tagger

DATA = Path(__file__).parent.parent / "data" / "sources"


def body(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"{BASE}", b"https://www.federalregister.gov")


def test_search_url_adds_fields_and_keeps_the_users_conditions() -> None:
    url = search_url(
        "https://www.federalregister.gov/api/v1/documents.rss?conditions%5Bterm%5D=tariff"
        "&conditions%5Btype%5D%5B%5D=PRESDOCU&fields%5B%5D=title&per_page=20"
    )
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    assert parts.path == "/api/v1/documents.json"
    assert ("conditions[term]", "tariff") in query
    assert ("conditions[type][]", "PRESDOCU") in query
    fields = [v for k, v in query if k == "fields[]"]
    assert fields.count("title") == 1
    assert {"document_number", "effective_on", "corrections", "pdf_url"} <= set(fields)
    assert ("per_page", "20") in query and ("order", "newest") in query


def test_next_page_stays_on_the_same_origin() -> None:
    here = "https://www.federalregister.gov/api/v1/documents.json?page=1"
    assert next_page(here, "https://evil.test/api/v1/documents.json?page=2", fields=()) is None
    assert next_page(here, None, fields=()) is None
    following = next_page(here, "https://www.federalregister.gov/x.json?page=2", fields=("title",))
    assert following is not None and "fields%5B%5D=title" in following


def test_document_fields_and_links() -> None:
    page = parse_documents_page(body("fr_page1.json"))
    assert [e.key for e in page.entries] == ["2025-05930", "2025-07100"]
    assert page.next_page_url and "page=2" in page.next_page_url
    entry = page.entries[0]
    document = entry.details["document"]
    assert entry.title.startswith("Adjusting Imports of Automobiles")
    assert entry.link == document["html_url"]
    assert entry.published == "2025-04-03"
    assert document == {
        "number": "2025-05930",
        "type": "PRESDOCU",
        "subtype": "Proclamation",
        "agencies": ["Executive Office of the President"],
        "publication_date": "2025-04-03",
        "effective_on": None,
        "effective_on_source": None,
        "signing_date": "2025-03-26",
        "citation": "90 FR 14705",
        "executive_order_number": None,
        "proclamation_number": "10908",
        "correction_of": None,
        "corrections": [],
        "html_url": document["html_url"],
        "pdf_url": "https://www.govinfo.gov/content/pkg/FR-2025-04-03/pdf/2025-05930.pdf",
    }


def test_a_proclamation_without_effective_on_takes_it_from_its_text() -> None:
    proclamation = parse_documents_page(body("fr_page1.json")).entries[1].details["document"]
    assert proclamation["effective_on"] == "2025-05-03"
    assert proclamation["effective_on_source"] == "text"
    rule = parse_documents_page(body("fr_page2.json")).entries[1].details["document"]
    assert (rule["effective_on"], rule["effective_on_source"]) == ("2025-04-10", "api")
    assert (
        parse_documents_page(body("fr_page2.json"))
        .entries[0]
        .details["document"]["executive_order_number"]
        == "14257"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "This proclamation is effective at 12:01 a.m. eastern daylight time on May 3, 2025.",
            "2025-05-03",
        ),
        (
            "goods entered for consumption, or withdrawn from warehouse for consumption, on or "
            "after 12:01 a.m. eastern daylight time on April 5, 2025",
            "2025-04-05",
        ),
        ("Effective Sept. 16, 2025.", "2025-09-16"),
        ("Comments are due by May 3, 2025.", None),
        ("effective on February 30, 2025", None),
        ("", None),
    ],
)
def test_effective_date_in_text(text: str, expected: str | None) -> None:
    assert effective_date_in_text(text) == expected


def test_a_correction_changes_the_original_documents_hash() -> None:
    before = {e.key: e for e in parse_documents_page(body("fr_page1.json")).entries}
    after = {e.key: e for e in parse_documents_page(body("fr_page1_corrected.json")).entries}
    assert after["C1-2025-05930"].details["document"]["correction_of"] == "2025-05930"
    assert after["2025-05930"].details["document"]["corrections"] == ["C1-2025-05930"]
    assert after["2025-05930"].content_hash != before["2025-05930"].content_hash
    assert after["2025-07100"].content_hash == before["2025-07100"].content_hash


def test_a_changed_effective_on_changes_the_documents_hash() -> None:
    # A rule whose effective date the agency moves (the API's `effective_on` changes):
    # a new hash, so the job's diff makes it `feed.entry.updated`.
    raw = json.loads(body("fr_page2.json"))["results"][1]
    before = document_entry(raw)
    after = document_entry({**raw, "effective_on": "2025-04-17"})
    assert before.details["document"]["effective_on"] == "2025-04-10"
    assert after.details["document"]["effective_on"] == "2025-04-17"
    assert after.content_hash != before.content_hash
    assert document_entry(dict(raw)).content_hash == before.content_hash


def test_an_effective_date_said_only_in_dates_goes_into_the_tags_dates() -> None:
    # `dates` is not part of the tagged text (title and abstract): the date read from it
    # for an empty `effective_on` is added to the tags' dates.
    raw = {
        "document_number": "2025-07100",
        "type": "Presidential Document",
        "title": "Adjusting Imports of Automobile Parts",
        "abstract": None,
        "dates": "This proclamation is effective at 12:01 a.m. eastern daylight time on "
        "May 3, 2025.",
        "effective_on": None,
        "publication_date": "2025-04-25",
    }
    url = "https://www.federalregister.gov/api/v1/documents.json"
    feed = FeedSection(id="fr", url=url, kind="federal-register")
    now = datetime(2025, 4, 25, 10, tzinfo=UTC)
    event = entry_event(
        feed, document_entry(raw), kind="new", tagger=Tagger.from_files(), now=now, changes=[]
    )
    assert event.data["entry"]["document"]["effective_on"] == "2025-05-03"
    assert event.data["tags"]["dates"] == ["2025-05-03"]


def test_abstracts_are_plain_text() -> None:
    rule = parse_documents_page(body("fr_page2.json")).entries[1]
    assert rule.summary.endswith("9903.94.05 & related notes.")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"<html>busy</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"count": 3}', "no `results` list"),
        (b'{"count": 1, "results": [{"title": "x"}]}', "no `document_number`"),
    ],
)
def test_malformed_answers_fail_naming_what_was_expected(raw: bytes, expected: str) -> None:
    with pytest.raises(FetchError, match=expected):
        parse_documents_page(raw)


def test_an_empty_search_may_omit_results() -> None:
    assert parse_documents_page(b'{"count": 0, "description": "none"}').entries == ()


def test_type_codes() -> None:
    assert [type_code(t) for t in ("Rule", "Proposed Rule", "Notice", "PRESDOCU", None)] == [
        "RULE",
        "PRORULE",
        "NOTICE",
        "PRESDOCU",
        None,
    ]


def test_public_inspection_documents_carry_filed_at_and_filing_type() -> None:
    page = parse_inspection_page(body("pi_current.json"))
    assert [e.key for e in page.entries] == ["2025-07310", "2025-07322", "2025-07330"]
    first = page.entries[0]
    document = first.details["document"]
    assert document["filed_at"] == "2025-09-08T08:45:00-04:00"
    assert document["filing_type"] == "special"
    assert document["publication_date"] == "2025-09-09"
    assert document["type"] == "PRESDOCU"
    assert first.published == "2025-09-08T08:45:00-04:00"
    assert "Implementing Certain Tariff-Related Elements" in first.summary
    assert page.entries[1].details["document"]["filing_type"] == "regular"


def test_public_inspection_filters_on_the_urls_agency_slugs_and_types() -> None:
    filters = url_filters(
        "https://www.federalregister.gov/api/v1/public-inspection-documents/current.json"
        "?conditions%5Bagencies%5D%5B%5D=trade-representative-office-of-united-states"
        "&conditions%5Bagencies%5D%5B%5D=executive-office-of-the-president"
    )
    page = parse_inspection_page(body("pi_current.json"), **filters)
    assert [e.key for e in page.entries] == ["2025-07310", "2025-07322"]
    page = parse_inspection_page(body("pi_current.json"), types=("NOTICE",))
    assert [e.key for e in page.entries] == ["2025-07322", "2025-07330"]


def test_rate_limiter_spaces_reservations() -> None:
    now = [100.0]
    limiter = RateLimiter(5, clock=lambda: now[0])
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.2, 0.4])
    now[0] = 101.0
    assert limiter.reserve() == 0.0


def test_fixture_pages_are_json() -> None:  # a guard for hand-edited fixtures
    for name in ("fr_page1.json", "fr_page2.json", "fr_page3.json", "pi_current.json"):
        json.loads(body(name))
