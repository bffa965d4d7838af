"""The seam every source kind implements, and what it hands back.

A kind is one module (``rss``, ``federal_register``, ``inspection``, ``csms``, ``hts``)
with one class implementing :class:`SourceKind`, registered by its config value in
:mod:`notifier.sources.registry`. A kind fetches (through :func:`notifier.sources.http.
fetch_feed`, which owns the deadline, the size cap and redirects), parses off the event
loop (``ctx.parse``), keys what it found as :class:`~notifier.core.model.Entry` values,
and turns the diff into events. It never touches the store: the job reads the store,
the pure ``decide_*`` functions decide, and the job writes one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

import aiohttp

from notifier.config import FeedSection
from notifier.core.entries import Change
from notifier.core.model import Entry, Event

__all__ = [
    "Change",
    "FetchContext",
    "Fetched",
    "ParseResult",
    "SourceKind",
    "Tagger",
    "Validators",
]

#: Run a pure, CPU-bound function off the event loop (the parse pool, or a thread),
#: failing with FetchError past the parse deadline.
ParseFn = Callable[..., Awaitable[Any]]
#: The content hashes already stored for some keys of this source (key -> hash).
SeenFn = Callable[[Iterable[str]], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What a parser found: entries in source order, and a warning for a source that was
    parsed despite defects.

    ``warning`` is set for a not-well-formed feed that still yielded entries (feedparser's
    ``bozo``) and when entries past ``max_entries`` were dropped: log it, do not fail.
    """

    entries: tuple[Entry, ...]
    warning: str | None = None
    title: str | None = None  # the source's own title, when it has one


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last successful poll of a source left for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None


@dataclass(frozen=True, slots=True)
class FetchContext:
    """What a kind may use while fetching: the HTTP session, the parse pool, the store's
    view of what it has seen (read-only, for "stop paging at the first page with nothing
    new"), and the clock."""

    session: aiohttp.ClientSession
    parse: ParseFn
    seen: SeenFn
    clock: Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Fetched:
    """One poll of one source.

    ``unchanged``: a 304, or a body whose hash is the last one (nothing was parsed).
    ``entries``: everything the source carries now, in source order, each keyed. ``partial``
    keys were seen in the source but could not be completed this poll (a CSMS bulletin whose
    page failed): they are neither alerted nor remembered, so the next poll tries again.
    """

    unchanged: bool
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    entries: tuple[Entry, ...] = ()
    partial: frozenset[str] = frozenset()
    warning: str | None = None
    title: str | None = None


class Tagger(Protocol):
    def tag(self, text: str, *, reference: datetime | None = None) -> Any: ...


class SourceKind(Protocol):
    """One kind of source. Implementations are small classes with no per-feed state."""

    #: The config value (``kind = "…"``).
    name: ClassVar[str]
    #: Whether a key missing from a full poll is a removal event (a schedule line is;
    #: a feed entry that scrolls off the end of a feed is not).
    reports_removals: ClassVar[bool]
    #: Whether ``events`` tags the title and summary of each new or changed entry
    #: (``entry_events``): then the job has them tagged in a parse worker first.
    tags_entries: ClassVar[bool]

    async def fetch(self, feed: FeedSection, validators: Validators, ctx: FetchContext) -> Fetched:
        """Fetch and parse the source. Raises FetchError for the source's own faults."""

    async def complete(
        self, feed: FeedSection, entries: Sequence[Entry], ctx: FetchContext
    ) -> tuple[list[Entry], set[str]]:
        """Finish the entries that are new or changed (fetch a bulletin's page, say).

        Returns the completed entries and the keys that could not be completed this poll.
        Kinds with nothing to add return ``(list(entries), set())``."""

    def events(
        self, feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
    ) -> list[Event]:
        """The events of a diff (pure)."""
