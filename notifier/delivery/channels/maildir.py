"""Email into a local Maildir, for installs without ``[smtp]`` (and for the demo).

Each message is one file named from a hash of its Message-ID, so a retried delivery whose
first write did succeed finds its file and does not write a second one: the Maildir
holds each delivery once, as SMTP would (the Message-ID is stable across retries). The
ledger hash is of the file's bytes: those written, or those already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path

from notifier.core.model import EmailMessage, SendResult
from notifier.delivery.channels.base import Outgoing, clip_detail, sha256_hex
from notifier.delivery.channels.compose import EmailComposer, PreparedEmail, mime_bytes


def maildir_name(message_id: str) -> str:
    """The file name (in ``new/``, before any ``:2,`` flags) of a Message-ID's file."""
    return hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:32] + ".tariff-notifier"


class MaildirChannel:
    """Writes each email as a file in a Maildir (``tmp/``, ``new/``, ``cur/``)."""

    def __init__(self, path: Path, *, sender: str) -> None:
        self._path = Path(path)
        self._sender = sender
        self._ready = False
        self._composer = EmailComposer(sender=sender)

    async def open(self) -> None:
        await asyncio.to_thread(self._create)

    async def close(self) -> None:
        return None

    def message(self, outgoing: Outgoing) -> PreparedEmail | EmailMessage:
        return self._composer.compose(outgoing)

    async def send(self, message: EmailMessage | PreparedEmail) -> SendResult:
        try:
            payload = mime_bytes(message, sender=self._sender)
        except ValueError as exc:
            return SendResult("failed", clip_detail(f"cannot build the message: {exc}"))
        try:
            return await asyncio.to_thread(self._deliver, message.message_id, payload)
        except OSError as exc:  # disk full, permissions: the next attempt may succeed
            return SendResult("retry", clip_detail(f"cannot write to {self._path}: {exc}"))

    def _create(self) -> None:
        # Not mailbox.Maildir(create=True): it makes tmp/, new/ and cur/ only when the
        # folder itself is missing, and its add() names files randomly (no idempotence).
        for sub in ("tmp", "new", "cur"):
            (self._path / sub).mkdir(parents=True, exist_ok=True)
        self._ready = True

    def _deliver(self, message_id: str, payload: bytes) -> SendResult:
        """Maildir delivery: write in ``tmp/``, then link into ``new/`` (maildir(5)).

        ``link`` rather than ``rename`` because it refuses to replace an existing file:
        two concurrent attempts of the same delivery leave one file.
        """
        if not self._ready:
            self._create()
        name = maildir_name(message_id)
        final = self._path / "new" / name
        existing = self._existing(name)
        if existing is not None:
            return existing
        tmp = self._path / "tmp" / f"{name}.{os.getpid()}.{secrets.token_hex(6)}"
        # Local mail tools expect LF line ends in Maildir files; SMTP needs CRLF.
        data = payload.replace(b"\r\n", b"\n")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, final)
            except FileExistsError:
                return self._existing(name) or SendResult("sent", f"already in {final.parent}")
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                os.replace(tmp, final)  # a file system without hard links
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return SendResult("sent", f"written to {final}", sha256=sha256_hex(data))

    def _existing(self, name: str) -> SendResult | None:
        """``sent`` when an earlier attempt's file is there, with the hash of its bytes.

        It is in ``new/``, or a mail reader moved it to ``cur/NAME:2,FLAGS``.
        """
        found = self._path / "new" / name
        if not found.exists():
            prefix = name + ":"
            with os.scandir(self._path / "cur") as entries:
                match = next(
                    (e.path for e in entries if e.name == name or e.name.startswith(prefix)),
                    None,
                )
            if match is None:
                return None
            found = Path(match)
        try:
            digest = sha256_hex(found.read_bytes())
        except FileNotFoundError:  # moved between the look and the read: it is there
            digest = None
        return SendResult("sent", f"already in {found.parent}", sha256=digest)
