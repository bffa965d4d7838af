"""The single-instance lock of a SQLite state file (``<db>.lock``, ``flock``).

SQLite has one writer, and claims and leases assume one process: a second ``run`` or
``once`` on the same file refuses to start. PostgreSQL (and an in-memory store) needs
no lock; ``instance_lock`` then returns a handle that holds nothing.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from types import TracebackType
from typing import TextIO

from notifier.errors import StoreError
from notifier.store.dialect import dialect_for
from notifier.store.url import StateUrl, parse_state_url

__all__ = ["InstanceLock", "instance_lock"]


class InstanceLock:
    """A held lock (or, for a store that needs none, a stand-in); ``release`` it once
    the store is closed. Also a context manager."""

    def __init__(self, path: Path | None, handle: TextIO | None) -> None:
        self.path = path
        self._handle = handle

    @property
    def held(self) -> bool:
        """Whether a lock file is actually held (False for PostgreSQL and memory)."""
        return self._handle is not None

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None

    close = release

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def instance_lock(url: str | StateUrl) -> InstanceLock:
    """Take the state file's single-instance lock, without waiting.

    Raises ``StoreError`` when another process holds it ("another tariff-notifier is
    using …") or when the lock file cannot be made.
    """
    state = parse_state_url(url) if isinstance(url, str) else url
    path = state.lock_path
    if path is None or not dialect_for(state).single_instance:
        return InstanceLock(None, None)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as exc:
        raise StoreError(f"cannot lock the state store: {exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(
            f"another tariff-notifier is using {state.path}: SQLite state is "
            "single-instance; stop the other one, or use PostgreSQL to run several"
        ) from None
    except OSError as exc:
        handle.close()
        raise StoreError(f"cannot lock the state store: {exc}") from None
    return InstanceLock(path, handle)
