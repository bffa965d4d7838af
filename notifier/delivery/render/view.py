"""The flat view of one event that templates see, and the labels it is spelled with.

Pure: an event in, a dict out; no Jinja, no clock, no zone (times are converted by the
renderer's filters).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from notifier.core.model import Event
from notifier.delivery.render.families import family_of

#: Short label shown on the coloured badge and at the start of the subject.
LABELS = {
    "tariff.rule.announced": "Announced",
    "tariff.rule.changed": "Changed",
    "tariff.rule.withdrawn": "Withdrawn",
    "tariff.rule.reminder": "Reminder",
    "tariff.rule.effective": "In effect",
    "tariff.rule.expired": "Expired",
    "feed.entry.new": "New notice",
    "feed.entry.updated": "Updated notice",
    "hts.line.added": "New HTS line",
    "hts.line.changed": "HTS line changed",
    "hts.line.removed": "HTS line removed",
    "source.failing": "Source failing",
    "source.recovered": "Source recovered",
    "source.held": "Changes held",
}

#: Badge colours. White text on each has a contrast ratio of at least 4.5:1 (WCAG AA).
COLOURS = {
    "tariff.rule.announced": "#1d4ed8",
    "tariff.rule.changed": "#b45309",
    "tariff.rule.withdrawn": "#be123c",
    "tariff.rule.reminder": "#6d28d9",
    "tariff.rule.effective": "#047857",
    "tariff.rule.expired": "#4b5563",
    "feed.entry.new": "#0e7490",
    "feed.entry.updated": "#c2410c",
    "hts.line.added": "#1d4ed8",
    "hts.line.changed": "#b45309",
    "hts.line.removed": "#be123c",
    "source.failing": "#b91c1c",
    "source.recovered": "#047857",
    "source.held": "#92400e",
}
NEUTRAL_COLOUR = "#374151"

# Common trade partners; anything else is shown as its code. Names as CBP uses them.
COUNTRY_NAMES = {
    "AE": "United Arab Emirates", "AR": "Argentina", "AU": "Australia", "BD": "Bangladesh",
    "BE": "Belgium", "BR": "Brazil", "CA": "Canada", "CH": "Switzerland", "CL": "Chile",
    "CN": "China", "CO": "Colombia", "DE": "Germany", "ES": "Spain", "EU": "European Union",
    "FR": "France", "GB": "United Kingdom", "HK": "Hong Kong", "ID": "Indonesia",
    "IE": "Ireland", "IL": "Israel", "IN": "India", "IT": "Italy", "JP": "Japan",
    "KH": "Cambodia", "KR": "South Korea", "LK": "Sri Lanka", "MO": "Macau", "MX": "Mexico",
    "MY": "Malaysia", "NL": "Netherlands", "NO": "Norway", "NZ": "New Zealand",
    "PH": "Philippines", "PK": "Pakistan", "PL": "Poland", "RU": "Russia",
    "SA": "Saudi Arabia", "SE": "Sweden", "SG": "Singapore", "TH": "Thailand", "TR": "Türkiye",
    "TW": "Taiwan", "UK": "United Kingdom", "US": "United States", "VN": "Vietnam",
    "ZA": "South Africa",
}  # fmt: skip

FIELD_LABELS = {
    "rate": "Rate", "effective": "Effective", "ends": "Ends", "origins": "Origins",
    "hts": "Goods (HTS)", "status": "Status", "title": "Title", "basis": "Basis",
    "source": "Source", "imposed_by": "Imposed by", "notes": "Notes", "summary": "Summary",
    "link": "Link", "published": "Published", "general": "General rate",
    "special": "Special rate", "other": "Column 2 rate", "units": "Units",
    "footnotes": "Footnotes", "description": "Description", "applies_to": "Applies to",
}  # fmt: skip
_DURATION_UNITS = {"w": "week", "d": "day", "h": "hour", "m": "minute", "s": "second"}
_DURATION = re.compile(r"^(\d+)([wdhms])$")
_LINE_KEYS = ("htsno", "description", "general", "special", "other", "units", "footnotes")
_TITLE_MAX_CHARS = 120


def alert_view(event: Event) -> dict[str, Any]:
    """The flat, template-friendly facts of one event.

    Every key exists for every family (``None`` where it does not apply), so shared
    macros work under ``StrictUndefined``. ``title`` is what a subject or a digest line
    names: the rule's or entry's title, the HTS line, or the source.
    """
    data = event.data
    family = family_of(event.type)
    view: dict[str, Any] = {
        "event": event,
        "type": event.type,
        "family": family,
        "kind": event.type.rsplit(".", 1)[-1],
        "label": LABELS.get(event.type, event.type),
        "colour": COLOURS.get(event.type, NEUTRAL_COLOUR),
        "data": data,
        "late": bool(data.get("late", False)),
        "changes": list(data.get("changes") or ()),
        "occurred_at": event.timestamp,
        "rule": None,
        "entry": None,
        "line": None,
        "source": None,
        "transition_at": data.get("transition_at"),
        "remind_before": data.get("remind_before"),
        "reason": data.get("reason"),
        "started": False,
        "feed_name": None,
        "tags": {"origins": [], "hts": [], "rates": [], "dates": []},
        "link": "",
        "title": "",
    }
    view["moments"] = moments(event)
    if family == "rule":
        _rule_view(view, event)
    elif family == "entry":
        _entry_view(view, data)
    elif family == "hts":
        _line_view(view, data)
    else:
        _source_view(view, data)
    return view


def moments(event: Event) -> list[tuple[str, str, bool]]:
    """The dates an alert names, when they differ: (label, ISO value, with time of day).

    "effective 2025-05-03, published 2025-04-29, detected 2025-04-28 16:40": the legal
    date, the publication and when this notifier first saw it (CONTRACT "Trust"). Empty
    when they all fall on one day, so a routine alert carries no extra line.
    """
    data = event.data
    found: list[tuple[str, str, bool]] = []
    rule = data.get("rule")
    entry = data.get("entry")
    if isinstance(rule, Mapping) and rule.get("effective"):
        found.append(("effective", str(rule["effective"]), True))
    elif isinstance(entry, Mapping):
        document = entry.get("document")
        if isinstance(document, Mapping):
            if document.get("effective_on"):
                found.append(("effective", str(document["effective_on"]), False))
            # On the Public Inspection desk the publication is still ahead.
            filed = document.get("filed_at")
            if document.get("publication_date"):
                label = "to be published" if filed else "published"
                found.append((label, str(document["publication_date"]), False))
            if filed:
                found.append(("filed", str(filed), True))
        elif entry.get("published"):
            found.append(("published", str(entry["published"]), True))
    if data.get("detected_at"):
        found.append(("detected", str(data["detected_at"]), True))
    return found if len({value[:10] for _, value, _ in found}) > 1 else []


def _rule_view(view: dict[str, Any], event: Event) -> None:
    rule = event.data.get("rule")
    if rule is None:
        return
    view["rule"] = rule
    view["started"] = to_datetime(rule["effective"]) <= event.timestamp
    view["link"] = rule.get("source") or ""
    view["title"] = rule["title"]


def _entry_view(view: dict[str, Any], data: Mapping[str, Any]) -> None:
    entry = data.get("entry")
    if entry is None:
        return
    view["entry"] = entry
    view["feed_name"] = data.get("feed_title") or data.get("feed") or "a feed"
    view["tags"] = {k: list((data.get("tags") or {}).get(k) or ()) for k in view["tags"]}
    view["link"] = entry.get("link") or ""
    view["title"] = entry["title"]


def _line_view(view: dict[str, Any], data: Mapping[str, Any]) -> None:
    raw: Mapping[str, Any] = data.get("line") or {}
    line: dict[str, Any] = {key: raw.get(key) or "" for key in _LINE_KEYS}
    line["applies_to"] = list(raw.get("applies_to") or ())
    line["origins"] = list(raw.get("origins") or ("*",))
    line["dotted"] = hts_dotted(line["htsno"])
    # The description is the path from the heading down; its last step names the line.
    line["short"] = _clip(str(line["description"]).rsplit(":", 1)[-1].strip(), _TITLE_MAX_CHARS)
    view["line"] = line
    view["title"] = f"HTS {line['dotted']}" + (f" {line['short']}" if line["short"] else "")


def _source_view(view: dict[str, Any], data: Mapping[str, Any]) -> None:
    would_emit = {str(k): int(v) for k, v in (data.get("would_emit") or {}).items()}
    view["source"] = {
        "id": str(data.get("source") or "a source"),
        "kind": data.get("kind") or "",
        "since": data.get("since"),
        "failures": data.get("failures"),
        "last_error": data.get("last_error") or "",
        "would_emit": would_emit,
        "held_total": sum(would_emit.values()),
        "examples": [str(e) for e in data.get("examples") or ()],
    }
    view["title"] = f"Source {view['source']['id']}"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- labels ---------------------------------------------------------------------------------


def hts_dotted(code: str) -> str:
    """``"870421"`` -> ``"8704.21"``; headings stay ``"8708"``; anything else unchanged."""
    code = str(code).strip()
    if not code.isdigit() or len(code) <= 4:
        return code
    rest = code[4:]
    return ".".join([code[:4], *(rest[i : i + 2] for i in range(0, len(rest), 2))])


def hts_label(codes: Iterable[str] | str) -> str:
    """``["*"]`` -> ``"all goods"``; ``["72", "870421"]`` -> ``"chapter 72, 8704.21"``."""
    items = [codes] if isinstance(codes, str) else list(codes)
    if not items:
        return "none"
    if "*" in items:
        return "all goods"
    return ", ".join(
        f"chapter {c}" if len(c) <= 2 and c.isdigit() else hts_dotted(c) for c in items
    )


def country_name(code: str) -> str:
    """``"JP"`` -> ``"Japan (JP)"``; unknown codes stay as they are."""
    name = COUNTRY_NAMES.get(code.upper())
    return f"{name} ({code.upper()})" if name else code


def origins_label(origins: Iterable[str] | str) -> str:
    """``["*"]`` -> ``"all countries"``; ``["JP"]`` -> ``"Japan (JP)"``; unknown codes as given."""
    items = [origins] if isinstance(origins, str) else list(origins)
    if not items:
        return "none"
    if "*" in items:
        return "all countries"
    return ", ".join(country_name(c) for c in items)


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name.replace("_", " ").capitalize())


def duration_words(value: str) -> str:
    """``"7d"`` -> ``"7 days"``, ``"1h"`` -> ``"1 hour"``; other forms are returned as given."""
    match = _DURATION.match(str(value).strip())
    if not match:
        return str(value)
    count, unit = int(match.group(1)), _DURATION_UNITS[match.group(2)]
    return f"{count} {unit}{'' if count == 1 else 's'}"


def to_datetime(value: str | datetime) -> datetime:
    """An aware datetime from an RFC 3339 string or a datetime (naive means UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
