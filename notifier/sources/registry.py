"""Source kinds by their config value (``[[feed]] kind = "…"``).

Adding a kind: write its module (fetch, parse, key, events), its templates if its events
are a new family, and one line here. An unknown kind is a config error (config/schema.py
checks ``kind`` against :data:`KINDS`).
"""

from __future__ import annotations

from notifier.sources.base import SourceKind
from notifier.sources.csms import CsmsKind
from notifier.sources.federal_register import FederalRegisterKind
from notifier.sources.hts import HtsKind
from notifier.sources.inspection import InspectionKind
from notifier.sources.rss import RssKind

KINDS: dict[str, SourceKind] = {
    RssKind.name: RssKind(),
    FederalRegisterKind.name: FederalRegisterKind(),
    InspectionKind.name: InspectionKind(),
    CsmsKind.name: CsmsKind(),
    HtsKind.name: HtsKind(),
}


def source_kind(name: str) -> SourceKind:
    """The implementation of a kind (KeyError for an unknown one: config prevents it)."""
    return KINDS[name]
