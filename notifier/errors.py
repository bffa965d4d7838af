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
    """The state store cannot be opened or written (read-only folder, disk full, locked)."""


class FetchError(NotifierError):
    """A feed could not be fetched or parsed. Recorded as that feed's failure."""


class DeliveryError(NotifierError):
    """A delivery attempt failed; ``transient`` says whether a retry may succeed."""

    def __init__(self, message: str, *, transient: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s
