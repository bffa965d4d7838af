"""Tag a feed entry with what it mentions: origins, HTS headings, rates and dates.

The word lists live in a gazetteer (``config/gazetteer.toml`` plus user files, format
documented at the top of that file), never in code. They are compiled once, per kind,
into a prefix-tree regex, so tagging costs a handful of regex scans per entry (well under
a millisecond for a 500-character paragraph) however long the lists grow.

Rules, and why:

- **origins**: ISO 3166 alpha-2 codes (``EU`` for the Union), sorted, unique. Country
  forms match case-sensitively (plus an ALL-CAPS variant), because case is what tells
  "Turkey" from the bird, "China" from porcelain and "US" from "us". The longest form
  starting at a position wins ("North Korea" over "Korea", "Latin American" -- ignored --
  over "American"). Tags are literal: "Germany" tags DE, not EU. Bare "Georgia" is not
  tagged (in US trade news it is mostly the state).
- **hts**: digit strings without dots. Product terms (any case, plurals added) give the
  headings the gazetteer lists ("steel" -> 72, 73; "auto parts" -> 8708 and not 8703).
  Product phrases may overlap ("heavy-duty truck parts" -> 8704 and 8708), but a phrase
  inside a longer one does not count ("chips" inside the ignored "potato chips").
  Explicit numbers are kept as written, dots removed: a dotted number anywhere
  ("8708.29.50" -> 87082950, "9903.01.25" -> 99030125, chapter 99 included), a plain
  number after "HTS", "heading(s)", "subheading(s)" ("heading 8708"), or a two-digit
  number after "chapter(s)" ("chapters 72 and 73"; chapters 11, 12, 13 and 15 only when
  the text names the tariff schedule and not bankruptcy). "Section 232", proclamation
  and FR numbers are never headings. A number is not widened to its heading:
  subscriber filters are prefixes, so "87082950" already matches a filter "8708".
- **rates**: every percentage written as a number with "%", "percent", "per cent" or
  "pct", normalised to "25%", "27.5%"; both ends of a range ("10-25%", "between 10 and
  25 percent"). We do not try to tell a tariff rate from a market move ("shares fell
  3%"): subscribers filter on origins and HTS, and rates are shown, not matched. Number
  words ("ten percent") and "percentage points" are not rates.
- **dates**: ISO "YYYY-MM-DD" for a day ("May 3, 2025", "3 May 2025", "Sept. 16",
  "2025-05-03", US "05/03/2025"), "YYYY-MM" for a month ("May 2025", and a month after
  "in", "by", "from", "until", "since", "early", "mid-"... : "in May"). A bare month
  name is not a date ("May" is also a verb and a surname). A missing year is inferred from
  ``reference`` (the entry's published date), else from the first date in the text that
  has a year: the year that puts the month from five months before to six months
  after the anchor's (trade news looks ahead more than back). With no anchor at all the
  mention is dropped rather than guessed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from notifier.core.model import Tags
from notifier.errors import ConfigError
from notifier.resources import shipped_path

__all__ = ["Gazetteer", "Tagger", "default_gazetteer_path", "load_gazetteer"]

_CODE = re.compile(r"^[A-Z]{2}$")
_HEADING = re.compile(r"^\d{2}(?:\d{2}){0,4}$")
_COUNTRY_KEYS = ("names", "demonyms", "places")
_PRODUCT_KEYS = ("terms", "hts")
_IGNORE_KEYS = ("names", "terms")


def default_gazetteer_path() -> Path:
    """The shipped gazetteer, from a source tree or an installed wheel."""
    return shipped_path("config") / "gazetteer.toml"


# --------------------------------------------------------------------------- gazetteer


@dataclass
class Gazetteer:
    """Merged word lists: country code -> forms, product id -> (terms, headings)."""

    countries: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    products: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    ignore: dict[str, list[str]] = field(default_factory=lambda: {"names": [], "terms": []})
    product_files: dict[str, str] = field(default_factory=dict)  # id -> file that last set it


def load_gazetteer(*paths: Path) -> Gazetteer:
    """Read and merge gazetteer files in order; a later entry extends or replaces."""
    merged = Gazetteer()
    for path in paths:
        _GazetteerFile(Path(path)).merge_into(merged)
    for pid, product in merged.products.items():
        if not product["hts"] or not product["terms"]:
            raise ConfigError(
                "a product needs both terms and hts after merging",
                file=merged.product_files[pid],
                key=f"product.{pid}",
            )
    return merged


class _GazetteerFile:
    """One file being validated; knows its text so errors can name a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read gazetteer: {exc.strerror or exc}", file=str(path)
            ) from exc
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"line (\d+)", str(exc))
            raise ConfigError(
                f"not valid TOML: {exc}", file=str(path), line=int(found[1]) if found else None
            ) from exc

    def fail(self, message: str, key: str) -> ConfigError:
        return ConfigError(message, file=str(self.path), key=key, line=self._line_of(key))

    def _line_of(self, key: str) -> int | None:
        """Best effort: the line defining the key path's deepest part that can be found.

        tomllib reports lines for syntax errors only, so a schema error is traced back
        by walking the path: each part is looked for, as a table header component or as
        a key, from the line where the previous part was found.
        """
        lines = self.text.splitlines()
        found: int | None = None
        for part in re.sub(r"\[\d+\]", "", key).split("."):
            name = re.escape(part)
            pattern = re.compile(
                rf"^\s*\[+[^\]]*(?<![\w-]){name}(?![\w-])[^\]]*\]+"
                rf"|(?:^|[{{,])\s*[\"']?{name}[\"']?\s*="
            )
            start = found or 0
            match = next((n for n in range(start, len(lines)) if pattern.search(lines[n])), None)
            if match is None:
                break
            found = match
        return None if found is None else found + 1

    def merge_into(self, merged: Gazetteer) -> None:
        unknown = set(self.data) - {"country", "product", "ignore"}
        if unknown:
            key = sorted(unknown)[0]
            raise self.fail("unknown section; expected country, product or ignore", key)
        for code, entry in self._table("country").items():
            if not _CODE.match(code):
                raise self.fail(
                    "expected a two-letter upper-case code like JP or EU", f"country.{code}"
                )
            lists = self._entry(f"country.{code}", entry, _COUNTRY_KEYS)
            _merge_entry(merged.countries, code, lists, replace=entry.get("replace") is True)
        for pid, entry in self._table("product").items():
            lists = self._entry(f"product.{pid}", entry, _PRODUCT_KEYS)
            for index, heading in enumerate(lists["hts"]):
                if not _HEADING.match(heading):
                    raise self.fail(
                        'expected an HTS heading of 2, 4, 6, 8 or 10 digits like "8708"',
                        f"product.{pid}.hts[{index}]",
                    )
            _merge_entry(merged.products, pid, lists, replace=entry.get("replace") is True)
            merged.product_files[pid] = str(self.path)
        if "ignore" in self.data:
            lists = self._entry("ignore", self.data["ignore"], _IGNORE_KEYS, allow_replace=False)
            for name in _IGNORE_KEYS:
                merged.ignore[name].extend(lists[name])

    def _table(self, name: str) -> Mapping[str, Any]:
        table = self.data.get(name, {})
        if not isinstance(table, dict):
            raise self.fail(f"expected a table [{name}]", name)
        return table

    def _entry(
        self, key: str, entry: Any, allowed: tuple[str, ...], *, allow_replace: bool = True
    ) -> dict[str, list[str]]:
        if not isinstance(entry, dict):
            raise self.fail(f"expected a table with {', '.join(allowed)}", key)
        extra = set(entry) - set(allowed) - ({"replace"} if allow_replace else set())
        if extra:
            raise self.fail(
                f"unknown key; expected one of {', '.join(allowed)}", f"{key}.{sorted(extra)[0]}"
            )
        if "replace" in entry and not isinstance(entry["replace"], bool):
            raise self.fail("expected true or false", f"{key}.replace")
        lists: dict[str, list[str]] = {}
        for name in allowed:
            value = entry.get(name, [])
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise self.fail(
                    'expected a list of non-empty strings like ["steel"]', f"{key}.{name}"
                )
            lists[name] = [v.strip() for v in value]
        return lists


