"""Tag a feed entry with what it mentions: origins, HTS headings, rates and dates.

The word lists and the context rules live in a gazetteer (``config/gazetteer.toml`` plus
user files, format documented at the top of that file), never in code. They are compiled
once, per kind, into a prefix-tree regex, so tagging costs a handful of regex scans per
entry (well under a millisecond for a 500-character paragraph) however long the lists
grow. The parts: ``gazetteer`` (reading files), ``patterns`` (compiling phrases into
regexes), ``context`` (when a country's name names no country), ``numbers`` (numbers,
rates, dates).

Rules, and why:

- **origins**: ISO 3166 alpha-2 codes (``EU`` for the Union), sorted, unique. Country
  forms match case-sensitively (plus an ALL-CAPS variant), because in running text case
  is what tells "Turkey" from the bird and "US" from "us". The longest form starting at a
  position wins ("North Korea" over "Korea", "Latin American" -- ignored -- over
  "American"; "French fries", a good named after a place, over "French"). Tags are
  literal: "Germany" tags DE, not EU. Bare "Georgia" is not tagged (in US trade news it
  is mostly the state); "Republic of Georgia" and "Tbilisi" are. Headlines are in title
  case, so the words around a mention decide the rest (``context``): a person
  ("Chad Bown", "Michael Jordan"), a US town ("Jordan, Minnesota"), a state ("Washington
  State"), a common noun ("Wild Turkey", "Grandma's China") is no country.
- **hts**: digit strings without dots. Product terms (any case, plurals added) give the
  headings the gazetteer lists ("steel" -> 72, 73; "auto parts" -> 8708 and not 8703;
  "steel wire" -> 7217 and not 72, 73). Product phrases may overlap ("heavy-duty truck
  parts" -> 8704 and 8708), but a phrase inside a longer one does not count ("chips"
  inside the ignored "potato chips", "steel" inside the ignored "nerves of steel"). A
  bare metal form ("foil", "wire", "tube") takes the heading of the metal named in the
  same clause, else in the text ("aluminum derivatives such as foil" -> 7607), and
  nothing without one ("down to the wire"). Explicit numbers are kept as written, dots
  removed: a dotted number anywhere ("8708.29.50" -> 87082950, "8708.29.5060"), both ends
  of a span ("8806.21-8806.24"), a plain number after "HTS", "heading(s)",
  "subheading(s)" ("heading 8708"), or a two-digit number after "chapter(s)" ("chapters
  72 and 73"; chapters 11, 12, 13 and 15 only when the text names the tariff schedule
  and not bankruptcy). "Section 232", proclamation and FR numbers are never headings. A
  number is not widened to its heading: subscriber filters are prefixes, so "87082950"
  already matches a filter "8708".
- **chapter99**: Chapter 99 lines ("9903.01.25") are duty provisions, not goods: they are
  reported apart, with their dots, sorted, unique (``find_chapter99``), never in
  ``hts``; an abbreviated span "9903.01.84-.89" gives both ends; "Chapter 99" itself is
  neither. ``Tags`` carries them in ``chapter99`` when it has that field.
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

import bisect
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from notifier.core.model import Tags
from notifier.sources.tagging.compiled import compile_cached
from notifier.sources.tagging.context import Context
from notifier.sources.tagging.gazetteer import (
    Gazetteer,
    GazetteerFiles,
    default_gazetteer_path,
    load_gazetteer,
)
from notifier.sources.tagging.numbers import Numbers, dates_in, find_chapter99, find_hts_numbers
from notifier.sources.tagging.patterns import (
    country_forms,
    gap_regex,
    ignored_forms,
    normal,
    prefix_regex,
    product_forms,
    trie_pattern,
)

__all__ = [
    "Gazetteer",
    "Tagger",
    "default_gazetteer_path",
    "find_chapter99",
    "find_hts_numbers",
    "load_gazetteer",
]


# Clause ends for metal forms: not the dot of "U.S." or of a number.
_CLAUSE_END = re.compile(r"(?<![A-Z])[.;!?](?=\s)")


# --------------------------------------------------------------------------- tagger


class Tagger:
    """Compiled word lists; ``tag`` is pure and safe to call from any thread."""

    #: Where the lists were read from (``from_files``), so that another process can build
    #: the same tagger (``remote``); None when made from a :class:`Gazetteer` value.
    files: GazetteerFiles | None = None

    def __init__(self, gazetteer: Gazetteer, *, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self._countries: dict[str, tuple[str, ...]] = {}
        for code, lists in gazetteer.countries.items():
            for form in country_forms(lists):
                self._countries[form] = (*self._countries.get(form, ()), code)
        place_named = [
            term for pid in gazetteer.place_named for term in gazetteer.products[pid]["terms"]
        ]
        for name in gazetteer.ignore["names"]:
            for form in ignored_forms(name):
                self._countries[form] = ()
        for name in place_named:
            for form in ignored_forms(name, plural=True):
                self._countries[form] = ()
        self._products: dict[str, tuple[str, ...]] = {}
        for lists in gazetteer.products.values():
            self._add_terms(lists["terms"], lists["hts"])
        self._forms: dict[str, dict[str, tuple[str, ...]]] = {}
        for metal_form in gazetteer.forms.values():
            by_metal = {m: tuple(h) for m, h in metal_form.items() if m != "terms"}
            for term in metal_form["terms"]:
                for phrase in product_forms(term):
                    self._forms[phrase] = by_metal
                    self._products.setdefault(phrase, ())
        for term in gazetteer.ignore["terms"]:
            for form_ in product_forms(term):
                self._products[form_] = ()
                self._forms.pop(form_, None)
        self._metal_of = {
            word.lower(): metal
            for metal, words in gazetteer.context.metal_words.items()
            for word in words
        }
        self._compounds(gazetteer.context.lists)
        self._context = Context(gazetteer.context, known_forms=self._countries)
        self._context.add_common(w for phrase in self._products for w in phrase.split(" "))

    def _compounds(self, lists: Mapping[str, list[str]]) -> None:
        """Head words, attribute words and plural forms, for ``_modifiers``."""
        # Head words name nothing alone, but make the term before them a modifier.
        self._heads = frozenset(f for w in lists["head_words"] for f in product_forms(w))
        for form in self._heads:
            self._products.setdefault(form, ())
        self._attribute = gap_regex(lists["attribute_words"])
        self._negated = prefix_regex(lists["negating_prefixes"])
        products = self._products
        self._plurals = frozenset(
            f
            for f in products
            if (f.endswith("s") and f[:-1] in products)
            or (f.endswith("ies") and f[:-3] + "y" in products)
        )

    # Compiling the two prefix-tree regexes is most of a tagger's ~0.4 s start-up; a
    # process that never tags (an operator command, a daemon with nothing new yet) never
    # pays it, and with a ``cache_dir`` the next process loads them in ~5 ms
    # (``compiled``). Two threads racing here compile twice and keep one: harmless.
    @functools.cached_property
    def _country_re(self) -> re.Pattern[str]:
        return compile_cached(trie_pattern(self._countries, overlapping=False), self.cache_dir)

    @functools.cached_property
    def _product_re(self) -> re.Pattern[str]:
        return compile_cached(trie_pattern(self._products, overlapping=True), self.cache_dir)

    def compile(self) -> None:
        """Compile the word lists now (``check`` does, to fail early on a bad list)."""
        _ = self._country_re, self._product_re

    def _add_terms(self, terms: Iterable[str], headings: Iterable[str]) -> None:
        for term in terms:
            for form in product_forms(term):
                known = self._products.get(form, ())
                self._products[form] = tuple(sorted({*known, *headings}))

    @property
    def product_terms(self) -> int:
        """How many product terms (singular forms, metal forms included) are compiled."""
        return sum(1 for form in self._products if self._products[form] or form in self._forms)

    @classmethod
    def from_files(cls, *paths: Path, cache_dir: Path | None = None) -> Tagger:
        """The files merged in order (pass ``default_gazetteer_path()`` first to extend
        the shipped lists); no paths means the shipped gazetteer alone. ``cache_dir`` keeps
        the compiled word lists for the next process (``<state folder>/cache/tagger``)."""
        files = GazetteerFiles.now(paths or (default_gazetteer_path(),))
        tagger = cls(load_gazetteer(*files.paths), cache_dir=cache_dir)
        tagger.files = files
        return tagger

    def tag(self, text: str, *, reference: datetime | None = None) -> Tags:
        """What ``text`` mentions; ``reference`` (published date) anchors year-less dates."""
        numbers = Numbers(text.lower())
        hts = self._product_headings(text)
        hts.update(numbers.hts)
        return Tags(
            origins=self.origins(text),
            hts=tuple(sorted(hts)),
            rates=tuple(f"{shown}%" for _, shown in sorted(numbers.rates)),
            dates=dates_in(text, numbers.dates, reference=reference.date() if reference else None),
            chapter99=tuple(sorted(numbers.chapter99)),
        )

    def origins(self, text: str) -> tuple[str, ...]:
        """The country codes ``text`` names, sorted, unique."""
        origins: set[str] = set()
        for match in self._country_re.finditer(text):
            form = normal(match[0])
            codes = self._countries.get(form, ())
            if codes and not self._context.rejects(text, match.start(), match.end(), form):
                origins.update(codes)
        return tuple(sorted(origins))

    def _scan(self, lower: str) -> tuple[list[tuple[int, int, str]], dict[int, tuple[int, str]]]:
        """The product matches not inside a longer one, as (start, end, phrase), and the
        metal words seen, as start -> (end, metal)."""
        covered = 0
        metals: dict[int, tuple[int, str]] = {}
        found: list[tuple[int, int, str]] = []
        for match in self._product_re.finditer(lower):
            phrase = normal(match[1])
            if self._metal_of and any(w in self._metal_of for w in phrase.split(" ")):
                for word in _WORD.finditer(match[1]):
                    metal = self._metal_of.get(word[0])
                    if metal:
                        at = match.start(1) + word.start()
                        metals[at] = (at + len(word[0]), metal)
            if match.end(1) <= covered:
                continue  # inside a longer phrase already seen
            covered = match.end(1)
            if self._negated.search(lower, max(0, match.start(1) - 8), match.start(1)):
                # "non-automotive" names no good; "non-alloy steel" is still steel
                phrase = phrase.partition(" ")[2]
                if phrase not in self._products:
                    continue
            found.append((match.start(1), match.end(1), phrase))
        return found, metals

    def _product_headings(self, text: str) -> set[str]:
        # Products match in any case: scan the lower-cased text once instead of asking
        # ``re`` to fold case at every position (about twice as fast).
        lower = text.lower()
        found, metals = self._scan(lower)
        if not found:
            return set()
        modifiers = self._modifiers(lower, found)
        hts: set[str] = set()
        forms = [
            (start, self._forms[phrase])
            for index, (start, _, phrase) in enumerate(found)
            if phrase in self._forms and index not in modifiers
        ]
        for start, _, phrase in found:
            # the form of a compound is shared by the metals before it: "aluminum and
            # copper sheet" is aluminum sheet too
            metal, _, rest = phrase.partition(" ")
            if (
                rest in self._forms
                and metal in self._metal_of
                and _COORDINATED.search(lower, max(0, start - 6), start)
                and start in metals
            ):
                forms.append((metals[start][0] + 1, self._forms[rest]))
        if forms:
            starts = {start: index for index, (start, _, _) in enumerate(found)}
            governing = sorted((at, end, metal) for at, (end, metal) in metals.items())
            for heading, modifier_at in _form_headings(lower, forms, governing):
                if heading:
                    hts.add(heading)
                index = starts.get(modifier_at, -1)
                if index >= 0 and found[index][2] in self._metal_of:
                    modifiers.add(index)  # a bare metal that only qualifies a form
        for index, (_, _, phrase) in enumerate(found):
            if index not in modifiers and phrase not in self._forms:
                hts.update(self._products.get(phrase, ()))
        return hts

    def _modifiers(self, lower: str, found: list[tuple[int, int, str]]) -> set[int]:
        """The matches that add no heading of their own: a singular product term right
        before another product term or a head word is the modifier of a compound
        ("bicycle helmets", "truck seats"); a term after an attribute word is a feature
        of the term before ("motorcycles with engines")."""
        modifiers: set[int] = set()
        for index in range(len(found) - 1):
            _, end, phrase = found[index]
            after, _, following = found[index + 1]
            if after < end:
                continue  # overlapping terms both count ("heavy-duty truck parts")
            named = self._products.get(following) or following in self._forms
            if not named and following not in self._heads:
                continue  # an ignored phrase ("automakers chip in")
            if phrase in self._heads:
                continue
            if _JOINER.fullmatch(lower, end, after):
                if phrase not in self._plurals and (
                    self._products.get(phrase) or phrase in self._forms
                ):
                    modifiers.add(index)
            elif self._attribute.fullmatch(lower, end, after):
                modifiers.add(index + 1)
        return modifiers


_WORD = re.compile(r"[\w'’]+")
_JOINER = re.compile(r"[\s\-‐‑–]+")
# Between coordinated metals: "steel, aluminum and copper", "steel and/or aluminum".
_COORDINATED = re.compile(r"(?:,|(?<!\w)and|(?<!\w)or|/|&)\s*\Z")
_COORDINATION = re.compile(r"\s*(?:,|/|&|and|or|and/or)?\s*(?:(?<=\s)(?:and|or)\s+)?")


def _form_headings(
    lower: str,
    forms: list[tuple[int, dict[str, tuple[str, ...]]]],
    metals: list[tuple[int, int, str]],
) -> Iterator[tuple[str, int]]:
    """The headings of bare metal forms, each with the start of a metal word that is only
    its modifier (-1 when none).

    A form takes the metals that govern it: the metal right before it and those
    coordinated with that one ("steel, aluminum and copper pipes"), else the nearest
    metal of its clause before it (or after it) with its coordinated metals, else every
    metal of the text.
    """
    if not metals:
        return
    ends = [m.start() for m in _CLAUSE_END.finditer(lower)]
    starts = [at for at, _, _ in metals]
    for position, by_metal in forms:
        cut = bisect.bisect_left(ends, position)
        start = ends[cut - 1] if cut else -1
        end = ends[cut] if cut < len(ends) else len(lower)
        nearest = bisect.bisect_right(starts, position)
        if nearest and starts[nearest - 1] > start and metals[nearest - 1][1] <= position:
            chain = _chain(lower, metals, nearest - 1, step=-1)
            adjacent = _JOINER.fullmatch(lower, metals[nearest - 1][1], position) is not None
        elif nearest < len(starts) and starts[nearest] < end:
            chain, adjacent = _chain(lower, metals, nearest, step=1), False
        else:
            chain, adjacent = list(range(len(metals))), False
        for index in chain:
            at, _, metal = metals[index]
            for heading in by_metal.get(metal, ()):
                yield heading, -1
            if adjacent:
                yield "", at


def _chain(lower: str, metals: list[tuple[int, int, str]], first: int, *, step: int) -> list[int]:
    """``first`` and the metals coordinated with it, walking back (-1) or forward (+1)."""
    chain = [first]
    index = first
    while 0 <= index + step < len(metals):
        left, right = sorted((index, index + step))
        if not _COORDINATION.fullmatch(lower, metals[left][1], metals[right][0]):
            break
        index += step
        chain.append(index)
    return chain
