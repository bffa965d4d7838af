"""Durations as the config writes them: "30s", "15m", "2h", "1d", "1w"."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Duration(timedelta):
    """A duration that remembers how the config wrote it (``"7d"`` stays ``"7d"`` in
    alerts, never ``"1w"``). Arithmetic on it gives plain timedeltas."""

    label: str

    def __new__(cls, seconds: float, label: str) -> Duration:
        made = super().__new__(cls, seconds=seconds)
        made.label = label
        return made

    def __reduce__(self) -> Any:
        return (Duration, (self.total_seconds(), self.label))


def duration_label(delta: timedelta) -> str:
    """How the config wrote a duration, else its shortest exact form."""
    return delta.label if isinstance(delta, Duration) else format_duration(delta)


def parse_duration(value: Any) -> timedelta:
    """``"30s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1w"`` (or a number of seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f'expected a duration like "30s", "15m", "2h" or "1d", got {value!r}')
        seconds = float(match.group(1)) * _UNITS_S[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    if isinstance(value, str):
        return Duration(seconds, value.strip())
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form: ``timedelta(days=7)`` -> ``"7d"``."""
    seconds = delta.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
