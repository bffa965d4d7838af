"""Calendar files served over HTTP(S) (``[calendar] urls``): fetched with conditional GET
under the same caps as every source, validated exactly like local files (an error names
the URL, the line and the key)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import aiohttp

from notifier.config import parse_calendar
from notifier.core.model import Rule
from notifier.errors import ConfigError, FetchError
from notifier.sources.base import Validators
from notifier.sources.http import fetch_feed

#: A calendar file is small: a few hundred rules are well under a megabyte.
CALENDAR_MAX_BYTES = 4 * 2**20
CALENDAR_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class FetchedCalendar:
    """``rules`` is None when unchanged (304, or the same body as last time)."""

    rules: tuple[Rule, ...] | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    reviewed: date | None = None


async def fetch_calendar(
    session: aiohttp.ClientSession, url: str, validators: Validators
) -> FetchedCalendar:
    """GET a calendar URL conditionally and validate it; a FetchError says why not (an
    invalid file is a failed poll: the URL keeps its last good rules)."""
    fetched = await fetch_feed(
        session,
        url,
        etag=validators.etag,
        last_modified=validators.last_modified,
        timeout_s=CALENDAR_TIMEOUT_S,
        max_bytes=CALENDAR_MAX_BYTES,
    )
    if fetched.status == 304 or fetched.body_hash == validators.body_hash:
        return FetchedCalendar(
            rules=None,
            etag=fetched.etag or validators.etag,
            last_modified=fetched.last_modified or validators.last_modified,
            body_hash=validators.body_hash if fetched.status == 304 else fetched.body_hash,
        )
    assert fetched.body is not None
    try:
        text = fetched.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FetchError(f"calendar is not UTF-8 text: {exc}") from None
    try:
        rules, reviewed = parse_calendar(text, source=url)
    except ConfigError as exc:
        raise FetchError(f"invalid calendar: {exc}") from None
    return FetchedCalendar(
        rules=tuple(rules),
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        body_hash=fetched.body_hash,
        reviewed=reviewed,
    )
