"""Formatting filters that need the configured zone: times, dates and field changes.

The templates call these as Jinja2 filters (``localtime``, ``localdate``, ``change_value``,
``rate_change``, ``change_summary``); :class:`~notifier.delivery.render.Renderer` makes one
:class:`ZoneFormat` per configured zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from notifier.delivery.render.view import field_label, hts_label, origins_label, to_datetime

# The change a subject line names when several fields changed at once.
_CHANGE_PRIORITY = (
    "rate", "status", "effective", "ends", "origins", "hts", "title",
    "general", "special", "other", "units", "description", "footnotes",
)  # fmt: skip
_TIME_FIELDS = frozenset({"effective", "ends", "published", "since"})


#: Instants and dates formatted per zone that are kept: an alert names some several
#: times, and every alert of one poll has the same detection time.
_CACHED_TIMES = 4096


class ZoneFormat:
    """Formats instants, dates and field changes for one display zone."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._times: dict[str | datetime, str] = {}
        self._dates: dict[tuple[object, bool], str] = {}

    def localtime(self, value: str | datetime | None) -> str:
        """``"Sat 3 May 2025, 12:01 AM EDT"`` in the configured zone."""
        try:
            return self._times[value]  # type: ignore[index]
        except (KeyError, TypeError):  # TypeError: unhashable, formatted (or refused) below
            pass
        text = self._localtime(value)
        if isinstance(value, str | datetime):
            _remember(self._times, value, text)
        return text

    def _localtime(self, value: str | datetime | None) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str) and len(value) == 10:
            # A calendar date (a Federal Register publication date): no time to show, and
            # read as UTC midnight it would print as the evening before.
            return self.localdate(value)
        moment = to_datetime(value).astimezone(self.zone)
        hour = moment.hour % 12 or 12
        meridiem = "AM" if moment.hour < 12 else "PM"
        return (
            f"{date_words(moment, year=True)}, {hour}:{moment.minute:02d} {meridiem} "
            f"{zone_abbr(moment)}"
        )

    def localdate(self, value: str | datetime | None, year: bool = True) -> str:
        """``"Sat 3 May 2025"`` (or ``"Sat 3 May"``) in the configured zone."""
        key = (value, year)
        try:
            return self._dates[key]
        except (KeyError, TypeError):
            pass
        text = self._localdate(value, year=year)
        if isinstance(value, str | datetime):
            _remember(self._dates, key, text)
        return text

    def _localdate(self, value: str | datetime | None, *, year: bool) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str) and len(value) == 7:
            # A month ("2025-07": the tagger's "in July"): no day to show.
            month = datetime.strptime(value, "%Y-%m")
            return month.strftime("%B %Y") if year else month.strftime("%B")
        if isinstance(value, str) and len(value) == 10:
            # A calendar date ("2025-05-03", as feed tags carry): no instant to convert.
            return date_words(datetime.fromisoformat(value), year=year)
        return date_words(to_datetime(value).astimezone(self.zone), year=year)

    def change_value(self, value: Any, field_name: str) -> str:
        """One side of a field change, formatted for that field."""
        if value is None or value == "" or value == []:
            return "none"
        if field_name in _TIME_FIELDS:
            return self.localtime(value)
        if field_name == "origins":
            return origins_label(value)
        if field_name in ("hts", "applies_to"):
            return hts_label(value)
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    def rate_change(self, change: Mapping[str, Any]) -> str:
        """``"10% → 25%"`` for a ``{"field", "from", "to"}`` change."""
        name = str(change.get("field", ""))
        before = self.change_value(change.get("from"), name)
        after = self.change_value(change.get("to"), name)
        return f"{before} → {after}"

    def change_summary(self, changes: Sequence[Mapping[str, Any]], short: bool = False) -> str:
        """The most telling change in a few words: ``"rate 10% → 25% and 1 more change"``
        (``short``: ``"rate 10% → 25% (+1 more)"``, for subjects)."""
        if not changes:
            return "details updated"

        def rank(change: Mapping[str, Any]) -> int:
            name = change.get("field")
            return _CHANGE_PRIORITY.index(name) if name in _CHANGE_PRIORITY else 99

        first = min(changes, key=rank)
        name = str(first.get("field", ""))
        if name in ("title", "summary"):
            text = f"{field_label(name).lower()} changed"
        else:
            text = f"{field_label(name).lower()} {self.rate_change(first)}"
        more = len(changes) - 1
        if more and short:
            text += f" (+{more} more)"
        elif more:
            text += f" and {more} more change{'s' if more > 1 else ''}"
        return text


def _remember(cache: dict[Any, str], key: Any, text: str) -> None:
    if len(cache) >= _CACHED_TIMES:
        cache.clear()  # a bound, not a policy: one poll's instants fit many times over
    cache[key] = text


# English names, as strftime's %a and %b give them in the C locale (which a process has
# unless it calls setlocale; ours never does), without strftime's cost.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date_words(moment: datetime, *, year: bool) -> str:
    """``"Sat 3 May 2025"`` (or ``"Sat 3 May"``)."""
    text = f"{_DAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]}"
    return f"{text} {moment.year}" if year else text


def zone_abbr(moment: datetime) -> str:
    # Zones without a letter abbreviation (America/Sao_Paulo) give "-03": say "UTC-03".
    abbr = moment.tzname() or ""
    return f"UTC{abbr}" if abbr[:1] in "+-" else abbr
