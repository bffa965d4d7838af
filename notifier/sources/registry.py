"""Source kinds by their config value (``[[feed]] kind = "…"``).

Adding a kind: write its module (fetch, parse, key, events), its templates if its events
are a new family, and one line here. An unknown kind is a config error (config/schema.py
lists the values ``kind`` may take).

A kind's module is imported when a source of that kind is first polled: a config of RSS
feeds never imports the Federal Register's, CBP's or the HTS schedule's (~20 ms).
"""

from __future__ import annotations

import functools
import importlib

from notifier.sources.base import SourceKind

#: kind -> (module, class) of its implementation.
KINDS: dict[str, tuple[str, str]] = {
    "rss": ("notifier.sources.rss", "RssKind"),
    "federal-register": ("notifier.sources.federal_register", "FederalRegisterKind"),
    "federal-register-inspection": ("notifier.sources.inspection", "InspectionKind"),
    "csms": ("notifier.sources.csms", "CsmsKind"),
    "hts": ("notifier.sources.hts", "HtsKind"),
}


@functools.cache
def source_kind(name: str) -> SourceKind:
    """The implementation of a kind (KeyError for an unknown one: config prevents it)."""
    module, cls = KINDS[name]
    kind: SourceKind = getattr(importlib.import_module(module), cls)()
    return kind