def _merge_entry(
    into: dict[str, dict[str, list[str]]], key: str, lists: dict[str, list[str]], *, replace: bool
) -> None:
    if replace or key not in into:
        into[key] = {name: list(values) for name, values in lists.items()}
        return
    for name, values in lists.items():
        into[key][name].extend(v for v in values if v not in into[key][name])


# --------------------------------------------------------------------------- compiling

_SEPARATOR = re.compile(r"[\s\-‐‑–]+")


def _normal(phrase: str) -> str:
    """The lookup key of a phrase or a match: one space between words, ' for ’."""
    return _SEPARATOR.sub(" ", phrase.strip()).replace("’", "'")


def _trie_regex(phrases: Iterable[str], *, overlapping: bool) -> re.Pattern[str]:
    """One regex matching any phrase, longest first, at word boundaries.

    A prefix tree instead of a flat alternation: Python's ``re`` tries alternatives one by
    one, so a flat list of 1,500 phrases costs 1,500 tries per position; the tree costs one
    per character. Greedy optional groups make the longest phrase win.

    Without ``overlapping`` (country names, which start with a capital) the start-of-word
    check sits after the first character, so ``re`` can skip to positions holding a
    possible first letter. With it, the phrase is captured inside a lookahead at every
    word start, so "heavy-duty truck parts" yields both "heavy-duty truck" and "truck
    parts"; the caller drops a match that lies inside an earlier one ("chips" inside the
    ignored "potato chips").
    """
    root: dict[str, Any] = {}
    for phrase in phrases:
        node = root
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = {}
    if not root:
        return re.compile("(?!)")
    if overlapping:
        return re.compile(r"(?<!\w)(?=(" + _render(root) + r")(?!\w))")
    branches = [_atom(c) + r"(?<!\w.)" + _render(child) for c, child in sorted(root.items())]
    return re.compile("(?:" + "|".join(branches) + r")(?!\w)")


