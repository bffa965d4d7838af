"""The tariff schedule's lines (the USITC HTS export), as pure functions.

An export is a list of rows in schedule order. A row's ``indent`` is its depth; a row with
an empty ``htsno`` only gives its description to the rows below it ("Other:" headers).
A line's description is therefore the path of descriptions from its heading down.
Chapter 99 lines (the temporary duties: Sections 232, 301, their successors) name the
goods they cover in words ("articles of heading 8703"), and base lines point back at them
in their footnotes ("See 9903.94.05."): :func:`resolve_applies_to` joins both directions.

HTS codes here are digits without dots (``"8708"``, ``"870829"``), as the tagger writes
them, so subscriber ``hts`` filters compare them by prefix.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: The fields whose change is ``hts.line.changed`` (CONTRACT "HTS schedule events").
COMPARED_FIELDS = ("description", "general", "special", "other", "units", "footnotes")
PATH_SEPARATOR = " > "


class DescriptionPath:
    """The descriptions above the current row, by indent: feed rows in schedule order.

    A row at indent n replaces whatever stood at depth n and below; an indent that skips
    levels (2 after 0) leaves the missing level out rather than inventing one.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def push(self, indent: int, description: str) -> str:
        """Record a row; return its full path (ancestors first, then its own text)."""
        while self._stack and self._stack[-1][0] >= indent:
            self._stack.pop()
        text = clean_description(description)
        if text:
            self._stack.append((indent, text))
        return PATH_SEPARATOR.join(part for _, part in self._stack)


_SPACE = re.compile(r"\s+")


def clean_description(text: str) -> str:
    """One line, no trailing colon: "Other:" reads as a path step, "Other"."""
    return _SPACE.sub(" ", text).strip().rstrip(":").rstrip()


def heading_of(htsno: str) -> str:
    """The 4-digit heading of an HTS number ("8708.29.50" -> "8708")."""
    return digits(htsno)[:4]


def digits(htsno: str) -> str:
    """The digits of an HTS number, "8708.29.50" -> "87082950"."""
    plain = htsno.replace(".", "")
    return plain if plain.isdigit() else "".join(ch for ch in plain if ch.isdigit())


def is_chapter99(htsno: str) -> bool:
    return htsno.startswith("99")


# ------------------------------------------------------------------------- applies_to

# A dotted HTS number anywhere ("8708.29.50", "8703.23.01.90").
_DOTTED = re.compile(r"(?<![\d.])(\d{4})\.\d{2}(?:\.\d{2}){0,2}(?![\d])")
# "heading 8703", "headings 8701, 8702 and 8704", "subheadings 8704.21 or 8704.31".
_HEADING_LIST = re.compile(
    r"\b(?:sub)?headings?\s+((?:\d{4}(?:\.\d{2}){0,3}(?:\s*(?:,|and|or|through|to)\s*)*)+)",
    re.IGNORECASE,
)
_CHAPTER_LIST = re.compile(
    r"\bchapters?\s+((?:\d{1,2}(?!\d)(?:\s*(?:,|and|or|through|to)\s*)*)+)", re.IGNORECASE
)
_NUMBER = re.compile(r"\d{4}(?:\.\d{2}){0,3}|\d{1,2}")
_CHAPTER99_REF = re.compile(r"(?<![\d.])9903\.\d{2}\.\d{2}(?![\d])")


def headings_named(description: str) -> list[str]:
    """The headings (4 digits) and chapters (2 digits) a description names, in order.

    Chapter 98/99 numbers are left out: a Chapter 99 line that names another one ("except
    as provided in heading 9903.94.02") says nothing about the goods it covers.
    """
    found: list[str] = []
    for match in _DOTTED.finditer(description):
        found.append(match.group(1))
    for match in _HEADING_LIST.finditer(description):
        found.extend(number[:4] for number in _NUMBER.findall(match.group(1)) if len(number) >= 4)
    for match in _CHAPTER_LIST.finditer(description):
        found.extend(number.zfill(2) for number in _NUMBER.findall(match.group(1)))
    return _unique(code for code in found if not code.startswith(("98", "99")))


def chapter99_refs(footnotes: str) -> list[str]:
    """The Chapter 99 lines a footnote points at ("See 9903.94.05." -> ["9903.94.05"])."""
    return _unique(_CHAPTER99_REF.findall(footnotes))


