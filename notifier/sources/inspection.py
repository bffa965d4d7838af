"""``kind = "federal-register-inspection"``: the Federal Register's Public Inspection desk.

``https://www.federalregister.gov/api/v1/public-inspection-documents/current.json`` lists
the documents on file before their publication (``{"count", "results": [...]}``), each
with ``document_number``, ``title``, ``type``, ``agencies``, ``filed_at``, ``filing_type``
(``special`` | ``regular``), ``publication_date`` (the scheduled one), ``pdf_url``,
``html_url``. The user may give ``current.json`` or a search,
``public-inspection-documents.json?conditions[…]``, whose ``next_page_url`` is followed as
for the documents search (same rate limit, same bounds).

``current.json`` documents no ``conditions``, so ``conditions[agencies][]`` (agency slugs)
and ``conditions[type][]`` (RULE, PRORULE, NOTICE, PRESDOCU) in the URL are applied here,
client-side, whichever form the URL has (for a search, the API has already applied them).
Documents have no abstract: the summary is built from their subject lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from notifier.config import FeedSection
from notifier.core.model import Entry, Event
from notifier.sources.base import Change, FetchContext, Fetched, Tagger, Validators
from notifier.sources.events import entry_events
from notifier.sources.federal_register import fetch_pages
from notifier.sources.fr_documents import (
    DocumentsPage,
    answer_results,
    document_entry,
    load_answer,
    type_code,
)
from notifier.sources.rss import plain_text

_SUBJECT_FIELDS = ("toc_subject", "toc_doc", "subject_1", "subject_2", "subject_3")


def url_filters(url: str) -> dict[str, tuple[str, ...]]:
    """The ``agencies`` (slugs) and ``types`` (codes) the URL's conditions ask for."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=False)
    agencies = tuple(v.strip().lower() for k, v in query if k == "conditions[agencies][]")
    types = tuple(v.strip().upper() for k, v in query if k == "conditions[type][]")
    return {"agencies": agencies, "types": types}


def parse_inspection_page(
    body: bytes, *, agencies: Sequence[str] = (), types: Sequence[str] = (), **_options: Any
) -> DocumentsPage:
    """One Public Inspection answer -> entries keyed by ``document_number``, keeping only
    the documents of the given agency slugs and type codes (when any are given)."""
    raw = load_answer(body, what="Public Inspection")
    results = answer_results(raw, what="Public Inspection")
    entries = tuple(
        inspection_entry(document)
        for document in results
        if _wanted(document, agencies=agencies, types=types)
    )
    next_url = raw.get("next_page_url")
    count = raw.get("count")
    return DocumentsPage(
        entries=entries,
        next_page_url=next_url if isinstance(next_url, str) else None,
        count=count if isinstance(count, int) else None,
    )


def inspection_entry(raw: Mapping[str, Any]) -> Entry:
    """A document on file: ``details["document"]`` plus ``filed_at`` and ``filing_type``;
    ``published`` is when it went on file (its publication is still ahead)."""
    title = plain_text(_str(raw.get("title")))
    parts = [plain_text(_str(raw.get(name))) for name in _SUBJECT_FIELDS]
    subjects = [p for p in dict.fromkeys(parts) if p and p != title]
    note = plain_text(_str(raw.get("editorial_note")))
    summary = " — ".join([*subjects, *([note] if note else [])])
    filed_at = _filed_at(raw.get("filed_at"))
    filing_type = _str(raw.get("filing_type")).strip().lower() or None
    return document_entry(
        raw,
        extra={"filed_at": filed_at, "filing_type": filing_type},
        summary=summary,
        published=filed_at,
        hashed=(summary, filing_type, raw.get("publication_date"), note),
    )


def _wanted(raw: Mapping[str, Any], *, agencies: Sequence[str], types: Sequence[str]) -> bool:
    if types and type_code(raw.get("type")) not in types:
        return False
    if not agencies:
        return True
    slugs = set()
    for agency in raw.get("agencies") or ():
        if isinstance(agency, dict):
            slug = _str(agency.get("slug")) or _slug(_str(agency.get("name")))
            slugs.add(slug.lower())
    return any(slug in slugs for slug in agencies)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _filed_at(value: object) -> str | None:
    """``filed_at`` as ISO 8601 with its offset ("2025-04-02T08:45:00-04:00")."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).replace(microsecond=0).isoformat()
    except ValueError:
        return None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


class InspectionKind:
    """The Federal Register's Public Inspection desk: documents on file before they are
    published (``feed.entry.*`` events with ``data.entry.document``, ``filed_at`` too)."""

    name: ClassVar[str] = "federal-register-inspection"
    reports_removals: ClassVar[bool] = False
    tags_entries: ClassVar[bool] = True

    async def fetch(self, feed: FeedSection, validators: Validators, ctx: FetchContext) -> Fetched:
        url = str(feed.url)
        return await fetch_pages(
            feed,
            validators,
            ctx,
            url=url,
            parser=parse_inspection_page,
            fields=(),  # the default field set carries everything, filed_at included
            options=url_filters(url),
        )

    async def complete(
        self, feed: FeedSection, entries: Sequence[Entry], ctx: FetchContext
    ) -> tuple[list[Entry], set[str]]:
        return list(entries), set()

    def events(
        self, feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
    ) -> list[Event]:
        return entry_events(feed, changes, now=now, tagger=tagger)
