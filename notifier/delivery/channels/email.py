"""Email over SMTP (aiosmtplib), through a small pool of reused connections.

Why a pool: one aiosmtplib client runs one mail transaction at a time, and a new
connection per message costs a TCP (and TLS) handshake, EHLO and AUTH each time; ten
reused connections send about three times as many messages per second as
``aiosmtplib.send`` does.

How SMTP answers map to results (RFC 5321 §4.2.1, §4.5.4.1):

- 2xx after DATA: ``sent``.
- 4xx anywhere (421, 450, 451, 452…): ``retry``; the server said "not now".
- 5xx to MAIL FROM, RCPT TO or DATA: ``failed``; that message or recipient will not be
  accepted by retrying.
- A refused, dropped or timed-out connection: ``retry`` (a dropped connection counts as a
  451, §4.5.4.1). Every attempt has a total deadline of ``timeout_s``; aiosmtplib's own
  timeout applies per socket operation only.
- Session-level refusals that are not about the message (greeting, EHLO, STARTTLS,
  AUTH 535 bad credentials, a server without STARTTLS): ``retry`` with a detail that says
  what to fix. They are configuration problems; failing the messages would lose them,
  while retrying keeps them queued until the config is fixed (or they run out of tries
  and stay ``dead`` in the log, from where they can be re-queued).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Literal

import aiosmtplib

from notifier.core.model import EmailMessage, SendResult
from notifier.delivery.channels.base import clip_detail

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "tls"]
Outcome = Literal["sent", "retry", "failed"]

#: Longest subject we send, in characters; longer ones end with an ellipsis.
SUBJECT_MAX_CHARS = 250

# Headers build_mime writes itself; ``EmailMessage.headers`` may not replace them.
_OWN_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
# RFC 5322 §3.6.8: a field name is printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
# Anything an email parser could take as a line break, plus other control characters:
# inside a header value they could start a new header (header injection).
_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# A body that is not plain 7-bit with lines of at most 998 octets (RFC 5322 §2.1.1)
# is sent quoted-printable, so no server needs 8BITMIME. Two checks, not one regex: an
# alternative like ``[^\r\n]{999}`` is tried at every offset, ~15 ms on a 10 KB body.
_NOT_7BIT = re.compile(rb"[^\t\r\n\x20-\x7e]")
_LINE_MAX_OCTETS = 998
_FOLD_AT = 78  # RFC 5322 §2.1.1 "SHOULD" line length

# A pooled connection idle longer than this gets a NOOP before it carries a message, so
# a server that closed it quietly costs a reconnect, not a spurious retry.
_IDLE_PROBE_S = 10.0


# --- building the message (pure) ---------------------------------------------------------


def build_mime(msg: EmailMessage, *, sender: str, now: datetime | None = None) -> bytes:
    """The complete RFC 5322 message: CRLF line ends, 7-bit clean, ready for DATA.

    ``multipart/alternative`` with a text and an HTML part (utf-8). Built by hand rather
    than through ``email.message.EmailMessage`` because that costs ~1.4 ms a message,
    the email path's CPU bottleneck; the header encoding still comes from the stdlib
    (RFC 2047 for non-ASCII values). Raises ``ValueError`` for an unusable recipient,
    sender, Message-ID or extra header name.
    """
    moment = now if now is not None else datetime.now(UTC)
    message_id = _one_line(msg.message_id).strip()
    if not (message_id.startswith("<") and message_id.endswith(">") and "@" in message_id):
        raise ValueError("Message-ID must look like <id@domain>")
    head = [
        _sender_header(sender),
        _fold_header("To", _recipient_header(msg.recipient)),
        _fold_header("Subject", _subject(msg.subject)),
        f"Date: {format_datetime(moment.astimezone(UTC))}\r\n",
        f"Message-ID: {message_id}\r\n",
        # RFC 3834: tells auto-responders (vacation mail) not to answer an alert.
        "Auto-Submitted: auto-generated\r\n",
    ]
    for name, value in msg.headers.items():
        if not _FIELD_NAME.match(name) or name.lower() in _OWN_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        head.append(_fold_header(name, _one_line(value).strip()))
    # The boundary cannot occur in a quoted-printable body (it would encode "=" as
    # "=3D"); in a 7-bit body 128 random bits make a collision practically impossible.
    boundary = "=_tn_" + secrets.token_hex(16)
    head.append("MIME-Version: 1.0\r\n")
    head.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n')
    delimiter = f"\r\n--{boundary}".encode("ascii")
    return b"".join(
        (
            "".join(head).encode("ascii"),
            delimiter[2:],
            b"\r\n",
            _text_part(msg.text, "plain"),
            delimiter,
            b"\r\n",
            _text_part(msg.html, "html"),
            delimiter,
            b"--\r\n",
        )
    )


@lru_cache(maxsize=4096)  # subscribers repeat; parseaddr is the costly part
def smtp_address(address: str) -> str:
    """The bare ASCII addr-spec to use in the envelope (``RCPT TO``) and the To header.

    A non-ASCII domain becomes its IDNA form; a non-ASCII local part would need SMTPUTF8
    (RFC 6531), which we do not speak, so it is a ``ValueError``.
    """
    _, addr = parseaddr(_one_line(address))
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(ch in addr for ch in ' <>\t"\\'):
        raise ValueError("not an email address")
    if not local.isascii():
        raise ValueError("non-ASCII local part needs SMTPUTF8, which is not supported")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError("domain is not valid IDNA") from exc
    return f"{local}@{domain}"


def _one_line(value: str) -> str:
    return _BREAKS.sub(" ", value)


def _subject(subject: str) -> str:
    text = " ".join(_one_line(subject).split())
    if len(text) > SUBJECT_MAX_CHARS:
        text = text[: SUBJECT_MAX_CHARS - 1].rstrip() + "…"
    return text


@lru_cache(maxsize=4096)
def _recipient_header(recipient: str) -> str:
    name, _ = parseaddr(_one_line(recipient))
    # formataddr RFC 2047-encodes a non-ASCII display name.
    return formataddr((name, smtp_address(recipient)))


@lru_cache(maxsize=16)
def _sender_parts(sender: str) -> tuple[str, str]:
    """(folded From header, envelope address). Cached: one sender per channel."""
    value = _one_line(sender).strip()
    header = email_policy.SMTP.header_factory("From", value)
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if len(addresses) != 1 or not addresses[0].addr_spec or "@" not in addresses[0].addr_spec:
        raise ValueError("sender must be one address, like 'Alerts <alerts@example.com>'")
    folded = email_policy.SMTP.fold("From", value)
    return folded, smtp_address(addresses[0].addr_spec)


def _sender_header(sender: str) -> str:
    return _sender_parts(sender)[0]


def sender_address(sender: str) -> str:
    """The envelope address (``MAIL FROM``) of a From value such as ``A <a@b.org>``."""
    return _sender_parts(sender)[1]


def _fold_header(name: str, value: str) -> str:
    """``Name: value`` CRLF, folded at spaces near 78 columns (RFC 5322 §2.2.3).

    ASCII values are folded, never encoded: the stdlib folder would RFC 2047-encode a
    long URL, which breaks ``List-Unsubscribe``. Non-ASCII values are taken as
    unstructured text (a subject) and encoded whole.
    """
    if not value.isascii():
        return f"{name}: " + "\r\n ".join(_encoded_words(value)) + "\r\n"
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line + "\r\n"
    first, *rest = value.split(" ")
    lines: list[str] = []
    current = f"{name}: {first}"  # never fold before the first word
    for word in rest:
        if len(current) + 1 + len(word) > _FOLD_AT and word:
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(value: str) -> list[str]:
    """RFC 2047 B-encoded words for unstructured text, each on its own folded line.

    39 octets per word keep ``Subject: =?utf-8?b?…?=`` under 78 columns; a word never
    splits a UTF-8 sequence (§5: each encoded-word must be self-contained). Hand-made
    because the stdlib folder costs ~0.5 ms a subject, a third of building a message.
    """
    data = value.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + 39, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation octet
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start = end
    return words


def _text_part(text: str, subtype: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if not data.endswith("\r\n"):
        data += "\r\n"
    body = data.encode("utf-8")
    if _NOT_7BIT.search(body) or any(len(line) > _LINE_MAX_OCTETS for line in body.split(b"\r\n")):
        cte = "quoted-printable"
        body = binascii.b2a_qp(body, istext=True)
    else:
        cte = "7bit"
    headers = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}'
    return headers.encode("ascii") + b"\r\n\r\n" + body


# --- sending -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Connection:
    client: aiosmtplib.SMTP
    idle_since: float = 0.0
    used: bool = False  # has carried a transaction: a failure may be a stale connection


class _StaleConnection(Exception):
    """A reused connection died before the message was sent (see ``_send_on``)."""


class SmtpChannel:
    """Sends each email to its one recipient over pooled SMTP connections."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Security,
        username: str | None,
        password: str | None,
        sender: str,
        timeout_s: float,
        pool_size: int = 4,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"unknown security {security!r}")
        self._host = host
        self._port = port
        self._security = security
        self._username = username
        self._password = password
        self._sender = sender
        self._envelope_from = sender_address(sender)  # fails early on a bad sender
        self._timeout_s = timeout_s
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Connection] = []  # LIFO: the warmest connection first
        self._closed = False

    async def open(self) -> None:
        """Connections open lazily; this only settles the EHLO name once.

        aiosmtplib would otherwise call ``socket.getfqdn()`` (a DNS lookup) per
        connection.
        """
        self._closed = False
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)

    async def close(self) -> None:
        """QUIT the idle connections; busy ones close when their transaction ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn.client) for conn in idle))

    async def send(self, message: EmailMessage) -> SendResult:
        try:
            payload = build_mime(message, sender=self._sender)
            recipient = smtp_address(message.recipient)
        except ValueError as exc:
            return SendResult("failed", clip_detail(f"cannot build the message: {exc}"))
        # The deadline covers the SMTP conversation, not the wait for a free connection:
        # the caller bounds concurrency, and each holder is itself bounded by timeout_s.
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            keep = False
            try:
                async with asyncio.timeout(self._timeout_s):
                    result, keep, conn = await self._send_on(conn, [recipient], payload)
            except TimeoutError:
                result = SendResult("retry", f"no answer within {self._timeout_s:g}s")
            except (aiosmtplib.SMTPException, OSError) as exc:
                result = _session_failure(exc)
            except Exception as exc:  # a bug must not stop the outbox; keep the message
                log.warning("smtp send failed unexpectedly", exc_info=True)
                result = SendResult("retry", clip_detail(f"unexpected {type(exc).__name__}"))
            finally:
                if conn is not None:
                    self._release(conn, keep=keep)
        return result

    async def _send_on(
        self, conn: _Connection | None, recipients: list[str], payload: bytes
    ) -> tuple[SendResult, bool, _Connection]:
        """Send over ``conn`` (or a new connection); a stale pooled one is replaced once.

        A server may close an idle connection or refuse more messages on it (421 to
        MAIL FROM). Nothing of the message was sent yet then, so trying once more on a
        fresh connection cannot duplicate it, and saves a needless retry.
        """
        conn = await self._ready(conn)
        try:
            try:
                result, keep = await self._transact(conn, recipients, payload)
            except _StaleConnection:
                conn.client.close()
                conn = await self._ready(None)
                result, keep = await self._transact(conn, recipients, payload)
        except BaseException:
            # Timed out, cancelled or broken mid-transaction: the connection's state is
            # unknown, and the caller only holds the one it passed in. Close it here.
            conn.client.close()
            raise
        return result, keep, conn

    async def _ready(self, conn: _Connection | None) -> _Connection:
        """A connected client: the pooled one if it is still alive, else a new one."""
        if conn is not None and conn.client.is_connected:
            if time.monotonic() - conn.idle_since < _IDLE_PROBE_S:
                return conn
            try:
                await conn.client.noop()
                return conn
            except (aiosmtplib.SMTPException, OSError):
                pass
        if conn is not None:
            conn.client.close()
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            timeout=self._timeout_s,
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        await client.connect()  # includes STARTTLS and AUTH as configured
        return _Connection(client)

    async def _transact(
        self, conn: _Connection, recipients: list[str], payload: bytes
    ) -> tuple[SendResult, bool]:
        """One mail transaction; returns the result and whether the connection is reusable.

        MAIL, RCPT and DATA are sent one by one (not ``sendmail``) so a failure names its
        stage and each recipient's answer is looked at: aiosmtplib reports a partial
        refusal as a dict, not an exception. Deliveries carry one recipient each, so a
        refusal of that recipient is the result of the attempt.
        """
        client = conn.client
        try:
            await client.mail(self._envelope_from)
        except aiosmtplib.SMTPServerDisconnected:
            if conn.used:
                raise _StaleConnection from None
            raise
        except aiosmtplib.SMTPSenderRefused as exc:
            if conn.used and exc.code == 421:
                raise _StaleConnection from None
            return await _refused(client, exc.code, exc.message, "MAIL FROM")
        refusals: dict[str, tuple[int, str]] = {}
        for rcpt in recipients:
            try:
                await client.rcpt(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refusals[rcpt] = (exc.code, exc.message)
        if len(refusals) == len(recipients):
            # Nobody to send to: retry if any refusal was temporary (RFC 5321 §4.2.1).
            code, text = min(refusals.values(), key=lambda item: item[0] // 100 != 4)
            return await _refused(client, code, text, "RCPT TO")
        try:
            response = await client.data(payload)
        except aiosmtplib.SMTPDataError as exc:
            return await _refused(client, exc.code, exc.message, "DATA")
        conn.used = True
        detail = f"{response.code} {response.message}"
        if refusals:
            detail += "; refused " + ", ".join(f"{r}: {c} {t}" for r, (c, t) in refusals.items())
        return SendResult("sent", clip_detail(detail)), True

    def _release(self, conn: _Connection, *, keep: bool) -> None:
        if keep and not self._closed and conn.client.is_connected:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.client.close()


async def _refused(
    client: aiosmtplib.SMTP, code: int, text: str, stage: str
) -> tuple[SendResult, bool]:
    """Map a refused command; reset the envelope so the connection can carry the next one."""
    outcome: Outcome = "failed" if 500 <= code <= 599 else "retry"
    detail = clip_detail(f"{stage}: {code} {text}")
    if code == 421:  # RFC 5321 §3.8: the server is closing the channel
        return SendResult(outcome, detail), False
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        return SendResult(outcome, detail), False
    return SendResult(outcome, detail), True


def _session_failure(exc: aiosmtplib.SMTPException | OSError) -> SendResult:
    """Connection-level trouble: always ``retry``, with a detail that says what to fix.

    Details never include the password: aiosmtplib's messages hold server replies only.
    """
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        detail = (
            f"authentication failed ({exc.code} {exc.message}): "
            "check [smtp] username and password; messages stay queued"
        )
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        detail = f"server refused the session: {exc.code} {exc.message}"
    elif isinstance(exc, aiosmtplib.SMTPNotSupported):
        detail = f"server does not support what [smtp] asks for: {exc.message}"
    elif isinstance(exc, ssl.SSLError):
        detail = f"TLS failed: {exc}"
    elif isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        detail = f"connection dropped (counts as 451): {exc.message}"
    elif isinstance(exc, aiosmtplib.SMTPConnectError):
        detail = f"connection failed: {exc.message}"
    elif isinstance(exc, aiosmtplib.SMTPException):
        detail = f"SMTP error: {exc.message}"
    else:
        detail = f"connection failed: {exc.strerror or exc}"
    return SendResult("retry", clip_detail(detail))


async def _quit(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await client.quit(timeout=1.0)
    client.close()
