"""``kind = "federal-register"``: a Federal Register API v1 documents search.

``https://www.federalregister.gov/api/v1/documents.json?conditions[...]=…`` answers
``{"count", "description", "total_pages", "next_page_url", "results": [...]}``. The user's
query is kept as written; the notifier adds the ``fields[]`` it needs (and ``per_page``
and ``order=newest`` when the query has none) and follows ``next_page_url``: up to
:data:`MAX_PAGES` pages on a first baseline, and on later polls until the first page whose
documents are all already stored with the same hash. Documents are entries keyed by
``document_number`` with ``details["document"]``.

The API publishes a limit of 5 requests/s (federalregister-api-core issue 13): every FR
and Public Inspection source of the process takes its turn through one limiter. The API
sends no validators worth a conditional GET; the hash of page 1 says "unchanged".
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from notifier.config import FeedSection
from notifier.core.model import Entry, Event
from notifier.sources.base import Change, FetchContext, Fetched, Tagger, Validators
from notifier.sources.events import entry_events
from notifier.sources.fr_documents import DocumentsPage, parse_documents_page
from notifier.sources.http import fetch_feed

#: Pages followed on a first baseline (100 documents each: a few hundred documents).
MAX_PAGES = 10
REQUESTS_PER_S = 5.0

DOCUMENT_FIELDS = (
    "document_number",
    "type",
    "subtype",
    "title",
    "abstract",
    "action",
    "dates",
    "agencies",
    "publication_date",
    "effective_on",
    "signing_date",
    "citation",
    "executive_order_number",
    "proclamation_number",
    "correction_of",
    "corrections",
    "html_url",
    "pdf_url",
)


class RateLimiter:
    """At most ``rate_per_s`` starts per second, across every task and event loop.

    Each caller reserves the next free slot and sleeps until it: no asyncio primitive is
    held, so one limiter serves every loop of the process (tests run one per test), and
    the reservation itself is guarded by a thread lock held for microseconds.
    """

    def __init__(self, rate_per_s: float, *, clock: Callable[[], float] = time.monotonic):
        self.interval_s = 1.0 / rate_per_s
        self._clock = clock
        self._next_s = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next slot; return how long to wait for it (seconds)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_s)
            self._next_s = slot + self.interval_s
            return slot - now

    async def wait(self) -> None:
        delay_s = self.reserve()
        if delay_s > 0:
            await asyncio.sleep(delay_s)


#: Shared by every Federal Register and Public Inspection source in the process.
FEDERAL_REGISTER_LIMITER = RateLimiter(REQUESTS_PER_S)


# ------------------------------------------------------------------------------ URLs


def search_url(url: str, *, fields: Sequence[str] = DOCUMENT_FIELDS) -> str:
    """The user's search URL with the ``fields[]`` we need, ``per_page`` and ``order``.

    The user's own parameters (conditions, order, per_page, their own fields) are kept;
    ``documents.rss`` becomes ``documents.json`` (the same query, the JSON form).
    """
    parts = urlsplit(url)
    path = re.sub(r"\.rss$", ".json", parts.path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    have = {value for name, value in query if name == "fields[]"}
    query += [("fields[]", name) for name in fields if name not in have]
    if "per_page" not in names:
        query.append(("per_page", "100"))
    if "order" not in names:
        query.append(("order", "newest"))  # paging stops at the first page already seen
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


def next_page(current: str, next_url: object, *, fields: Sequence[str]) -> str | None:
    """The API's ``next_page_url`` if it stays on the same origin; None otherwise.

    A next page on another host would let an answer send our poller anywhere."""
    if not isinstance(next_url, str) or not next_url:
        return None
    here, there = urlsplit(current), urlsplit(next_url)
    if (here.scheme, here.netloc) != (there.scheme, there.netloc):
        return None
    return search_url(next_url, fields=fields) if fields else next_url


# -------------------------------------------------------------------------- fetching


async def fetch_pages(
    feed: FeedSection,
    validators: Validators,
    ctx: FetchContext,
    *,
    url: str,
    parser: Callable[..., DocumentsPage],
    fields: Sequence[str],
    options: Mapping[str, Any] | None = None,
    max_pages: int = MAX_PAGES,
) -> Fetched:
    """Page through an API search under the shared rate limit (see the module doc)."""
    entries: list[Entry] = []
    first_hash: str | None = None
    warning: str | None = None
    page_url: str | None = url
    for page_no in range(1, max_pages + 1):
        assert page_url is not None
        await FEDERAL_REGISTER_LIMITER.wait()
        fetched = await fetch_feed(
            ctx.session,
            page_url,
            etag=None,
            last_modified=None,
            timeout_s=feed.timeout.total_seconds(),
            max_bytes=feed.max_bytes,
        )
        assert fetched.body is not None  # no validators were sent: never a 304
        if page_no == 1:
            first_hash = fetched.body_hash
            if validators.body_hash is not None and first_hash == validators.body_hash:
                return Fetched(unchanged=True, body_hash=first_hash)
        page: DocumentsPage = await ctx.parse(parser, fetched.body, **(options or {}))
        entries.extend(page.entries)
        following = next_page(page_url, page.next_page_url, fields=fields)
        if following is None or not page.entries:
            break
        seen = await ctx.seen([entry.key for entry in page.entries])
        if seen and all(seen.get(e.key) == e.content_hash for e in page.entries):
            break  # an older page than anything new: the rest is known
        page_url = following
    else:
        warning = f"stopped after {max_pages} pages; older documents were not read"
    return Fetched(unchanged=False, body_hash=first_hash, entries=tuple(entries), warning=warning)


class FederalRegisterKind:
    """A Federal Register API v1 documents search (``feed.entry.*`` events with
    ``data.entry.document``)."""

    name: ClassVar[str] = "federal-register"
    reports_removals: ClassVar[bool] = False
    tags_entries: ClassVar[bool] = True

    async def fetch(self, feed: FeedSection, validators: Validators, ctx: FetchContext) -> Fetched:
        return await fetch_pages(
            feed,
            validators,
            ctx,
            url=search_url(str(feed.url)),
            parser=parse_documents_page,
            fields=DOCUMENT_FIELDS,
        )

    async def complete(
        self, feed: FeedSection, entries: Sequence[Entry], ctx: FetchContext
    ) -> tuple[list[Entry], set[str]]:
        return list(entries), set()

    def events(
        self, feed: FeedSection, changes: Sequence[Change], *, now: datetime, tagger: Tagger
    ) -> list[Event]:
        return entry_events(feed, changes, now=now, tagger=tagger)
