"""Explicit numbers in a feed entry: HTS numbers, Chapter 99 lines, rates and dates.

Part of the tagger (``notifier.sources.tagging``, whose docstring states the rules). Every
number-like token is found by one scan and then classified from its shape and its
neighbours; one scan is cheaper than one regex per kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

__all__ = ["Numbers", "dates_in", "find_chapter99", "find_hts_numbers"]


# --------------------------------------------------------------------------- numbers

_TOKEN = re.compile(r"\d[\d./\-–]*\d|\d")
_DOTTED = re.compile(r"\d{4}(?:\.\d{2}){1,3}|\d{4}\.\d{2}\.\d{4}")
_CHAPTER99 = re.compile(r"9903\.\d{2}\.\d{2}")
# "9903.01.84–.89", "9903.01.84-9903.01.89", "8806.21-8806.24": both ends.
_SPAN = re.compile(r"(\d{4}(?:\.\d{2}){1,3})[-–](\.\d{2}|\d{4}(?:\.\d{2}){1,3})")
_RATE_NUMBER = re.compile(r"\d{1,3}(?:\.\d+)?")
_RANGE = re.compile(r"(\d{1,3}(?:\.\d+)?)[-–](\d{1,3}(?:\.\d+)?)")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_PCT = r"\s*(?:%|-?\s*(?:percent|per\s+cent|pct)\b)"
_PCT_AFTER = re.compile(_PCT)
_PAIR_AFTER = re.compile(rf"(?:{_PCT})?\s+(?:and|to)\s+(\d{{1,3}}(?:\.\d+)?){_PCT}")
_PAIR_BEFORE = re.compile(r"(?:between|from)\s+$")
_NOT_A_RATE_BEFORE = re.compile(r"(?:section|sec\.)\s+$")
_HTS_WORDS = ("hts", "heading", "chapter")
_LIST_NUMBER = r"\d{2,10}(?:\.\d{2,4}){0,3}"
# Matched at each place str.find() spots a keyword: cheaper than scanning the whole text.
_KEYWORD_AT = re.compile(
    r"(hts(?:us)?|headings?|chapters?)(?:\s+(?:nos?\.|numbers?))?\s+"
    rf"({_LIST_NUMBER}(?:(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|through|to)\s+)"
    rf"{_LIST_NUMBER}(?![\w%]))*)(?![\w%])"
)
# Two-digit chapters of the US Bankruptcy Code: "Chapter 11" is HTS chapter 11 only when
# the text speaks of the tariff schedule and not of bankruptcy.
_BANKRUPTCY_CHAPTERS = frozenset({"11", "12", "13", "15"})
_SCHEDULE_WORDS = ("hts", "harmonized", "tariff schedule")


class Numbers:
    """HTS numbers, Chapter 99 lines, rates and numeric dates in lower-cased text.

    ``hts`` holds digit strings of the explicit non-Chapter-99 numbers; ``chapter99``
    the 9903.xx.xx lines written with dots. "Chapter 99" and a bare "heading 9903" are
    neither: the first is no product, the second no line.
    """

    def __init__(self, lower: str) -> None:
        self.text = lower
        self.hts: set[str] = set()
        self.chapter99: set[str] = set()
        self.rates: set[tuple[float, str]] = set()
        self.dates: list[tuple[int | None, int, int | None]] = []
        for token in _TOKEN.finditer(lower):
            before = lower[token.start() - 1] if token.start() else " "
            if before.isalnum() or before in "_$":
                continue
            after = lower[token.end() : token.end() + 1]
            if not (after.isalnum() or after == "_"):
                self._classify(token, before=before)
        for word in _HTS_WORDS:
            self._keyword_hts(word)

    def _classify(self, token: re.Match[str], *, before: str) -> None:
        value, start, end = token[0], token.start(), token.end()
        if value.isdigit():  # no separator: of the shapes below, only a rate's number
            if len(value) <= 3 and before not in ".,":
                self._rate(value, start, end)
        elif iso := _ISO_DATE.fullmatch(value):
            self.dates.append((int(iso[1]), int(iso[2]), int(iso[3])))
        elif us := _US_DATE.fullmatch(value):
            self.dates.append((int(us[3]), int(us[1]), int(us[2])))
        elif _DOTTED.fullmatch(value) and before not in ".," and self.text[end : end + 1] != "%":
            self._explicit(value)
        elif span := _SPAN.fullmatch(value):
            self._explicit(span[1])
            last = span[2]
            self._explicit(span[1][: -len(last)] + last if last.startswith(".") else last)
        elif span := _RANGE.fullmatch(value):
            if _PCT_AFTER.match(self.text, end):
                self._add_rates(span[1], span[2])
        elif _RATE_NUMBER.fullmatch(value) and before not in ".,":
            self._rate(value, start, end)

    def _explicit(self, dotted: str) -> None:
        if _CHAPTER99.fullmatch(dotted):
            self.chapter99.add(dotted)
        elif not dotted.startswith("9903"):
            self.hts.add(dotted.replace(".", ""))

    def _rate(self, value: str, start: int, end: int) -> None:
        if _NOT_A_RATE_BEFORE.search(self.text, max(0, start - 10), start):
            return  # "Section 232 percent" does not happen, but "Section 25%"-like noise does
        if _PCT_AFTER.match(self.text, end):
            self._add_rates(value)
        elif (pair := _PAIR_AFTER.match(self.text, end)) and _PAIR_BEFORE.search(
            self.text, max(0, start - 10), start
        ):
            self._add_rates(value, pair[1])

    def _add_rates(self, *values: str) -> None:
        for value in values:
            shown = value.rstrip("0").rstrip(".") if "." in value else value
            self.rates.add((float(value), shown))

    def _keyword_hts(self, word: str) -> None:
        """Plain numbers after "HTS", "heading(s)", "subheading(s)", "chapter(s)"."""
        at = self.text.find(word)
        while at != -1:
            found = _KEYWORD_AT.match(self.text, at)
            start = at - 3 if word == "heading" and self.text.endswith("sub", 0, at) else at
            at = self.text.find(word, at + 1)
            if found and not (start and (self.text[start - 1].isalnum())):
                self._listed_hts(found)

    def _listed_hts(self, found: re.Match[str]) -> None:
        numbers = [n.replace(".", "") for n in re.findall(_LIST_NUMBER, found[2])]
        if not found[1].startswith("chapter"):
            for number in numbers:
                if number.startswith("9903"):
                    if len(number) == 8:
                        self.chapter99.add(f"{number[:4]}.{number[4:6]}.{number[6:]}")
                elif len(number) in (4, 6, 8, 10):
                    self.hts.add(number)
            return
        schedule = "bankrupt" not in self.text and any(w in self.text for w in _SCHEDULE_WORDS)
        self.hts.update(
            n
            for n in numbers
            if len(n) == 2 and n != "99" and (schedule or n not in _BANKRUPTCY_CHAPTERS)
        )


def find_hts_numbers(text: str) -> list[str]:
    """The explicit HTS numbers in ``text`` other than Chapter 99 lines, as digit strings,
    sorted: "8708.29.50" -> "87082950", "heading 8708" -> "8708", "chapters 72 and 73"."""
    return sorted(Numbers(text.lower()).hts)


def find_chapter99(text: str) -> list[str]:
    """The Chapter 99 lines ("9903.01.25") named in ``text``, with dots, sorted, unique.

    A line is reported as what it is, a duty provision, never as a product heading.
    """
    return sorted(Numbers(text.lower()).chapter99)


# --------------------------------------------------------------------------- dates

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("January", "Jan"),
            ("February", "Feb"),
            ("March", "Mar"),
            ("April", "Apr"),
            ("May",),
            ("June", "Jun"),
            ("July", "Jul"),
            ("August", "Aug"),
            ("September", "Sept", "Sep"),
            ("October", "Oct"),
            ("November", "Nov"),
            ("December", "Dec"),
        ],
        start=1,
    )
    for name in names
}
# Case-sensitive (plus ALL CAPS for full names): "may" and "march" are verbs.
_MONTH = re.compile(
    "(?:"
    + "|".join(sorted({*_MONTHS, *(m.upper() for m in _MONTHS if len(m) > 3)}, key=len)[::-1])
    + r")(?!\w)\.?"
)
_DAY_AFTER = re.compile(r"\s+([0-3]?\d)(?:st|nd|rd|th)?(?![\d%])(?:,?\s+(\d{4})(?!\d))?")
_YEAR_AFTER = re.compile(r",?\s+(?:of\s+)?(\d{4})(?!\d)")
_DAY_BEFORE = re.compile(r"(?<![\d.,])([0-3]?\d)(?:st|nd|rd|th)?\s+(?:of\s+)?$")
_QUALIFIER_BEFORE = re.compile(
    r"(?<!\w)(?:in|by|from|until|till|through|since|before|after|during|starting|"
    r"beginning|effective|early|mid|late|end of|start of|middle of)[\s\-]+"
    r"(?:(?:the\s+)?(?:early|mid|late|end\s+of)[\s\-]+)?$",
    re.IGNORECASE,
)

_Mention = tuple[int | None, int, int | None]  # (year or None, month, day or None)


def _month_mentions(text: str) -> Iterator[_Mention]:
    for match in _MONTH.finditer(text):
        start, end = match.start(), match.end()
        if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
            continue
        month = _MONTHS[match[0].rstrip(".").title()]
        if day := _DAY_AFTER.match(text, end):
            yield (int(day[2]) if day[2] else None), month, int(day[1])
        elif day := _DAY_BEFORE.search(text, max(0, start - 12), start):
            year = _YEAR_AFTER.match(text, end)
            yield (int(year[1]) if year else None), month, int(day[1])
        elif year := _YEAR_AFTER.match(text, end):
            yield int(year[1]), month, None
        elif _QUALIFIER_BEFORE.search(text, max(0, start - 30), start):
            yield None, month, None


def dates_in(text: str, numeric: list[_Mention], *, reference: date | None) -> tuple[str, ...]:
    mentions = [*numeric, *_month_mentions(text)]
    anchor = reference
    if anchor is None:
        anchor = next((_first_day(m) for m in mentions if m[0] and _first_day(m)), None)
    found: set[str] = set()
    for year, month, day in mentions:
        if year is None:
            if anchor is None:
                continue  # no way to know the year: better nothing than a guess
            year = _infer_year(month, anchor)
        if day is None:
            found.add(f"{year:04d}-{month:02d}")
            continue
        try:
            found.add(date(year, month, day).isoformat())
        except ValueError:
            continue  # "February 30", "13/45/2025": not a date
    return tuple(sorted(found))


def _first_day(mention: _Mention) -> date | None:
    year, month, day = mention
    try:
        return date(year or 1, month, day or 1)
    except ValueError:
        return None


def _infer_year(month: int, anchor: date) -> int:
    """The year putting ``month`` from five months before to six after the anchor's."""
    delta = month - anchor.month
    if delta < -5:
        return anchor.year + 1
    if delta > 6:
        return anchor.year - 1
    return anchor.year
