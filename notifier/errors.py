"""One error hierarchy. The CLI turns these into exit codes and one readable line."""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error tariff-notifier raises on purpose."""


class ConfigError(NotifierError):
    """Invalid config, calendar or template: exit code 2.

    Carries the file, the key path (``feed[2].every``), the line when the parser gives
    one, and what was expected, so the message can point the user straight at the fix.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.line = line
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f": {self.key}"
        return f"{where}: {self.detail}"


class StoreError(NotifierError):
    """The state store cannot be opened, read or written (read-only folder, disk full,
    locked, database down). Every database error leaves the store as one of these."""


class StoreUnavailable(StoreError):
    """The state database cannot be reached (PostgreSQL down or refusing, connection lost,
    no connection free in time): usually worth retrying later."""


class StoreDamaged(StoreError):
    """The SQLite state file is damaged or not a database: retrying will not help; the
    message names the file and what to do."""


class StateUrlError(StoreError, ValueError):
    """``[notifier] state`` is not a URL the store can open (unsupported scheme, no
    database). Raised by parsing, before anything is opened."""


class FetchError(NotifierError):
    """A feed could not be fetched or parsed. Recorded as that feed's failure."""


class DeliveryError(NotifierError):
    """A delivery attempt failed; ``transient`` says whether a retry may succeed."""

    def __init__(self, message: str, *, transient: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s
