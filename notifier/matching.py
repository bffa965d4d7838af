"""Which subscribers want an event. Pure: built once per config, queried per event.

Filters combine with AND; the values inside one filter with OR (CONTRACT.md). A rule
with ``origins = ["*"]`` (or ``hts = ["*"]``) matches any such filter. HTS filters are
prefixes and match both ways: a subscriber watching ``8708.29`` hears about a rule on
heading ``8708``, and one watching chapter ``87`` hears about ``8708``.
``keywords`` filter feed entries only (rule events carry no ``text``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from notifier.config import SubscriberSection
from notifier.model import EVENT_TYPES, Event


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    subscriber: SubscriberSection
    types: frozenset[str]
    origins: frozenset[str] | None
    hts: tuple[str, ...] | None
    keywords: tuple[str, ...] | None

    def matches(self, event: Event, *, lowered_text: str | None) -> bool:
        if event.type not in self.types:
            return False
        if (
            self.origins is not None
            and "*" not in event.origins
            and self.origins.isdisjoint(event.origins)
        ):
            return False
        if self.hts is not None and "*" not in event.hts and not any(
            code.startswith(prefix) or prefix.startswith(code)
            for code in event.hts
            for prefix in self.hts
        ):
            return False
        if self.keywords is not None and lowered_text is not None:
            return any(word in lowered_text for word in self.keywords)
        return True


def compile_filter(subscriber: SubscriberSection) -> CompiledFilter:
    patterns = subscriber.events or ["*"]
    types = frozenset(t for t in EVENT_TYPES if any(fnmatchcase(t, p) for p in patterns))
    return CompiledFilter(
        subscriber=subscriber,
        types=types,
        origins=frozenset(subscriber.origins) if subscriber.origins else None,
        hts=tuple(subscriber.hts) if subscriber.hts else None,
        keywords=tuple(k.lower() for k in subscriber.keywords) if subscriber.keywords else None,
    )


class SubscriberIndex:
    """Subscribers indexed by event type and origin so an event scans few candidates."""

    def __init__(self, subscribers: Iterable[SubscriberSection]) -> None:
        self._order: dict[str, int] = {}
        self._any_origin: dict[str, list[CompiledFilter]] = defaultdict(list)
        self._by_origin: dict[tuple[str, str], list[CompiledFilter]] = defaultdict(list)
        self._all: dict[str, list[CompiledFilter]] = defaultdict(list)
        for position, subscriber in enumerate(subscribers):
            compiled = compile_filter(subscriber)
            self._order[subscriber.id] = position
            for event_type in compiled.types:
                self._all[event_type].append(compiled)
                if compiled.origins is None:
                    self._any_origin[event_type].append(compiled)
                else:
                    for origin in compiled.origins:
                        self._by_origin[(event_type, origin)].append(compiled)

    def match(self, event: Event) -> list[SubscriberSection]:
        """The subscribers whose filters all accept the event, in config order."""
        if "*" in event.origins:
            candidates: Sequence[CompiledFilter] = self._all.get(event.type, ())
        else:
            seen: dict[str, CompiledFilter] = {
                f.subscriber.id: f for f in self._any_origin.get(event.type, ())
            }
            for origin in event.origins:
                for f in self._by_origin.get((event.type, origin), ()):
                    seen[f.subscriber.id] = f
            candidates = list(seen.values())
        lowered = event.text.lower() if event.text is not None else None
        found = [f.subscriber for f in candidates if f.matches(event, lowered_text=lowered)]
        found.sort(key=lambda s: self._order[s.id])
        return found
