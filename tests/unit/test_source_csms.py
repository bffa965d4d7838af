"""CSMS listing and bulletin-page parsers (pure): fixtures in tests/data/sources/ (shapes:
GovDelivery bulletins RSS, widget JSONP and bulletin pages, see its README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.errors import FetchError
from notifier.sources.csms import bulletin_page, csms_number, parse_bulletin_list

DATA = Path(__file__).parent.parent / "data" / "sources"
BASE = b"https://content.govdelivery.com"


def body(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"{BASE}", BASE)


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("CSMS # 65794272 - GUIDANCE: Section 232 Import Duties on Copper", "65794272"),
        ("CSMS #64913145 - UPDATED GUIDANCE", "64913145"),
        ("CSMS No. 64916652: Automobile Parts", "64916652"),
        ("ACE Maintenance Window", None),
    ],
)
def test_csms_number_from_the_subject(subject: str, number: str | None) -> None:
    assert csms_number(subject) == number


def test_the_rss_listing_is_keyed_by_csms_number_and_by_link_without_one() -> None:
    parsed = parse_bulletin_list(body("csms_bulletins.rss"), content_type="application/rss+xml")
    keys = [e.key for e in parsed.entries]
    assert keys == [
        "65794272",
        "64913145",
        "https://content.govdelivery.com/accounts/USDHSCBP/bulletins/maintenance",
    ]
    first = parsed.entries[0]
    assert first.details == {"csms": {"number": "65794272", "chapter99": [], "hts": []}}
    assert first.published == "2025-07-31T21:26:00Z"
    assert parsed.entries[2].details["csms"]["number"] is None


def test_the_widget_jsonp_listing_gives_the_same_keys_and_dates() -> None:
    parsed = parse_bulletin_list(body("csms_widget.jsonp"), content_type="text/javascript")
    assert [e.key for e in parsed.entries] == ["65794272", "64913145", "64000000"]
    assert parsed.entries[0].published == "2025-07-31T21:26:00Z"  # 05:26 PM EDT
    assert parsed.entries[0].link.endswith("/bulletins/3ec1e00")
    rss = parse_bulletin_list(body("csms_bulletins.rss"))
    # the same bulletin listed either way is the same version
    assert parsed.entries[0].content_hash == rss.entries[0].content_hash


def test_plain_json_widget_feed() -> None:
    raw = b'[{"subject": "CSMS # 1234567 - X", "date": "01/02/2026 09:00 AM EST", "link": ""}]'
    entry = parse_bulletin_list(raw).entries[0]
    assert (entry.key, entry.published) == ("1234567", "2026-01-02T14:00:00Z")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"GDWidgets[0].update(nonsense);", "neither RSS nor widget JSON"),
        (b'{"error": "none"}', "not a list of bulletins"),
        (b'GDWidgets[0].update([{"date": "x"}]);', "no `subject`"),
    ],
)
def test_malformed_listings_fail(raw: bytes, expected: str) -> None:
    with pytest.raises(FetchError, match=expected):
        parse_bulletin_list(raw)


def test_a_bulletin_page_gives_its_message_text_and_hts_numbers() -> None:
    page = bulletin_page(body("csms_bulletin_3ec1e00.html"), content_type="text/html")
    assert page.text.startswith("CSMS # 65794272 - GUIDANCE")
    assert "Powered by GovDelivery" in page.text  # after the message: kept, harmless
    assert "tracking" not in page.text and "color:red" not in page.text
    assert page.chapter99 == ("9903.78.01", "9903.78.02")
    assert "74071050" in page.hts and "8544" in page.hts
    assert not any(code.startswith("8888") for code in page.hts)  # page chrome skipped


def test_a_huge_page_is_cut() -> None:
    huge = b"<div class='x'>" + b"<p>9903.94.05 word</p>" * 100_000 + b"</div>"
    page = bulletin_page(huge)
    assert len(page.text) <= 100_000
    assert page.chapter99 == ("9903.94.05",)
