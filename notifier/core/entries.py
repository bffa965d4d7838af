"""What changed in a feed since the store's view (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from notifier.core.model import Entry


@dataclass(frozen=True, slots=True)
class Change:
    """One entry that is new, changed or gone since the store's view.

    ``previous`` is what the store kept of it: (content hash, title, summary)."""

    kind: Literal["new", "updated", "removed"]
    entry: Entry
    previous: tuple[str, str, str] | None = None


def diff_entries(
    seen: Mapping[str, str], entries: Sequence[Entry]
) -> list[tuple[Literal["new", "updated"], Entry]]:
    """What changed since the store's view: ``seen`` maps entry key -> content hash.

    An unseen key is "new"; a seen key with a different hash is "updated"; the same hash
    is nothing. Feed order is kept. When one feed repeats a key, the first entry wins
    (feeds list newest first), so a duplicate cannot flip-flop an entry every poll.
    """
    changes: list[tuple[Literal["new", "updated"], Entry]] = []
    taken: set[str] = set()
    for entry in entries:
        if entry.key in taken:
            continue
        taken.add(entry.key)
        previous = seen.get(entry.key)
        if previous is None:
            changes.append(("new", entry))
        elif previous != entry.content_hash:
            changes.append(("updated", entry))
    return changes


def entry_changes(previous: tuple[str, str, str] | None, entry: Entry) -> list[dict[str, Any]]:
    """Field-level diff of an updated entry against what the store kept of it."""
    if previous is None:
        return []
    _, title, summary = previous
    changes = []
    if title != entry.title:
        changes.append({"field": "title", "from": title, "to": entry.title})
    if summary != entry.summary:
        changes.append({"field": "summary", "from": summary, "to": entry.summary})
    return changes
