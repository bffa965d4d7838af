"""The official side of the story, as the publishers' APIs would have served it.

Four sources, each in its publisher's documented shape (the same shapes as the fixtures of
``tests/data/sources/``, whose README names them), each document appearing when the
simulated clock passes its time:

- Public Inspection, ``/api/v1/public-inspection-documents/current.json``: Proclamation
  10908 on file the afternoon before its publication;
- the Federal Register API, ``/api/v1/documents.json``: its publication on April 3;
- CBP's CSMS on GovDelivery, the widget feed ``…/widgets/USDHSCBP_WIDGET_2.json`` (JSONP)
  and the bulletin page: CSMS # 64913145, the entry guidance naming 9903.94.05;
- the USITC HTS REST ``exportList``: the release carrying 9903.94.05, with base lines of
  heading 8708 whose footnote points at it.

Document numbers, citations, CSMS numbers and the HTS lines' texts are the real ones
(shared/DOMAIN.md and the documents themselves); the texts are paraphrased and trimmed.
Times of day the record does not give are the demo's, marked "(time: the demo's)".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from notifier.cli.demo.story import at

# --- Federal Register API v1 ----------------------------------------------------------
# documents.json answers {"count", "description", "total_pages", "next_page_url",
# "results": [...]} with the fields asked for by fields[]; public-inspection-documents/
# current.json answers {"count", "results": [...]} (federalregister.gov/developers/
# documentation/api/v1; DOMAIN.md "The publishers' data formats").

_EOP = {
    "raw_name": "EXECUTIVE OFFICE OF THE PRESIDENT",
    "name": "Executive Office of the President",
    "id": 538,
    "url": "https://www.federalregister.gov/agencies/executive-office-of-the-president",
    "json_url": "https://www.federalregister.gov/api/v1/agencies/538",
    "parent_id": None,
    "slug": "executive-office-of-the-president",
}
PROCLAMATION_NUMBER = "2025-05930"
_PROCLAMATION_TITLE = "Adjusting Imports of Automobiles and Automobile Parts Into the United States"
_PROCLAMATION_PATH = (
    "2025-05930/adjusting-imports-of-automobiles-and-automobile-parts-into-the-united-states"
)


@dataclass(frozen=True, slots=True)
class Published:
    """One document of a listing and the time it appears (and leaves, if it does)."""

    since: datetime
    document: Mapping[str, Any]
    until: datetime | None = None

    def shown(self, now: datetime) -> bool:
        return self.since <= now and (self.until is None or now < self.until)


# Proclamation 10908, published Thursday April 3, 2025, 90 FR 14705-14714. The API leaves
# `effective_on` empty for proclamations and `dates` null for presidential documents; the
# time is in the proclamation's text (clause 3(b): parts from 12:01 a.m. EDT on May 3).
# The demo's `abstract` paraphrases that clause (the API often has none for a
# proclamation), so the alert shows the date the kind reads from the text.
FR_PROCLAMATION = Published(
    at("2025-04-03T06:00:00-04:00"),  # the day's issue goes online at 6 a.m.
    {
        "document_number": PROCLAMATION_NUMBER,
        "type": "Presidential Document",
        "subtype": "Proclamation",
        "title": _PROCLAMATION_TITLE,
        "abstract": (
            "Imposes a 25 percent ad valorem duty under section 232 on imports of "
            "automobiles, from April 3, 2025, and of automobile parts entered for "
            "consumption, or withdrawn from warehouse for consumption, on or after "
            "12:01 a.m. eastern daylight time on May 3, 2025."
        ),
        "action": None,
        "dates": None,
        "agencies": [_EOP],
        "agency_names": ["Executive Office of the President"],
        "publication_date": "2025-04-03",
        "effective_on": None,
        "signing_date": "2025-03-26",
        "citation": "90 FR 14705",
        "start_page": 14705,
        "executive_order_number": None,
        "proclamation_number": "10908",
        "correction_of": None,
        "corrections": [],
        "html_url": f"https://www.federalregister.gov/documents/2025/04/03/{_PROCLAMATION_PATH}",
        "pdf_url": "https://www.govinfo.gov/content/pkg/FR-2025-04-03/pdf/2025-05930.pdf",
    },
)
# Already published at the baseline: Proclamation 10896 (steel), 90 FR 9817.
_FR_STEEL = Published(
    at("2025-02-18T06:00:00-05:00"),
    {
        "document_number": "2025-02833",
        "type": "Presidential Document",
        "subtype": "Proclamation",
        "title": "Adjusting Imports of Steel Into the United States",
        "abstract": None,
        "action": None,
        "dates": None,
        "agencies": [_EOP],
        "publication_date": "2025-02-18",
        "effective_on": None,
        "signing_date": "2025-02-10",
        "citation": "90 FR 9817",
        "executive_order_number": None,
        "proclamation_number": "10896",
        "correction_of": None,
        "corrections": [],
        "html_url": "https://www.federalregister.gov/documents/2025/02/18/2025-02833/adjusting-imports-of-steel-into-the-united-states",
        "pdf_url": "https://www.govinfo.gov/content/pkg/FR-2025-02-18/pdf/2025-02833.pdf",
    },
)
FR_DOCUMENTS: tuple[Published, ...] = (FR_PROCLAMATION, _FR_STEEL)  # newest first

# On file from the afternoon before publication (a special filing, 4:15 p.m.: the time is
# the demo's) until the issue that publishes it is out.
PI_PROCLAMATION = Published(
    at("2025-04-02T16:15:00-04:00"),
    {
        "document_number": PROCLAMATION_NUMBER,
        "title": _PROCLAMATION_TITLE,
        "type": "Presidential Document",
        "agencies": [_EOP],
        "agency_names": ["Executive Office of the President"],
        "filed_at": "2025-04-02T16:15:00.000-04:00",
        "filing_type": "special",
        "publication_date": "2025-04-03",
        "toc_subject": "Trade",
        "toc_doc": "Automobiles and Automobile Parts; Adjusting Imports (Proc. 10908)",
        "editorial_note": None,
        "num_pages": 10,
        "pdf_url": "https://public-inspection.federalregister.gov/2025-05930.pdf",
        "html_url": f"https://www.federalregister.gov/public-inspection/{_PROCLAMATION_PATH}",
    },
    until=FR_PROCLAMATION.since,
)
PI_DOCUMENTS: tuple[Published, ...] = (PI_PROCLAMATION,)


def documents_json(now: datetime, *, fields: Sequence[str]) -> bytes:
    """``documents.json``: what is published by ``now``, newest first, one page, with
    only the ``fields[]`` asked for (all of them when none are)."""
    shown = [p.document for p in FR_DOCUMENTS if p.shown(now)]
    results = [{k: d.get(k) for k in fields} if fields else dict(d) for d in shown]
    return _json(
        {
            "count": len(results),
            "description": "Documents of type Presidential Document matching 'tariff'",
            "total_pages": 1,
            "next_page_url": None,
            "results": results,
        }
    )


def inspection_json(now: datetime) -> bytes:
    """``public-inspection-documents/current.json``: what is on file at ``now``."""
    results = [dict(p.document) for p in PI_DOCUMENTS if p.shown(now)]
    return _json({"count": len(results), "results": results})


# --- CBP CSMS on GovDelivery ----------------------------------------------------------
# The widget feed is JSONP, GDWidgets[0].update([...]), items with subject, date
# ("05/01/2025 11:30 AM EDT") and link only; a bulletin's page wraps the message in a
# `bulletin_body` element after the page chrome (DOMAIN.md; PITFALLS.md "The publishers'
# APIs"). A bulletin's address is its CSMS number in hex (#64913145 -> 3de7ef9).


@dataclass(frozen=True, slots=True)
class Bulletin:
    since: datetime
    number: int
    subject: str
    paragraphs: tuple[str, ...]

    @property
    def slug(self) -> str:
        return f"{self.number:x}"


CSMS_AUTO_PARTS = Bulletin(
    at("2025-05-01T11:30:00-04:00"),  # posted May 1 (time: the demo's)
    64913145,
    "CSMS # 64913145 - GUIDANCE: Import Duties on Certain Automobile Parts",
    (
        "The purpose of this message is to provide guidance on the 25 percent duty on "
        "imports of certain automobile parts from all countries, effective 12:01 a.m. "
        "Eastern Daylight Time on May 3, 2025.",
        "BACKGROUND: On March 26, 2025, the President issued Proclamation 10908, Adjusting "
        "Imports of Automobiles and Automobile Parts into the United States (90 FR 14705, "
        "April 3, 2025), under Section 232 of the Trade Expansion Act of 1962.",
        "ENTRY FILING INSTRUCTIONS: 9903.94.05: parts of passenger vehicles and light "
        "trucks classifiable in the provisions listed in subdivision (g) of U.S. note 33 to "
        "subchapter III of chapter 99, for example 8708.29.50 (parts of bodies), 8708.30.50 "
        "(brakes) and 8708.99.81: 25 percent, in addition to any other duty. 9903.94.06: "
        "parts eligible for USMCA and articles that are not parts of passenger vehicles "
        "or light trucks: no additional duty.",
        "Drawback is not available. Auto parts admitted to a foreign trade zone on or "
        "after May 3, 2025 must be admitted in privileged foreign status.",
    ),
)
# In the listing at the baseline: the steel guidance of March 2025 (date: approximate).
_CSMS_STEEL = Bulletin(
    at("2025-03-11T18:00:00-04:00"),
    64384423,
    "CSMS # 64384423 - UPDATED GUIDANCE: Import Duties on Imports of Steel and Steel "
    "Derivative Products",
    (
        "Steel articles and derivatives of chapters 72 and 73 pay 25 percent from 12:01 a.m. "
        "Eastern Daylight Time on March 12, 2025 (Proclamation 10896).",
    ),
)
BULLETINS: tuple[Bulletin, ...] = (CSMS_AUTO_PARTS, _CSMS_STEEL)  # newest first


def csms_widget(now: datetime, *, base: str) -> bytes:
    items = [
        {
            "subject": b.subject,
            "date": b.since.strftime("%m/%d/%Y %I:%M %p ") + (b.since.tzname() or "EDT"),
            "link": f"{base}/accounts/USDHSCBP/bulletins/{b.slug}",
        }
        for b in BULLETINS
        if b.since <= now
    ]
    return b"GDWidgets[0].update(" + _json(items) + b");"


def bulletin_html(slug: str) -> bytes | None:
    bulletin = next((b for b in BULLETINS if b.slug == slug), None)
    if bulletin is None:
        return None
    body = "".join(f"<p>{escape(p)}</p>" for p in (bulletin.subject, *bulletin.paragraphs))
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{escape(bulletin.subject)}</title></head><body>"
        '<div id="header"><a href="https://www.cbp.gov/">U.S. Customs and Border Protection'
        "</a> · Cargo Systems Messaging Service</div>"
        f'<table><tr><td class="bulletin_body">{body}</td></tr></table>'
        "</body></html>"
    ).encode()


# --- USITC HTS REST exportList ---------------------------------------------------------
# exportList?from=8708&to=9903.94&format=JSON&styles=false: a JSON array of rows with
# htsno ("" for a description-only row), indent, description, superior, units, general,
# special, other, footnotes ({columns, value, type}), quotaQuantity, additionalDuties.
# Trimmed to the rows of the story: a real range from 8708 to 9903.94 carries every
# heading in between. One export, so the footnotes of heading 8708 and the Chapter 99
# lines they point at are read together (applies_to joins them).

_SPECIAL = "Free (A+,AU,B,BH,CA,CL,CO,D,E,IL,JO,KR,MA,MX,OM,P,PA,PE,SG)"
_SEE_9903_94_05 = [{"columns": ["general"], "value": "See 9903.94.05.", "type": "endnote"}]


def _row(htsno: str, indent: int, description: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "htsno": htsno,
        "indent": str(indent),  # a string in real exports
        "description": description,
        "superior": None if htsno else "true",
        "units": [],
        "general": "",
        "special": "",
        "other": "",
        "footnotes": [],
        "quotaQuantity": None,
        "additionalDuties": None,
    }
    row.update(fields)
    return row


def _base_rows(*, footnote: bool) -> list[dict[str, Any]]:
    notes = _SEE_9903_94_05 if footnote else []
    rate = {"general": "2.5%", "special": _SPECIAL, "other": "25%", "units": ["No."]}
    return [
        _row("8708", 0, "Parts and accessories of the motor vehicles of headings 8701 to 8705:"),
        _row("", 1, "Other parts and accessories of bodies (including cabs):"),
        _row("8708.29", 2, "Other:"),
        _row("8708.29.50", 3, "Other", footnotes=notes, **rate),
        _row("", 1, "Other parts and accessories:"),
        _row("8708.99", 2, "Other:"),
        _row("8708.99.81", 3, "Other", footnotes=notes, **rate),
    ]


_CHAPTER99_ROWS = [
    _row(
        "9903.94.05",
        0,
        "Except for products described in heading 9903.94.06, automobile parts, as provided "
        "for in subdivision (g) of U.S. note 33 to this subchapter",
        general="The duty provided in the applicable subheading + 25%",
    ),
    _row(
        "9903.94.06",
        0,
        "Effective with respect to entries on or after May 3, 2025, articles provided for "
        "in subdivision (h) of U.S. note 33 to this subchapter",
        general="The duty provided in the applicable subheading",
    ),
]


@dataclass(frozen=True, slots=True)
class Release:
    since: datetime
    name: str
    rows: tuple[Mapping[str, Any], ...]


# The release in force at the baseline has no 9903.94 lines. The one carrying the
# auto-parts lines is put on April 29, the day CBP's Harmonized System Update 2517 loaded
# 9903.94.05/.06 into ACE (the USITC's own posting time: the demo's).
HTS_RELEASES: tuple[Release, ...] = (
    Release(
        at("2025-01-01T00:00:00-05:00"), "2025 Basic Edition", tuple(_base_rows(footnote=False))
    ),
    Release(
        at("2025-04-29T17:00:00-04:00"),
        "2025 revision with heading 9903.94 (auto parts)",
        (*_base_rows(footnote=True), *_CHAPTER99_ROWS),
    ),
)


def hts_export(now: datetime) -> bytes:
    current = [r for r in HTS_RELEASES if r.since <= now][-1]
    return _json(list(current.rows))


def official_instants() -> Iterable[datetime]:
    """When a document appears (or leaves a listing): the demo visits each."""
    for published in (*FR_DOCUMENTS, *PI_DOCUMENTS):
        yield published.since
        if published.until is not None:
            yield published.until
    yield from (b.since for b in BULLETINS)
    yield from (r.since for r in HTS_RELEASES)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
