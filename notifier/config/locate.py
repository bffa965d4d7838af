"""Where a config problem is: the key path, its line in the TOML text, a did-you-mean.

tomllib keeps no positions, so lines are found by reading the text the way our files are
shaped; pydantic's errors become one :class:`ConfigError` naming file, key and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from notifier.config.schema import ConfigModel
from notifier.errors import ConfigError


def line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line and not line.lstrip().startswith("#"):
            return number
    return None


def _key_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def locate_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line of a key path in a TOML text (tomllib keeps no positions).

    Understands ``[table]``, ``[[array]]`` headers and ``key = value`` lines, which is the
    shape of our files; returns the header's line when the key itself is absent.
    """
    names = [p for p in loc if isinstance(p, str)]
    if not names:
        return None
    table, index = names[0], next((p for p in loc[1:2] if isinstance(p, int)), None)
    leaf = next((p for p in reversed(loc) if isinstance(p, str) and p != table), None)
    header_line, seen, inside = None, -1, False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[] \t").split("#")[0].strip()
            is_array = stripped.startswith("[[")
            if name == table:
                seen += 1 if is_array else 0
                inside = index is None or seen == index
                if inside:
                    header_line = number
            else:
                inside = False
            continue
        if inside and leaf and re.match(rf"^{re.escape(leaf)}\s*=", stripped):
            return number
    return header_line


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema allows where ``loc`` points (its parent table)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        current = _model_of(field.annotation)
        if current is None:
            return []
    return list(current.model_fields) if hasattr(current, "model_fields") else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _suggestion(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """`` (did you mean `sender`?)`` for a misspelt key, or where to look."""
    name = loc[-1] if loc else ""
    if not isinstance(name, str):
        return ""
    known = _known_keys(model, loc)
    if len(loc) == 1:
        # A top-level key is a table, or an array of tables ([[subscriber]], [[feed]]).
        tables = {key: _header(model, key) for key in known}
        known = list(tables.values())
        close = difflib.get_close_matches(name, list(tables), n=1, cutoff=0.6)
        if close:
            return f" (did you mean {tables[close[0]]}?)"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    if known:
        return f" (expected one of: {', '.join(known)})"
    return " (check the spelling against the documentation)"


def _header(model: type[BaseModel], key: str) -> str:
    """``[key]`` for a table, ``[[key]]`` for an array of tables."""
    field = model.model_fields.get(key)
    is_list = field is not None and get_origin(field.annotation) in (list, tuple)
    return f"[[{key}]]" if is_list else f"[{key}]"


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _hide_env_values(message: str, value: Any, text: str) -> str:
    """``message`` without the values of the erroneous input that are not in the file's
    text: they were read through ``${VAR}`` and may be secrets (a Slack URL, a token)."""
    for found in sorted(set(_strings(value)), key=len, reverse=True):
        if len(found) >= 4 and found not in text:
            message = message.replace(repr(found), "a value read from ${VAR} (not shown)")
            message = message.replace(found, "***")
    return message


def raise_validation(
    exc: ValidationError, *, file: str, text: str, model: type[BaseModel] = ConfigModel
) -> None:
    # An unknown key (a typo) explains the "missing" error it usually causes: say it first.
    error = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key" + _suggestion(model, loc)
    elif error["type"] == "missing":
        message = "required key is missing"
    elif "input" in error and error["type"] not in ("value_error",):
        message += f" (got {error['input']!r})"
    message = _hide_env_values(message, error.get("input"), text)
    count = len(exc.errors())
    if count > 1:
        message += f" (and {count - 1} more problem{'s' if count > 2 else ''})"
    raise ConfigError(
        message, file=file, key=_key_path(loc) or None, line=locate_line(text, loc)
    ) from None
