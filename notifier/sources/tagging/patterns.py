"""Compiling the gazetteer's phrases into regexes: one prefix-tree pattern per kind of
term (a phrase a node: one try per character, not one per phrase), the forms a phrase is
matched in (plurals, title case, capitals), and the small patterns of context words."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_SEPARATOR = re.compile(r"[\s\-‐‑–]+")


def normal(phrase: str) -> str:
    """The lookup key of a phrase or a match: one space between words, ' for ’."""
    return _SEPARATOR.sub(" ", phrase.strip()).replace("’", "'")


def trie_regex(phrases: Iterable[str], *, overlapping: bool) -> re.Pattern[str]:
    """:func:`trie_pattern`, compiled."""
    return re.compile(trie_pattern(phrases, overlapping=overlapping))


def trie_pattern(phrases: Iterable[str], *, overlapping: bool) -> str:
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
        return "(?!)"
    if overlapping:
        return r"(?<!\w)(?=(" + _render(root) + r")(?!\w))"
    branches = [_atom(c) + r"(?<!\w.)" + _render(child) for c, child in sorted(root.items())]
    return "(?:" + "|".join(branches) + r")(?!\w)"


def _render(node: dict[str, Any]) -> str:
    parts = []
    while len(node) == 1 and "" not in node:  # one way on: no group (most nodes)
        ((char, node),) = node.items()
        parts.append(_atom(char))
    branches = [_atom(char) + _render(child) for char, child in sorted(node.items()) if char]
    if branches:
        group = "(?:" + "|".join(branches) + ")"
        parts.append(group + "?" if "" in node else group)
    return "".join(parts)


@functools.cache
def _atom(char: str) -> str:
    if char == " ":
        return r"[\s\-‐‑–]+"
    if char == "'":
        return "['’]"
    return re.escape(char)


def country_forms(lists: Mapping[str, list[str]]) -> Iterator[str]:
    demonyms = lists["demonyms"] + [d + "s" for d in lists["demonyms"] if not d.endswith("s")]
    for form in lists["names"] + lists["places"] + demonyms:
        yield normal(form)
        if form != form.upper():
            yield normal(form.upper())


def ignored_forms(phrase: str, *, plural: bool = False) -> Iterator[str]:
    """An ignored phrase as written, in title case ("French Fries") and in capitals, and
    with ``plural`` its plural too ("Belgian waffles")."""
    written = normal(phrase)
    variants = [written, plural_of(written)] if plural else [written]
    for variant in variants:
        titled = " ".join(w[:1].upper() + w[1:] for w in variant.split(" "))
        for form in {variant, titled, variant[:1].upper() + variant[1:]}:
            yield form
            yield form.upper()


def plural_of(phrase: str) -> str:
    """The plural of a phrase, keeping its case ("Brazil nut" -> "Brazil nuts")."""
    lower = phrase.lower()
    plural = next((f for f in product_forms(phrase) if f != lower), lower)
    same = next(
        (i for i, (a, b) in enumerate(zip(lower, plural, strict=False)) if a != b), len(lower)
    )
    return phrase[:same] + plural[same:]


def product_forms(term: str) -> Iterator[str]:
    """A term and its plural, lower-case ("battery" -> "batteries", "bus" -> "buses")."""
    term = normal(term).lower()
    yield term
    if term.endswith(("ss", "us", "x", "ch", "sh")):
        yield term + "es"
    elif term.endswith("y") and not term.endswith(("ay", "ey", "oy", "uy")):
        yield term[:-1] + "ies"
    elif term.endswith("fe"):
        yield term[:-2] + "ves"  # "knife" -> "knives"
    elif not term.endswith("s"):
        yield term + "s"


def gap_regex(words: Iterable[str]) -> re.Pattern[str]:
    """Whitespace, one of ``words`` (spaces inside them any whitespace), whitespace."""
    alternatives = sorted((normal(w).lower() for w in words), key=len, reverse=True)
    if not alternatives:
        return re.compile("(?!)")
    escaped = (r"\s+".join(re.escape(p) for p in a.split(" ")) for a in alternatives)
    return re.compile(r"\s+(?:" + "|".join(escaped) + r")\s+")


def prefix_regex(prefixes: Iterable[str]) -> re.Pattern[str]:
    """One of ``prefixes`` as a word, joined by a hyphen or a space, at the end."""
    alternatives = sorted((p.lower() for p in prefixes), key=len, reverse=True)
    if not alternatives:
        return re.compile("(?!)")
    escaped = "|".join(re.escape(p) for p in alternatives)
    return re.compile(r"(?<!\w)(?:" + escaped + r")[\s\-‐‑–]?\Z")
