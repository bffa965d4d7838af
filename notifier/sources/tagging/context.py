"""Context rules: when a country's name in a text names no country.

Part of the tagger (``notifier.sources.tagging``). Case tells "Turkey" from "turkey" in running
text, but headlines are in title case, so the words around a mention decide. The rules
are data (the ``[context]`` section of the gazetteer); this module only applies them.
A mention is not a country when:

- it is followed by ", <US state>" and that is not a list ("Jordan, Minnesota", "Peru,
  Ind."; but "Mexico, Washington and Ottawa" stays a list of governments);
- it is followed by a state word ("Washington State", "Lebanon County");
- a form that is also a given name is followed by a capitalised word that is no common
  word and no country ("Chad Bown", "Kenya Barris"; not "Chad Imposes", "Jordan Signs");
- a form that is also a surname follows a title ("Rep.") or a capitalised word that is
  no common word ("Michael Jordan", "Tom Holland"; not "Deal With Jordan");
- its own rules say so: the next word is in ``not_before`` ("Turkey Sandwiches"), the
  previous one in ``not_after`` ("Wild Turkey"), or a ``not_near`` word is within
  ``NEAR`` characters ("Turkey Prices Fall Ahead of Thanksgiving").

Each check is one anchored regex match at the mention, so the cost grows with the number
of mentions, not with the length of the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from notifier.sources.tagging.gazetteer import ContextRules

__all__ = ["NEAR", "Context"]

NEAR = 60  # characters either side searched for a ``not_near`` word
_NEXT_WORD = re.compile(r"[ \t]+([A-Za-z][\w'’.\-]*)")
_PREV_WORD = re.compile(r"(?<![\w'’.\-])([A-Za-z][\w'’.\-]*)[ \t]+\Z")
_POSSESSIVE = re.compile(r"['’]s?\Z")


def _words(values: Iterable[str]) -> frozenset[str]:
    return frozenset(_POSSESSIVE.sub("", v.rstrip(".,;:")).lower() for v in values)


def _alternation(values: Iterable[str]) -> str:
    escaped = sorted((re.escape(v) for v in values), key=len, reverse=True)
    return "(?:" + "|".join(escaped) + ")" if escaped else "(?!)"


class Context:
    """Compiled context rules; ``rejects`` says whether a mention is no country."""

    def __init__(self, rules: ContextRules, *, known_forms: Iterable[str]) -> None:
        lists = rules.lists
        self._known = frozenset(known_forms)
        self._given = frozenset(lists["given_name_forms"])
        self._surname = frozenset(lists["surname_forms"])
        self._titles = frozenset(lists["person_titles"])
        self._common = _words(lists["common_words"])
        self._state_words = _words(lists["state_words"])
        self._town = re.compile(
            r",[ \t]*"
            + _alternation(lists["us_states"])
            + r"(?![\w.])(?![ \t]*,?[ \t]*(?:and|or)\b)"
        )
        self._before = {f: _words(r.not_before) for f, r in rules.forms.items() if r.not_before}
        self._after = {f: _words(r.not_after) for f, r in rules.forms.items() if r.not_after}
        self._ruled = frozenset(rules.forms)
        self._near = {
            form: re.compile(r"(?<!\w)" + _alternation(r.not_near) + r"(?!\w)", re.IGNORECASE)
            for form, r in rules.forms.items()
            if r.not_near
        }

    def add_common(self, words: Iterable[str]) -> None:
        """More words that are no surnames (the words of product terms, say)."""
        self._common = self._common | _words(words)

    def rejects(self, text: str, start: int, end: int, form: str) -> bool:
        """Whether the mention ``text[start:end]`` (normalised: ``form``) is no country.

        The cheap checks come first and each word around the mention is read only if a
        rule needs it: most mentions have no rule of their own.
        """
        if form not in self._ruled and form.endswith("s") and form[:-1] in self._ruled:
            form = form[:-1]  # "Poles" has the rules of "Pole"
        if text.startswith(",", end) and self._town.match(text, end):
            return True
        following = _NEXT_WORD.match(text, end)
        next_word = following[1] if following else ""
        if next_word and self._bare(next_word) in self._state_words:
            return True
        if form in self._before and self._bare(next_word) in self._before[form]:
            return True
        if form in self._given and next_word and self._is_name(next_word):
            return True
        near = self._near.get(form)
        if near and near.search(text, max(0, start - NEAR), min(len(text), end + NEAR)):
            return True
        if form not in self._after and form not in self._surname:
            return False
        preceding = _PREV_WORD.search(text, max(0, start - 40), start)
        prev_word = preceding[1] if preceding else ""
        if form in self._after and self._bare(prev_word) in self._after[form]:
            return True
        return form in self._surname and (prev_word in self._titles or self._is_name(prev_word))

    @staticmethod
    def _bare(word: str) -> str:
        return _POSSESSIVE.sub("", word.rstrip(".,;:")).lower()

    def _is_name(self, word: str) -> bool:
        """A capitalised word that is no common word, no country form and not ALL CAPS."""
        word = _POSSESSIVE.sub("", word.rstrip(".,;:"))
        if len(word) < 2 or not word[0].isupper() or word.isupper() or word in self._known:
            return False
        return not any(stem in self._common for stem in _stems(word.lower()))


def _stems(word: str) -> Iterable[str]:
    """The word and the stems an English suffix may hide ("signs", "imposed", "rising")."""
    yield word
    for suffix, replacements in _SUFFIXES.items():
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            base = word[: -len(suffix)]
            for replacement in replacements:
                yield base + replacement
            if suffix in ("ed", "ing") and len(base) > 2 and base[-1] == base[-2]:
                yield base[:-1]  # "stopped" -> "stop"


_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "ies": ("y",),
    "ied": ("y",),
    "es": ("", "e"),
    "s": ("",),
    "ed": ("", "e"),
    "ing": ("", "e"),
    "ers": ("", "e"),
    "er": ("", "e"),
    "ly": ("",),
}
