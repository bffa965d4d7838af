"""The tagger's word lists: reading, validating and merging gazetteer files.

Part of the tagger (``notifier.sources.tagging``). The format is documented at the top of
``config/gazetteer.toml``; every schema error names the file, the key and, where it can
be found, the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifier.errors import ConfigError
from notifier.resources import shipped_path

__all__ = [
    "ContextRules",
    "FormRules",
    "Gazetteer",
    "GazetteerFiles",
    "default_gazetteer_path",
    "load_gazetteer",
]

_CODE = re.compile(r"^[A-Z]{2}$")
_HEADING = re.compile(r"^\d{2}(?:\d{2}){0,4}$")
_COUNTRY_KEYS = ("names", "demonyms", "places")
_PRODUCT_KEYS = ("terms", "hts")
_IGNORE_KEYS = ("names", "terms")
_CONTEXT_LISTS = (
    "us_states",
    "state_words",
    "given_name_forms",
    "surname_forms",
    "person_titles",
    "common_words",
    "head_words",
    "attribute_words",
    "negating_prefixes",
)
_FORM_RULE_KEYS = ("not_before", "not_after", "not_near")
_SECTIONS = {"country", "product", "form", "ignore", "context"}


def default_gazetteer_path() -> Path:
    """The shipped gazetteer, from a source tree or an installed wheel."""
    return shipped_path("config") / "gazetteer.toml"


@dataclass
class FormRules:
    """Words around one country form that make it no country ("Wild Turkey")."""

    not_before: list[str] = field(default_factory=list)
    not_after: list[str] = field(default_factory=list)
    not_near: list[str] = field(default_factory=list)


@dataclass
class ContextRules:
    """The ``[context]`` section: cues that a country form names no country."""

    lists: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _CONTEXT_LISTS})
    metal_words: dict[str, list[str]] = field(default_factory=dict)
    forms: dict[str, FormRules] = field(default_factory=dict)


@dataclass
class Gazetteer:
    """Merged word lists: country code -> forms, product id -> (terms, headings)."""

    countries: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    products: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    ignore: dict[str, list[str]] = field(default_factory=lambda: {"names": [], "terms": []})
    product_files: dict[str, str] = field(default_factory=dict)  # id -> file that last set it
    place_named: set[str] = field(default_factory=set)  # product ids named after a place
    # metal-form id -> {"terms": [...], metal id -> headings}: "foil" near "aluminum" -> 7607
    forms: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    context: ContextRules = field(default_factory=ContextRules)


@dataclass(frozen=True)
class GazetteerFiles:
    """The files a gazetteer was read from, in merge order, with their mtimes then: what
    another process needs to read the same lists (and to tell that a file changed)."""

    paths: tuple[Path, ...]
    stamps: tuple[int, ...]

    @classmethod
    def now(cls, paths: tuple[Path, ...]) -> GazetteerFiles:
        return cls(paths, tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in paths))


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
    for fid, form in merged.forms.items():
        unknown = set(form) - {"terms"} - set(merged.context.metal_words)
        if unknown:
            raise ConfigError(
                "a metal form names a metal missing from context.metal_words",
                file=str(paths[-1]) if paths else None,
                key=f"form.{fid}.{sorted(unknown)[0]}",
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
        unknown = set(self.data) - _SECTIONS
        if unknown:
            key = sorted(unknown)[0]
            raise self.fail(
                "unknown section; expected country, product, form, ignore or context", key
            )
        for code, entry in self._table("country").items():
            if not _CODE.match(code):
                raise self.fail(
                    "expected a two-letter upper-case code like JP or EU", f"country.{code}"
                )
            lists = self._entry(f"country.{code}", entry, _COUNTRY_KEYS)
            _merge_entry(merged.countries, code, lists, replace=entry.get("replace") is True)
        self._merge_products(merged)
        for fid, entry in self._table("form").items():
            if not isinstance(entry, dict):
                raise self.fail("expected a table with terms and headings per metal", f"form.{fid}")
            metals = tuple(k for k in entry if k != "terms")
            lists = self._entry(f"form.{fid}", entry, ("terms", *metals), allow_replace=False)
            for metal in metals:
                self._check_headings(f"form.{fid}.{metal}", lists[metal])
            _merge_entry(merged.forms, fid, lists, replace=False)
        if "ignore" in self.data:
            lists = self._entry("ignore", self.data["ignore"], _IGNORE_KEYS, allow_replace=False)
            for name in _IGNORE_KEYS:
                merged.ignore[name].extend(lists[name])
        if "context" in self.data:
            self._merge_context(merged.context)

    def _merge_products(self, merged: Gazetteer) -> None:
        for pid, entry in self._table("product").items():
            lists = self._entry(f"product.{pid}", entry, _PRODUCT_KEYS, flags=("place_named",))
            self._check_headings(f"product.{pid}.hts", lists["hts"])
            _merge_entry(merged.products, pid, lists, replace=entry.get("replace") is True)
            merged.product_files[pid] = str(self.path)
            if entry.get("place_named") is True:
                merged.place_named.add(pid)

    def _check_headings(self, key: str, headings: list[str]) -> None:
        for index, heading in enumerate(headings):
            if not _HEADING.match(heading):
                raise self.fail(
                    'expected an HTS heading of 2, 4, 6, 8 or 10 digits like "8708"',
                    f"{key}[{index}]",
                )

    def _merge_context(self, into: ContextRules) -> None:
        context = self._table("context")
        allowed = (*_CONTEXT_LISTS, "metal_words", "form")
        extra = set(context) - set(allowed)
        if extra:
            raise self.fail(
                f"unknown key; expected one of {', '.join(allowed)}",
                f"context.{sorted(extra)[0]}",
            )
        plain = {k: v for k, v in context.items() if k in _CONTEXT_LISTS}
        lists = self._entry("context", plain, _CONTEXT_LISTS, allow_replace=False)
        for name in _CONTEXT_LISTS:
            into.lists[name].extend(lists[name])
        metals = context.get("metal_words", {})
        if not isinstance(metals, dict):
            raise self.fail("expected a table of metal -> words", "context.metal_words")
        words = self._entry("context.metal_words", metals, tuple(metals), allow_replace=False)
        for metal, values in words.items():
            into.metal_words.setdefault(metal, []).extend(values)
        forms = context.get("form", {})
        if not isinstance(forms, dict):
            raise self.fail("expected a table of country form -> rules", "context.form")
        for form, entry in forms.items():
            rules = self._entry(f"context.form.{form}", entry, _FORM_RULE_KEYS, allow_replace=False)
            known = into.forms.setdefault(form, FormRules())
            for name in _FORM_RULE_KEYS:
                getattr(known, name).extend(rules[name])

    def _table(self, name: str) -> Mapping[str, Any]:
        table = self.data.get(name, {})
        if not isinstance(table, dict):
            raise self.fail(f"expected a table [{name}]", name)
        return table

    def _entry(
        self,
        key: str,
        entry: Any,
        allowed: tuple[str, ...],
        *,
        allow_replace: bool = True,
        flags: tuple[str, ...] = (),
    ) -> dict[str, list[str]]:
        if not isinstance(entry, dict):
            raise self.fail(f"expected a table with {', '.join(allowed)}", key)
        booleans = (("replace",) if allow_replace else ()) + flags
        extra = set(entry) - set(allowed) - set(booleans)
        if extra:
            raise self.fail(
                f"unknown key; expected one of {', '.join(allowed)}", f"{key}.{sorted(extra)[0]}"
            )
        for flag in booleans:
            if flag in entry and not isinstance(entry[flag], bool):
                raise self.fail("expected true or false", f"{key}.{flag}")
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
        known = into[key].setdefault(name, [])
        known.extend(v for v in values if v not in known)
