"""A recording SMTP server on 127.0.0.1 (aiosmtpd) with scripted faults.

Usage, in the test's loop::

    async with SmtpPeer() as smtp:
        smtp.fail_rcpt("a@example.com", "451 4.3.0 try later", times=1)
        ...  # send to smtp.host, smtp.port
        await smtp.wait_for_count(1)
        mail = smtp.messages[0]          # ReceivedMail: envelope, raw bytes, parsed

or in a background thread (for a daemon subprocess)::

    smtp = SmtpPeer()
    smtp.start_in_thread()
    ...
    smtp.stop_in_thread()

``await smtp.stop()`` / ``await smtp.start()`` take the server down (listening socket and
open connections) and bring it back on the same port, in either mode.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.peers import LoopThread, Peer, wait_for, wait_for_sync

# Fault actions besides an SMTP reply line.
DROP = "drop"  # close the connection without answering
HANG = "hang"  # never answer (until the client gives up or the peer stops)


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as received after DATA (CRLF line ends, dot-unstuffed)
    message: email.message.EmailMessage  # parsed with email.policy.default
    peer: tuple[str, int]  # the client's address: one per connection
    connection: int  # 1-based number of the connection it came over
    received_at: float  # time.time()


@dataclass
class _Fault:
    stage: str  # "mail" | "rcpt" | "data"
    action: str  # an SMTP reply line, DROP or HANG
    remaining: int | None  # None: every time
    address: str | None = None  # rcpt faults: only this recipient


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[ReceivedMail] = field(default_factory=list)
    rcpt_log: list[tuple[str, str]] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0
    auth_failures: int = 0


class _RecordingSMTP(SMTP):
    """aiosmtpd's protocol, numbered per connection so tests can see connection reuse."""

    def __init__(self, peer: SmtpPeer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._peer = peer
        self.connection_number = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:  # not the STARTTLS re-entry
            self.connection_number = self._peer._connected(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._peer._disconnected(self)
        super().connection_lost(error)


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self._peer = peer

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self._peer._auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        action = self._peer._take("mail", None)
        if action is not None:
            return await _act(server, action)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        action = self._peer._take("rcpt", address)
        with self._peer._state.lock:
            self._peer._state.rcpt_log.append((address, action or "250 OK"))
        if action is not None:
            return await _act(server, action)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        action = self._peer._take("data", None)
        if action is not None:
            return await _act(server, action)
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        peer_addr = session.peer if isinstance(session.peer, tuple) else ("", 0)
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=raw,
            message=parsed,
            peer=(str(peer_addr[0]), int(peer_addr[1])),
            connection=getattr(server, "connection_number", 0),
            received_at=time.time(),
        )
        with self._peer._state.lock:
            self._peer._state.messages.append(mail)
            number = len(self._peer._state.messages)
        return f"250 2.0.0 OK queued as {number}"


async def _act(server: SMTP, action: str) -> str:
    if action == DROP:
        _abort(server.transport)
        await asyncio.Event().wait()  # connection_lost cancels this handler
    if action == HANG:
        await asyncio.Event().wait()  # until the client hangs up or the peer stops
    return action


def _abort(transport: asyncio.BaseTransport | None) -> None:
    """Close at once, as a crash would (no pending writes flushed)."""
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()


class SmtpPeer(Peer):
    """A recording SMTP server with scripted faults; restartable on the same port.

    ``auth``: ``{username: password}`` to offer AUTH PLAIN/LOGIN (without TLS) and
    require it before MAIL. ``tls_context``: a server context; with
    ``implicit_tls=True`` the port speaks TLS from the start (``security = "tls"``),
    else STARTTLS is offered (``security = "starttls"``). ``idle_timeout_s``: how long
    the server keeps a silent connection open.
    """

    thread_name = "smtp-peer"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: Mapping[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        idle_timeout_s: float = 300.0,
    ) -> None:
        self.host = host
        self.port = port
        self._auth = dict(auth) if auth is not None else None
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._idle_timeout_s = idle_timeout_s
        self._state = _State()
        self._server: asyncio.AbstractServer | None = None
        self._protocols: set[_RecordingSMTP] = set()
        self._thread: LoopThread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    async def _start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {
            "hostname": "smtp-peer.test",
            "enable_SMTPUTF8": True,
            "timeout": self._idle_timeout_s,
            "loop": loop,
        }
        if self._auth is not None:
            kwargs.update(auth_require_tls=False, authenticator=self._authenticate)
        if self._tls_context is not None and not self._implicit_tls:
            kwargs["tls_context"] = self._tls_context
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: _RecordingSMTP(self, handler, **kwargs),
            host=self.host,
            port=self.port,
            ssl=self._tls_context if self._implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self._protocols):
            _abort(protocol.transport)
        await server.wait_closed()
        await wait_for(lambda: not self._protocols, timeout_s=5, what="connections to close")

    def _connected(self, protocol: _RecordingSMTP) -> int:
        self._protocols.add(protocol)
        with self._state.lock:
            self._state.connections += 1
            self._state.open_connections += 1
            return self._state.connections

    def _disconnected(self, protocol: _RecordingSMTP) -> None:
        if protocol in self._protocols:
            self._protocols.discard(protocol)
            with self._state.lock:
                self._state.open_connections -= 1

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._auth is not None
        ok = isinstance(data, LoginPassword) and self._auth.get(
            data.login.decode("utf-8", "replace")
        ) == data.password.decode("utf-8", "replace")
        if not ok:
            with self._state.lock:
                self._state.auth_failures += 1
        return AuthResult(success=ok, handled=False)

    # --- scripting ---------------------------------------------------------------------

    def fail_rcpt(self, address: str, reply: str, *, times: int | None = 1) -> None:
        """Answer RCPT TO for ``address`` with ``reply`` (or DROP/HANG), ``times`` times."""
        self._add(_Fault("rcpt", reply, times, address.lower()))

    def fail_mail(self, reply: str, *, times: int | None = 1) -> None:
        """Answer MAIL FROM with ``reply`` (or DROP/HANG), ``times`` times (None: always)."""
        self._add(_Fault("mail", reply, times))

    def fail_data(self, reply: str, *, times: int | None = 1) -> None:
        """Answer the end of DATA with ``reply`` (or DROP/HANG) instead of accepting."""
        self._add(_Fault("data", reply, times))

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    def _add(self, fault: _Fault) -> None:
        with self._state.lock:
            self._state.faults.append(fault)

    def _take(self, stage: str, address: str | None) -> str | None:
        """The scripted action for this command, consuming one use of it."""
        with self._state.lock:
            for fault in self._state.faults:
                if fault.stage != stage:
                    continue
                if fault.address is not None and fault.address != (address or "").lower():
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._state.faults.remove(fault)
                return fault.action
        return None

    # --- what happened -----------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        """Accepted messages, oldest first (a copy)."""
        with self._state.lock:
            return list(self._state.messages)

    @property
    def rcpt_log(self) -> list[tuple[str, str]]:
        """Every RCPT TO seen, with the reply given (``"250 OK"`` when accepted)."""
        with self._state.lock:
            return list(self._state.rcpt_log)

    @property
    def connections(self) -> int:
        """Connections accepted since the peer was made."""
        with self._state.lock:
            return self._state.connections

    @property
    def open_connections(self) -> int:
        with self._state.lock:
            return self._state.open_connections

    @property
    def auth_failures(self) -> int:
        with self._state.lock:
            return self._state.auth_failures

    def messages_to(self, address: str) -> list[ReceivedMail]:
        address = address.lower()
        return [m for m in self.messages if address in (r.lower() for r in m.rcpt_tos)]

    def clear(self) -> None:
        """Forget what was recorded (faults stay)."""
        with self._state.lock:
            self._state.messages.clear()
            self._state.rcpt_log.clear()

    async def wait_for(
        self, predicate: Callable[[SmtpPeer], bool], *, timeout_s: float = 10.0
    ) -> None:
        await wait_for(lambda: predicate(self), timeout_s=timeout_s, what="the SMTP peer")

    async def wait_for_count(self, count: int, *, timeout_s: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages were accepted; returns them."""
        await wait_for(
            lambda: len(self.messages) >= count,
            timeout_s=timeout_s,
            what=f"{count} message(s) at the SMTP peer",
        )
        return self.messages

    def wait_for_count_sync(self, count: int, *, timeout_s: float = 10.0) -> list[ReceivedMail]:
        wait_for_sync(
            lambda: len(self.messages) >= count,
            timeout_s=timeout_s,
            what=f"{count} message(s) at the SMTP peer",
        )
        return self.messages