def resolve_applies_to(
    lines: Iterable[tuple[str, str, str]],
) -> dict[str, tuple[str, ...]]:
    """``htsno -> applies_to`` for lines given as (htsno, description path, footnotes).

    Two passes over the whole export, since a base line may point at a Chapter 99 line
    above or below it: first every footnote reference is collected, then each Chapter 99
    line gets the headings its description names plus the headings of the base lines
    that point at it. Any other line applies to its own heading.
    """
    listed = list(lines)
    pointed: dict[str, list[str]] = {}
    for htsno, _description, footnotes in listed:
        if is_chapter99(htsno):
            continue
        for ref in chapter99_refs(footnotes):
            pointed.setdefault(ref, []).append(heading_of(htsno))
    out: dict[str, tuple[str, ...]] = {}
    own: dict[str, tuple[str, ...]] = {}  # one tuple per heading, shared by its lines
    for htsno, description, _footnotes in listed:
        if is_chapter99(htsno):
            out[htsno] = tuple(_unique([*headings_named(description), *pointed.get(htsno, ())]))
        else:
            heading = heading_of(htsno)
            out[htsno] = own.setdefault(heading, (heading,))
    return out


def _unique(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))


# ---------------------------------------------------------------------------- origins

# The trading partners Chapter 99 descriptions name ("the product of Japan"). A small
# table, not the tagger's gazetteer: schedule text names countries formally. Matching is
# case-sensitive, so "china" (porcelain) and "turkey" (the bird) are not origins.
_COUNTRIES: Mapping[str, str] = {
    "Argentina": "AR",
    "Australia": "AU",
    "Austria": "AT",
    "Bangladesh": "BD",
    "Belgium": "BE",
    "Brazil": "BR",
    "Cambodia": "KH",
    "Canada": "CA",
    "Chile": "CL",
    "China": "CN",
    "Colombia": "CO",
    "Denmark": "DK",
    "European Union": "EU",
    "Finland": "FI",
    "France": "FR",
    "Germany": "DE",
    "Hong Kong": "HK",
    "India": "IN",
    "Indonesia": "ID",
    "Ireland": "IE",
    "Israel": "IL",
    "Italy": "IT",
    "Japan": "JP",
    "Korea": "KR",
    "Macau": "MO",
    "Macao": "MO",
    "Malaysia": "MY",
    "Mexico": "MX",
    "Netherlands": "NL",
    "New Zealand": "NZ",
    "Norway": "NO",
    "Pakistan": "PK",
    "Peru": "PE",
    "Philippines": "PH",
    "Poland": "PL",
    "Russia": "RU",
    "Russian Federation": "RU",
    "Saudi Arabia": "SA",
    "Singapore": "SG",
    "South Africa": "ZA",
    "Spain": "ES",
    "Sweden": "SE",
    "Switzerland": "CH",
    "Taiwan": "TW",
    "Thailand": "TH",
    "Turkey": "TR",
    "Türkiye": "TR",
    "Ukraine": "UA",
    "United Arab Emirates": "AE",
    "United Kingdom": "GB",
    "Vietnam": "VN",
    "Viet Nam": "VN",
}
EVERY_ORIGIN = ("*",)


@functools.cache
def _country_pattern() -> re.Pattern[str]:
    """The alternation of every country name (compiled on first use: ~50 ms at import
    for commands that never read a schedule line)."""
    names = sorted(map(re.escape, _COUNTRIES), key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(names) + r")(?!\w)")


_CAPITALISED = re.compile(r"[A-ZÜ][a-zü]+")
_FIRST_WORDS = frozenset(name.split()[0] for name in _COUNTRIES)


def origins_named(description: str) -> tuple[str, ...]:
    """ISO 3166 alpha-2 codes (``EU`` for the Union) of the countries a description
    names, in order; ``("*",)`` when it names none (the line applies to every origin)."""
    # A cheap pre-check: most lines name no country, and the alternation is the slow part.
    if _FIRST_WORDS.isdisjoint(_CAPITALISED.findall(description)):
        return EVERY_ORIGIN
    codes = _unique(_COUNTRIES[name] for name in _country_pattern().findall(description))
    return tuple(codes) if codes else EVERY_ORIGIN


# ------------------------------------------------------------------------- field diffs


def field_changes(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``[{"field", "from", "to"}]`` for each compared field that differs, in field order.

    A field missing on one side reads as "" (an export that starts carrying a field shows
    it as a change from "")."""
    if previous is None:
        return []
    return [
        {"field": name, "from": previous.get(name, ""), "to": current.get(name, "")}
        for name in COMPARED_FIELDS
        if previous.get(name, "") != current.get(name, "")
    ]


def units_text(units: object) -> str:
    """The export's ``units`` (a list of strings, or a string) as one string."""
    if isinstance(units, str):
        return units.strip()
    if isinstance(units, Sequence):
        return ", ".join(str(unit).strip() for unit in units if str(unit).strip())
    return ""


def footnotes_text(footnotes: object) -> str:
    """The export's ``footnotes`` (objects with ``value``) as one string, "; "-joined."""
    if isinstance(footnotes, str):
        return clean_description(footnotes)
    if not isinstance(footnotes, Sequence):
        return ""
    values = []
    for note in footnotes:
        value = note.get("value") if isinstance(note, Mapping) else note
        if isinstance(value, str) and value.strip():
            values.append(_SPACE.sub(" ", value).strip())
    return "; ".join(values)
