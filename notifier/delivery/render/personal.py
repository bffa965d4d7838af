"""One event's email rendered once, then personalised per recipient.

An alert's subject and bodies depend on the event; only a few values depend on the
subscriber (the ``subscriber_id`` named in the footer and the ``unsubscribe_url``). So
the templates render once per event with *slots* in place of those values, and each
recipient gets the rendered pieces joined with their own values: a string join instead
of three Jinja renders (~2 ms an email, the largest cost of a fan-out).

Two template features would make a plain substitution wrong, and both are handled:

- ``wrap`` and ``field`` fill text to a width, so a value's length moves line breaks. In
  text templates, a call whose input holds a slot is *deferred*: it renders as a marker,
  and runs per recipient on its input with the real values in place.
- ``{% if unsubscribe_url %}`` takes another branch without a URL: the template is
  rendered separately for recipients with and without one.

The rest (a user's override doing something else with the values) is caught by a check:
the first recipient of every template is also rendered directly, and when the two
differ the template is marked unusable and every recipient is rendered directly.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import escape

#: Stand-ins for the subscriber's values while the shared parts render: private-use
#: code points, which no feed or rule text contains (``contains_slot`` is checked) and
#: which pass through HTML escaping, ``str.split`` and textwrap unchanged.
SUBSCRIBER_SLOT = "\U000f0101"
UNSUBSCRIBE_SLOT = "\U000f0102"
_DEFER_OPEN = "\U000f0103"
_DEFER_CLOSE = "\U000f0104"
_PIECES = re.compile(f"({SUBSCRIBER_SLOT}|{UNSUBSCRIBE_SLOT}|{_DEFER_OPEN}[0-9]+{_DEFER_CLOSE})")
_ANY_SLOT = re.compile(f"[{SUBSCRIBER_SLOT}-{_DEFER_CLOSE}]")

#: Set while a text template renders for a template: where deferred calls are kept.
_DEFERRED: contextvars.ContextVar[list[Deferred] | None] = contextvars.ContextVar(
    "notifier_deferred_calls", default=None
)


def contains_slot(text: str) -> bool:
    return _ANY_SLOT.search(text) is not None


@dataclass(frozen=True, slots=True)
class Deferred:
    """A width-filling call (``wrap``, ``field``) to run per recipient."""

    call: Callable[..., str]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    def run(self, values: dict[str, str]) -> str:
        args = tuple(_fill_value(a, values) for a in self.args)
        kwargs = {k: _fill_value(v, values) for k, v in self.kwargs}
        return self.call(*args, **kwargs)


def _fill_value(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str) and contains_slot(value):
        return _PIECES.sub(lambda m: values.get(m.group(0), m.group(0)), value)
    return value


def deferring(call: Callable[..., str]) -> Callable[..., str]:
    """``call`` as a template filter or global that defers itself when its arguments
    hold a slot and a template is being rendered (see the module docstring)."""

    def maybe_deferred(*args: Any, **kwargs: Any) -> str:
        deferred = _DEFERRED.get()
        if deferred is not None and any(
            isinstance(a, str) and contains_slot(a) for a in (*args, *kwargs.values())
        ):
            deferred.append(Deferred(call, args, tuple(kwargs.items())))
            return f"{_DEFER_OPEN}{len(deferred) - 1}{_DEFER_CLOSE}"
        return call(*args, **kwargs)

    maybe_deferred.__name__ = getattr(call, "__name__", "deferred")
    maybe_deferred.__doc__ = call.__doc__
    return maybe_deferred


class collect_deferred:
    """``with collect_deferred() as calls:`` while a text template renders."""

    def __enter__(self) -> list[Deferred]:
        self._calls: list[Deferred] = []
        self._token = _DEFERRED.set(self._calls)
        return self._calls

    def __exit__(self, *_exc: object) -> None:
        _DEFERRED.reset(self._token)


Piece = str | int  # literal text, or the index of a slot (-1 subscriber, -2 URL, n deferred)
_SUBSCRIBER = -1
_UNSUBSCRIBE = -2


def split_pieces(text: str) -> tuple[Piece, ...]:
    """Rendered text with slots -> literal strings and slot indexes."""
    pieces: list[Piece] = []
    for part in _PIECES.split(text):
        if not part:
            continue
        if part == SUBSCRIBER_SLOT:
            pieces.append(_SUBSCRIBER)
        elif part == UNSUBSCRIBE_SLOT:
            pieces.append(_UNSUBSCRIBE)
        elif part.startswith(_DEFER_OPEN):
            pieces.append(int(part[1:-1]))
        else:
            pieces.append(part)
    return tuple(pieces)


def fill(
    pieces: Sequence[Piece],
    *,
    subscriber_id: str,
    unsubscribe_url: str | None,
    deferred: Sequence[Deferred] = (),
    html: bool = False,
) -> str:
    """The pieces joined with one recipient's values (HTML-escaped in an HTML part)."""
    values = {SUBSCRIBER_SLOT: subscriber_id, UNSUBSCRIBE_SLOT: unsubscribe_url or ""}
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        if piece == _SUBSCRIBER:
            value = subscriber_id
        elif piece == _UNSUBSCRIBE:
            value = unsubscribe_url or ""
        else:
            value = deferred[piece].run(values)
        out.append(str(escape(value)) if html else value)
    return "".join(out)


def has_slots(pieces: Sequence[Piece]) -> bool:
    return any(not isinstance(p, str) for p in pieces)
