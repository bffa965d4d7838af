"""``feed.entry.*`` events, shared by every kind whose items are entries (rss, the Federal
Register, Public Inspection, CSMS). Pure: the clock reading is a parameter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from notifier.config import FeedSection
from notifier.core.entries import entry_changes
from notifier.core.model import Entry, Event, isoformat_z, stable_id
from notifier.sources.base import Change, Tagger


def entry_event(
    feed: FeedSection,
    entry: Entry,
    *,
    kind: str,
    tagger: Tagger,
    now: datetime,
    changes: list[dict[str, Any]],
) -> Event:
    """A ``feed.entry.new|updated`` event; its id is feed + entry key + content hash."""
    text, reference = tagged_text(entry, now=now)
    tags = with_text_effective_date(tagger.tag(text, reference=reference), entry)
    return Event(
        id="evt_" + stable_id(feed.id, entry.key, entry.content_hash),
        type=f"feed.entry.{kind}",
        timestamp=now,
        data={
            "feed": feed.id,
            "feed_title": feed.title,
            "entry": entry.to_dict(),
            "tags": tags.to_dict(),
            "changes": changes,
            "detected_at": isoformat_z(now),
        },
        origins=tuple(tags.origins),
        hts=tuple(tags.hts),
        text=text,
    )


def tagged_text(entry: Entry, *, now: datetime) -> tuple[str, datetime]:
    """What an entry's event tags: its title and summary, and the date that anchors
    year-less dates in them (its published date, else now)."""
    reference = datetime.fromisoformat(entry.published) if entry.published else now
    return f"{entry.title}\n{entry.summary}", reference


def tagged_texts(changes: Sequence[Change], *, now: datetime) -> list[tuple[str, datetime]]:
    """What :func:`entry_events` of these changes tags, in order."""
    return [tagged_text(c.entry, now=now) for c in changes if c.kind != "removed"]


class Pretagged:
    """A tagger answering from tags computed beforehand (by a parse worker,
    ``tagging.remote``) and asking ``tagger`` about any other text."""

    def __init__(self, tagger: Tagger, tags: Mapping[tuple[str, datetime | None], Any]) -> None:
        self._tagger = tagger
        self._tags = tags

    def tag(self, text: str, *, reference: datetime | None = None) -> Any:
        found = self._tags.get((text, reference))
        return found if found is not None else self._tagger.tag(text, reference=reference)


def with_text_effective_date(tags: Any, entry: Entry) -> Any:
    """The tags, with a document's effective date read from its text added to ``dates``.

    A proclamation's empty ``effective_on`` is taken from its ``dates`` or abstract text
    (``fr_documents.effective_date_in_text``); ``dates`` is not part of the tagged text,
    so without this a date said only there would be missing from ``tags.dates``.
    """
    document = entry.details.get("document")
    if not isinstance(document, Mapping) or document.get("effective_on_source") != "text":
        return tags
    effective_on = document.get("effective_on")
    if not isinstance(effective_on, str) or effective_on in tags.dates:
        return tags
    return replace(tags, dates=tuple(sorted((*tags.dates, effective_on))))


def entry_events(
    feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
) -> list[Event]:
    """New and updated entries as events; entries that left the feed say nothing."""
    return [
        entry_event(
            feed,
            change.entry,
            kind=change.kind,
            tagger=tagger,
            now=now,
            changes=entry_changes(change.previous, change.entry)
            if change.kind == "updated"
            else [],
        )
        for change in changes
        if change.kind != "removed"
    ]
