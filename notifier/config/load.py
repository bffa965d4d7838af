"""Loading notifier.toml and the calendar files into a :class:`Config`.

Every problem becomes a :class:`ConfigError` that names the file, the key path
(``feed[2].every``), the line where it can be found and what was expected.
"""

from __future__ import annotations

import difflib
import functools
import glob
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from notifier.config.schema import (
    CalendarFile,
    ConfigModel,
    FeedSection,
)
from notifier.core.model import Rule, Subscriber
from notifier.errors import ConfigError

# A calendar file reviewed longer ago than this is flagged by `check` and at start-up.
REVIEW_MAX_AGE_DAYS = 90

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Config:
    """A loaded config: the validated model plus where it came from."""

    def __init__(
        self, model: ConfigModel, *, path: Path, rules: list[Rule], state_base: Path | None = None
    ) -> None:
        self.model = model
        self.path = path
        self.base_dir = path.parent
        self.rules = rules
        # Relative state paths resolve against the config's folder, except for the
        # config shipped inside an installed package: its state goes to the cwd.
        self.state_base = state_base or self.base_dir
        # Values read from the environment through ${VAR}: masked wherever shown.
        self.env_values: tuple[str, ...] = ()
        # Calendar file -> its `reviewed` date (None: the file does not say).
        self.calendar_reviewed: dict[str, date | None] = {}

    @functools.cached_property
    def subscribers(self) -> list[Subscriber]:
        """The subscribers as core values (built once per loaded config)."""
        return [section.to_subscriber() for section in self.model.subscriber]

    @property
    def feeds(self) -> list[FeedSection]:
        return self.model.feed

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.model.notifier.timezone)

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def state_url(self) -> str:
        """The SQLAlchemy URL with a relative SQLite path made absolute."""
        url = self.model.notifier.state
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.state_base / url[len(prefix) :])
        return url

    @property
    def state_dir(self) -> Path:
        """Where file-based state lives (the SQLite file's folder; Maildir goes under it)."""
        url = self.state_url
        if url.startswith("sqlite:///") and ":memory:" not in url:
            return Path(url[len("sqlite:///") :]).parent
        return self.state_base / "state"

    def stale_calendar_files(self, today: date) -> list[tuple[str, date]]:
        """Calendar files in use that were last reviewed more than 90 days before today."""
        return [
            (file, when)
            for file, when in sorted(self.calendar_reviewed.items())
            if when is not None and (today - when).days > REVIEW_MAX_AGE_DAYS
        ]


# --- loading ---------------------------------------------------------------------------


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    return _parse_toml(text, file=str(path)), text


def _parse_toml(text: str, *, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", file=file, line=int(line.group(1)) if line else None
        ) from None