def _render(node: dict[str, Any]) -> str:
    branches = [_atom(char) + _render(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    if len(branches) == 1 and "" not in node:
        return branches[0]
    group = "(?:" + "|".join(branches) + ")"
    return group + "?" if "" in node else group


def _atom(char: str) -> str:
    if char == " ":
        return r"[\s\-‐‑–]+"
    if char == "'":
        return "['’]"
    return re.escape(char)


def _country_forms(lists: Mapping[str, list[str]]) -> Iterator[str]:
    demonyms = lists["demonyms"] + [d + "s" for d in lists["demonyms"] if not d.endswith("s")]
    for form in lists["names"] + lists["places"] + demonyms:
        yield _normal(form)
        if form != form.upper():
            yield _normal(form.upper())


def _product_forms(term: str) -> Iterator[str]:
    """A term and its plural, lower-case ("battery" -> "batteries", "bus" -> "buses")."""
    term = _normal(term).lower()
    yield term
    if term.endswith(("ss", "us", "x", "ch", "sh")):
        yield term + "es"
    elif term.endswith("y") and not term.endswith(("ay", "ey", "oy", "uy")):
        yield term[:-1] + "ies"
    elif not term.endswith("s"):
        yield term + "s"


# --------------------------------------------------------------------------- tagger


class Tagger:
    """Compiled word lists; ``tag`` is pure and safe to call from any thread."""

    def __init__(self, gazetteer: Gazetteer) -> None:
        self._countries: dict[str, tuple[str, ...]] = {}
        for code, lists in gazetteer.countries.items():
            for form in _country_forms(lists):
                self._countries[form] = (*self._countries.get(form, ()), code)
        for name in gazetteer.ignore["names"]:
            for form in _country_forms({"names": [name], "demonyms": [], "places": []}):
                self._countries[form] = ()
        self._products: dict[str, tuple[str, ...]] = {}
        for lists in gazetteer.products.values():
            for term in lists["terms"]:
                for form in _product_forms(term):
                    known = self._products.get(form, ())
                    self._products[form] = tuple(sorted({*known, *lists["hts"]}))
        for term in gazetteer.ignore["terms"]:
            for form in _product_forms(term):
                self._products[form] = ()
        self._country_re = _trie_regex(self._countries, overlapping=False)
        self._product_re = _trie_regex(self._products, overlapping=True)

    @classmethod
    def from_files(cls, *paths: Path) -> Tagger:
        """The files merged in order (pass ``default_gazetteer_path()`` first to extend
        the shipped lists); no paths means the shipped gazetteer alone."""
        return cls(load_gazetteer(*(paths or (default_gazetteer_path(),))))

    def tag(self, text: str, *, reference: datetime | None = None) -> Tags:
        """What ``text`` mentions; ``reference`` (published date) anchors year-less dates."""
        origins: set[str] = set()
        for match in self._country_re.finditer(text):
            origins.update(self._countries.get(_normal(match[0]), ()))
        # Products match in any case: scan the lower-cased text once instead of asking
        # ``re`` to fold case at every position (about twice as fast).
        lower = text.lower()
        hts: set[str] = set()
        covered = 0
        for match in self._product_re.finditer(lower):
            if match.end(1) > covered:  # not inside a longer phrase already seen
                covered = match.end(1)
                hts.update(self._products.get(_normal(match[1]), ()))
        numbers = _Numbers(lower)
        hts.update(numbers.hts)
        return Tags(
            origins=tuple(sorted(origins)),
            hts=tuple(sorted(hts)),
            rates=tuple(f"{shown}%" for _, shown in sorted(numbers.rates)),
            dates=_dates(text, numbers.dates, reference=reference.date() if reference else None),
        )


# --------------------------------------------------------------------------- numbers

# Every number-like token is found by one scan and then classified from its shape and
# its neighbours; one scan is cheaper than one regex per kind (HTS, rate, date).
_TOKEN = re.compile(r"\d[\d./\-–]*\d|\d")
_DOTTED = re.compile(r"\d{4}(?:\.\d{2}){1,3}|\d{4}\.\d{2}\.\d{4}")
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


class _Numbers:
    """HTS numbers, rates and numeric dates in lower-cased text."""

    def __init__(self, lower: str) -> None:
        self.text = lower
        self.hts: set[str] = set()
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
        if iso := _ISO_DATE.fullmatch(value):
            self.dates.append((int(iso[1]), int(iso[2]), int(iso[3])))
        elif us := _US_DATE.fullmatch(value):
            self.dates.append((int(us[3]), int(us[1]), int(us[2])))
        elif _DOTTED.fullmatch(value) and before not in ".," and self.text[end : end + 1] != "%":
            self.hts.add(value.replace(".", ""))
        elif span := _RANGE.fullmatch(value):
            if _PCT_AFTER.match(self.text, end):
                self._add_rates(span[1], span[2])
        elif _RATE_NUMBER.fullmatch(value) and before not in ".,":
            self._rate(value, start, end)

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
            self.hts.update(n for n in numbers if len(n) in (4, 6, 8, 10))
            return
        schedule = "bankrupt" not in self.text and any(w in self.text for w in _SCHEDULE_WORDS)
        self.hts.update(
            n for n in numbers if len(n) == 2 and (schedule or n not in _BANKRUPTCY_CHAPTERS)
        )


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


def _dates(text: str, numeric: list[_Mention], *, reference: date | None) -> tuple[str, ...]:
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
