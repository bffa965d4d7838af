"""Federal Register API v1 documents as entries (pure: runs in the parse pool).

Shared by the documents search (``federal_register.py``) and the Public Inspection desk
(``inspection.py``): an answer is ``{"count", "results": [...], "next_page_url"}`` and each
result becomes an entry keyed by ``document_number`` with ``details["document"]``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from notifier.core.model import Entry
from notifier.errors import FetchError
from notifier.sources.http import one_line
from notifier.sources.rss import plain_text

_SUMMARY_MAX_CHARS = 2000
_TITLE_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class DocumentsPage:
    """One parsed page of an API answer (picklable: it comes back from the parse pool)."""

    entries: tuple[Entry, ...]
    next_page_url: str | None
    count: int | None


def parse_documents_page(body: bytes, **_options: Any) -> DocumentsPage:
    """One ``documents.json`` page -> entries keyed by ``document_number``.

    Raises FetchError naming what was expected for a body that is not JSON, not an object,
    or has no ``results`` list (an answer with ``count`` 0 may omit it).
    """
    raw = load_answer(body, what="Federal Register search")
    results = answer_results(raw, what="Federal Register search")
    entries = tuple(document_entry(document) for document in results)
    next_url = raw.get("next_page_url")
    count = raw.get("count")
    return DocumentsPage(
        entries=entries,
        next_page_url=next_url if isinstance(next_url, str) else None,
        count=count if isinstance(count, int) else None,
    )


def load_answer(body: bytes, *, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError(f"{what} answer is not JSON: {one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise FetchError(f"{what} answer is not a JSON object (expected `results`)")
    return raw


def answer_results(raw: Mapping[str, Any], *, what: str) -> list[Mapping[str, Any]]:
    results = raw.get("results")
    if results is None and raw.get("count") == 0:
        return []
    if not isinstance(results, list):
        raise FetchError(f"{what} answer has no `results` list (expected `count`, `results`)")
    for index, document in enumerate(results, 1):
        if not isinstance(document, dict) or not _str(document.get("document_number")):
            raise FetchError(f"{what} result {index} has no `document_number`")
    return results


def document_entry(
    raw: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
    summary: str | None = None,
    published: str | None = None,
    hashed: Iterable[object] = (),
) -> Entry:
    """One API document as an entry; ``extra`` adds to ``details["document"]`` (the Public
    Inspection fields) and ``hashed`` to what the content hash covers."""
    number = _str(raw.get("document_number")).strip()
    title = plain_text(_str(raw.get("title")))
    abstract = plain_text(_str(raw.get("abstract")))
    dates = plain_text(_str(raw.get("dates")))
    document = document_details(raw, texts=(dates, abstract))
    document.update(extra or {})
    corrections = sorted(_corrections(raw.get("corrections")))
    content = [title, abstract, dates, document["effective_on"], corrections, *hashed]
    content_hash = hashlib.sha256(
        json.dumps(content, ensure_ascii=False, default=str).encode()
    ).hexdigest()
    text = abstract if summary is None else summary
    return Entry(
        key=number,
        title=_cut(title or number, _TITLE_MAX_CHARS),
        link=_http(raw.get("html_url")) or "",
        published=published if published is not None else _iso_date(raw.get("publication_date")),
        summary=_cut(text, _SUMMARY_MAX_CHARS),
        content_hash=content_hash,
        details={"document": document},
    )


def document_details(raw: Mapping[str, Any], *, texts: Sequence[str]) -> dict[str, Any]:
    """``details["document"]`` of the contract (null where the API has nothing)."""
    effective_on = _iso_date(raw.get("effective_on"))
    source = "api" if effective_on else None
    if effective_on is None:
        effective_on = effective_date_in_text(*texts)
        source = "text" if effective_on else None
    return {
        "number": _str(raw.get("document_number")).strip(),
        "type": type_code(raw.get("type")),
        "subtype": _str(raw.get("subtype")) or None,
        "agencies": agency_names(raw),
        "publication_date": _iso_date(raw.get("publication_date")),
        "effective_on": effective_on,
        "effective_on_source": source,
        "signing_date": _iso_date(raw.get("signing_date")),
        "citation": _str(raw.get("citation")) or None,
        "executive_order_number": _number(raw.get("executive_order_number")),
        "proclamation_number": _number(raw.get("proclamation_number")),
        "correction_of": next(iter(_corrections([raw.get("correction_of")])), None),
        "corrections": sorted(_corrections(raw.get("corrections"))),
        "html_url": _http(raw.get("html_url")),
        "pdf_url": _http(raw.get("pdf_url")),
    }


# Results name the type ("Presidential Document"); conditions and the contract use codes.
_TYPE_CODES = {
    "rule": "RULE",
    "proposed rule": "PRORULE",
    "notice": "NOTICE",
    "presidential document": "PRESDOCU",
    "uncategorized document": "UNKNOWN",
    "sunshine act document": "SUNSHINE",
    "correction": "CORRECT",
}


def type_code(value: object) -> str | None:
    """``RULE``, ``PRORULE``, ``NOTICE``, ``PRESDOCU`` (as in ``conditions[type][]``) for
    the type name a result carries; an unknown name upper-cased."""
    name = " ".join(_str(value).split())
    if not name:
        return None
    return _TYPE_CODES.get(name.lower(), name.upper())


def agency_names(raw: Mapping[str, Any]) -> list[str]:
    """Agency names from ``agencies`` objects (``name``, else ``raw_name``), else
    ``agency_names``; the parent department first, as the API lists them."""
    names: list[str] = []
    for agency in raw.get("agencies") or ():
        if isinstance(agency, dict):
            name = _str(agency.get("name")) or _str(agency.get("raw_name"))
            if name:
                names.append(" ".join(name.split()))
    if not names:
        names = [" ".join(n.split()) for n in raw.get("agency_names") or () if isinstance(n, str)]
    return list(dict.fromkeys(names))


def _corrections(value: object) -> list[str]:
    """Document numbers of ``corrections`` / ``correction_of`` (numbers, or API URLs
    ending in one: ".../documents/C1-2025-05930" or ".../C1-2025-05930.json")."""
    if not isinstance(value, list):
        return []
    numbers = (
        re.sub(r"\.json$", "", item.strip().rstrip("/").rsplit("/", 1)[-1])
        for item in value
        if isinstance(item, str) and item.strip()
    )
    return [number for number in numbers if number]


# ------------------------------------------------------------- effective date in text

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_ANCHOR = re.compile(r"\b(?:effective|on or after)\b", re.IGNORECASE)
_MONTH_DATE = re.compile(
    r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?\s+(\d{1,2}),?\s+(\d{4})\b",
    re.IGNORECASE,
)
_WINDOW_CHARS = 160  # "effective 12:01 a.m. eastern daylight time on May 3, 2025": ~60


def effective_date_in_text(*texts: str) -> str | None:
    """The first "effective … <Month> <d>, <yyyy>" (or "on or after … <date>") date in
    the texts, as an ISO date; None when none says it.

    Proclamations leave ``effective_on`` empty and write the time out: "This proclamation
    is effective at 12:01 a.m. eastern daylight time on May 3, 2025", "goods entered for
    consumption … on or after 12:01 a.m. eastern daylight time on April 5, 2025".
    """
    for text in texts:
        for anchor in _ANCHOR.finditer(text):
            window = text[anchor.end() : anchor.end() + _WINDOW_CHARS]
            found = _MONTH_DATE.search(window)
            if not found:
                continue
            month, day, year = found.groups()
            try:
                return date(int(year), _MONTHS[month.lower()], int(day)).isoformat()
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------------- values


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


def _iso_date(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        return None


def _http(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