def expand_env(
    raw: Any,
    *,
    file: str,
    environ: Mapping[str, str],
    key: str = "",
    used: set[str] | None = None,
    text: str = "",
) -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is an error naming it and
    its line. The values substituted are added to ``used`` (they are masked everywhere)."""
    if isinstance(raw, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    f"environment variable {name} is not set (referenced as ${{{name}}})",
                    file=file,
                    key=key or None,
                    line=_line_of(text, match.group(0)),
                )
            if used is not None:
                used.add(environ[name])
            return environ[name]

        return _ENV_REF.sub(substitute, raw)
    if isinstance(raw, dict):
        return {
            k: expand_env(
                v,
                file=file,
                environ=environ,
                key=f"{key}.{k}" if key else k,
                used=used,
                text=text,
            )
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return [
            expand_env(v, file=file, environ=environ, key=f"{key}[{i}]", used=used, text=text)
            for i, v in enumerate(raw)
        ]
    return raw


def _line_of(text: str, needle: str) -> int | None:
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
        known = [f"[{key}]" for key in known]
        name = f"[{name}]"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    if known:
        return f" (expected one of: {', '.join(known)})"
    return " (check the spelling against the documentation)"


def _raise_validation(
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
    count = len(exc.errors())
    if count > 1:
        message += f" (and {count - 1} more problem{'s' if count > 2 else ''})"
    raise ConfigError(
        message, file=file, key=_key_path(loc) or None, line=locate_line(text, loc)
    ) from None


def _check_state(url: str, *, file: str, text: str) -> None:
    """An unsupported state URL is a config error, not a traceback at the first query."""
    from notifier.store.url import parse_state_url

    try:
        parse_state_url(url)
    except ValueError as exc:
        raise ConfigError(
            str(exc), file=file, key="notifier.state", line=locate_line(text, ("notifier", "state"))
        ) from None


def _check_unique(items: list[Any], *, table: str, file: str, text: str) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            raise ConfigError(
                f"duplicate id {item.id!r} (also {table}[{seen[item.id]}])",
                file=file,
                key=f"{table}[{index}].id",
                line=locate_line(text, (table, index, "id")),
            )
        seen[item.id] = index


def parse_calendar(text: str, *, source: str) -> tuple[list[Rule], date | None]:
    """One calendar file's rules and its ``reviewed`` date, validated; errors name
    ``source`` (a path or a URL), the line and the key."""
    raw = _parse_toml(text, file=source)
    try:
        model = CalendarFile.model_validate(raw)
    except ValidationError as exc:
        _raise_validation(exc, file=source, text=text, model=CalendarFile)
        raise  # unreachable; keeps type checkers calm
    seen: dict[str, int] = {}
    for index, rule in enumerate(model.rule):
        if rule.id in seen:
            raise ConfigError(
                f"duplicate rule id {rule.id!r} (also rule[{seen[rule.id]}])",
                file=source,
                key=f"rule[{index}].id",
                line=locate_line(text, ("rule", index, "id")),
            )
        seen[rule.id] = index
    return [rule.to_rule() for rule in model.rule], model.reviewed


def merge_calendars(
    calendars: Sequence[tuple[str, Sequence[Rule], str | None]],
) -> list[Rule]:
    """Rules of several calendars (source, rules, its text); an id in two of them is an
    error naming both places (and the line, where the text is known)."""
    rules: list[Rule] = []
    origin: dict[str, str] = {}
    for source, found, text in calendars:
        for index, rule in enumerate(found):
            if rule.id in origin:
                raise ConfigError(
                    f"duplicate rule id {rule.id!r} (also in {origin[rule.id]})",
                    file=source,
                    key=f"rule[{index}].id",
                    line=locate_line(text, ("rule", index, "id")) if text else None,
                )
            origin[rule.id] = source
            rules.append(rule)
    return rules


def load_calendar(
    paths: list[Path], *, reviewed: dict[str, date | None] | None = None
) -> list[Rule]:
    """Load calendar files; rule ids must be unique across all of them. Each file's
    ``reviewed`` date goes into ``reviewed`` (path -> date, None when it has none)."""
    calendars: list[tuple[str, Sequence[Rule], str | None]] = []
    for path in paths:
        _, text = _read_toml(path)
        found, when = parse_calendar(text, source=str(path))
        if reviewed is not None:
            reviewed[str(path)] = when
        calendars.append((str(path), found, text))
    return merge_calendars(calendars)


def calendar_files(model: ConfigModel, *, base_dir: Path, file: str) -> list[Path]:
    """Expand ``[calendar] paths`` globs relative to the config file's folder."""
    found: list[Path] = []
    for index, pattern in enumerate(model.calendar.paths):
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base_dir / full
        if glob.has_magic(str(full)):
            matched = sorted(Path(p) for p in glob.glob(str(full)))
            if not matched:
                # A glob that matches nothing would silently withdraw every rule.
                raise ConfigError(
                    f"calendar glob {full} matches no file",
                    file=file,
                    key=f"calendar.paths[{index}]",
                )
            found.extend(matched)
        elif full.is_file():
            found.append(full)
        else:
            raise ConfigError(
                f"calendar file {full} does not exist",
                file=file,
                key=f"calendar.paths[{index}]",
            )
    return list(dict.fromkeys(found))


def load_config(
    path: Path, *, environ: Mapping[str, str] | None = None, state_base: Path | None = None
) -> Config:
    """Read, expand and validate a config file and every calendar file it names."""
    raw, text = _read_toml(path)
    used: set[str] = set()
    raw = expand_env(
        raw,
        file=str(path),
        environ=os.environ if environ is None else environ,
        used=used,
        text=text,
    )
    try:
        model = ConfigModel.model_validate(raw)
    except ValidationError as exc:
        _raise_validation(exc, file=str(path), text=text)
        raise
    _check_state(model.notifier.state, file=str(path), text=text)
    _check_unique(model.feed, table="feed", file=str(path), text=text)
    _check_unique(model.subscriber, table="subscriber", file=str(path), text=text)
    reviewed: dict[str, date | None] = {}
    rules = load_calendar(
        calendar_files(model, base_dir=path.parent, file=str(path)), reviewed=reviewed
    )
    config = Config(model, path=path.resolve(), rules=rules, state_base=state_base)
    config.env_values = tuple(sorted(used))
    config.calendar_reviewed = reviewed
    return config
