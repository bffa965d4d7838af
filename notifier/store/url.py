"""The state URL (``[notifier] state``): the one place that reads it.

``sqlite:///PATH`` (a file; ``sqlite://`` is a scratch in-memory store) or
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (``postgres://`` is accepted too). Parsing
opens nothing, so the config layer can check the URL and ``check`` can print it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from notifier.errors import StateUrlError

__all__ = ["StateUrl", "parse_state_url"]

DialectName = Literal["sqlite", "postgresql"]

# scheme (what the URL starts with) -> the dialect it means
_SCHEMES: dict[str, DialectName] = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+asyncpg": "postgresql",
}
_EXPECTED = "expected sqlite:///PATH or postgresql://…"


@dataclass(frozen=True, slots=True)
class StateUrl:
    """A parsed state URL.

    ``path`` is the SQLite file (as written: relative paths stay relative), None for an
    in-memory SQLite store and for PostgreSQL. ``masked`` is the URL with any password
    replaced by ``***``: the form for logs and command output.
    """

    url: str
    scheme: str
    dialect: DialectName
    path: Path | None
    masked: str

    @property
    def in_memory(self) -> bool:
        return self.dialect == "sqlite" and self.path is None

    @property
    def lock_path(self) -> Path | None:
        """The single-instance lock file beside a SQLite file (``<db>.lock``)."""
        return None if self.path is None else self.path.with_name(self.path.name + ".lock")

    def exists(self) -> bool:
        """Whether the SQLite file exists (False for memory and PostgreSQL)."""
        return self.path is not None and self.path.exists()

    def driver_url(self) -> str:
        """The same database, through its asyncio driver (aiosqlite, asyncpg)."""
        if self.dialect == "sqlite":
            # Textual: SQLAlchemy would quote ``:memory:`` when rendering the URL.
            return "sqlite+aiosqlite" + self.url[len(self.scheme) :]
        parsed = make_url(self.url).set(drivername="postgresql+asyncpg")
        return parsed.render_as_string(hide_password=False)

    def __str__(self) -> str:
        return self.masked


def parse_state_url(url: str) -> StateUrl:
    """Parse a state URL; ``StateUrlError`` (a ``StoreError`` and a ``ValueError``) when it
    is not one we can open."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme:
        raise StateUrlError(f'state URL "{_mask_text(url)}" is not a URL: {_EXPECTED}')
    dialect = _SCHEMES.get(scheme.lower())
    if dialect is None:
        raise StateUrlError(f'unsupported state URL scheme "{scheme}": {_EXPECTED}')
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StateUrlError(f'state URL "{_mask_text(url)}" cannot be read: {exc}') from None
    if dialect == "sqlite":
        return StateUrl(url, scheme, dialect, _sqlite_path(parsed), _render_masked(parsed))
    if not parsed.database:
        raise StateUrlError(
            f'state URL "{_render_masked(parsed)}" names no database: '
            "expected postgresql://USER@HOST[:PORT]/DATABASE"
        )
    return StateUrl(url, scheme, dialect, None, _render_masked(parsed))


def _sqlite_path(parsed: URL) -> Path | None:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def _render_masked(parsed: URL) -> str:
    if parsed.get_backend_name() == "sqlite":
        # No password to hide; rendering would quote ``:memory:``.
        return parsed.render_as_string(hide_password=False).replace("%3A", ":")
    return parsed.render_as_string(hide_password=True)


def _mask_text(url: str) -> str:
    """``url`` with whatever sits between ``://user:`` and ``@`` hidden (unparsable URLs)."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    hidden = f"{user}:***" if ":" in credentials else user
    return f"{head}{sep}{hidden}{at}{host}"
