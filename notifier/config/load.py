"""Loading notifier.toml and the calendar files into a :class:`Config`.

Every problem becomes a :class:`ConfigError` that names the file, the key path
(``feed[2].every``), the line where it can be found and what was expected.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from notifier.config.locate import line_of, locate_line, raise_validation
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
            if when is not None and stale_review(when, today)
        ]


def stale_review(reviewed: date, today: date) -> bool:
    """Whether a calendar reviewed on ``reviewed`` is due for a review by ``today``."""
    return (today - reviewed).days > REVIEW_MAX_AGE_DAYS


def stale_review_message(what: str, reviewed: date, today: date) -> str:
    """The warning for a stale calendar ``what`` ("calendar file X", "calendar URL Y")."""
    return (
        f"{what} was last reviewed {reviewed} ({(today - reviewed).days} days ago): its "
        "rules may be out of date; check them against their sources"
    )


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
                    line=line_of(text, match.group(0)),
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
        raise_validation(exc, file=source, text=text, model=CalendarFile)
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


def calendar_files(model: ConfigModel, *, base_dir: Path, file: str, text: str = "") -> list[Path]:
    """Expand ``[calendar] paths`` globs relative to the config file's folder."""
    found: list[Path] = []
    line = locate_line(text, ("calendar", "paths")) if text else None
    for index, pattern in enumerate(model.calendar.paths):
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base_dir / full
        if glob.has_magic(str(full)):
            matched = sorted(Path(p) for p in glob.glob(str(full)))
            if not matched:
                # A glob that matches nothing would silently withdraw every rule.
                default = "paths" not in model.calendar.model_fields_set
                raise ConfigError(
                    f"calendar glob {full} matches no file"
                    + (" (the default [calendar] paths)" if default else "")
                    + "; fix the path, or write [calendar] paths = [] to run without a calendar",
                    file=file,
                    key=f"calendar.paths[{index}]",
                    line=line,
                )
            found.extend(matched)
        elif full.is_file():
            found.append(full)
        else:
            raise ConfigError(
                f"calendar file {full} does not exist",
                file=file,
                key=f"calendar.paths[{index}]",
                line=line,
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
        raise_validation(exc, file=str(path), text=text)
        raise
    _check_state(model.notifier.state, file=str(path), text=text)
    _check_unique(model.feed, table="feed", file=str(path), text=text)
    _check_unique(model.subscriber, table="subscriber", file=str(path), text=text)
    reviewed: dict[str, date | None] = {}
    rules = load_calendar(
        calendar_files(model, base_dir=path.parent, file=str(path), text=text),
        reviewed=reviewed,
    )
    config = Config(model, path=path.resolve(), rules=rules, state_base=state_base)
    config.env_values = tuple(sorted(used))
    config.calendar_reviewed = reviewed
    return config
