"""Delivery channels against real peers: aiosmtpd, a Maildir, an aiohttp receiver."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks import Webhook

from notifier.core.model import EmailMessage, WebhookMessage
from notifier.delivery.channels.email import SUBJECT_MAX_CHARS, SmtpChannel, build_mime
from notifier.delivery.channels.http import RETRY_AFTER_MAX_S, classify_status, parse_retry_after
from notifier.delivery.channels.maildir import MaildirChannel, maildir_name
from notifier.delivery.channels.webhook import WebhookChannel
from tests.peers.smtp import DROP, HANG, SmtpPeer
from tests.peers.webhook import Reply, WebhookPeer

SENDER = "Tariff Alerts <alerts@example.com>"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://alerts.example.com/unsubscribe/" + "t" * 90 + ">",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def email_message(
    n: int = 1,
    *,
    recipient: str = "trade@example.com",
    subject: str = "Section 232 tariff on automobile parts takes effect",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    return EmailMessage(
        message_id=f"<dlv_{n:024d}@tariff-notifier>",
        recipient=recipient,
        subject=subject,
        text="Rate: 25% on HTS 8708 from JP.\nEffective 2025-05-03.\n",
        html="<p>Rate: <b>25%</b> on HTS 8708 — Japan</p>\n",
        headers=headers or {},
    )


def webhook_message(url: str, *, secret: str | None = SECRET) -> WebhookMessage:
    body = b'{"type": "tariff.rule.effective", "data": {"event_id": "e1", "note": "\xc3\xa9"}}'
    return WebhookMessage(webhook_id="dlv_abc123", url=url, body=body, secret=secret)


def parse(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpPeer]:
    async with SmtpPeer() as peer:
        yield peer


def smtp_channel(peer: SmtpPeer, **overrides: object) -> SmtpChannel:
    options: dict[str, object] = {
        "host": peer.host,
        "port": peer.port,
        "security": "none",
        "username": None,
        "password": None,
        "sender": SENDER,
        "timeout_s": 5.0,
        "local_hostname": "client.test",
    }
    options.update(overrides)
    return SmtpChannel(**options)  # type: ignore[arg-type]


@pytest.fixture
async def mailer(smtp: SmtpPeer) -> AsyncIterator[SmtpChannel]:
    channel = smtp_channel(smtp)
    await channel.open()
    yield channel
    await channel.close()


@pytest.fixture
async def hooks() -> AsyncIterator[WebhookPeer]:
    async with WebhookPeer(secrets={"/hook": SECRET}) as peer:
        yield peer


@pytest.fixture
async def poster() -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(timeout_s=2.0)
    await channel.open()
    yield channel
    await channel.close()


# --- email: the message ------------------------------------------------------------------


async def test_email_arrives_as_multipart_alternative_with_its_headers(
    smtp: SmtpPeer, mailer: SmtpChannel
) -> None:
    result = await mailer.send(email_message(headers=UNSUBSCRIBE))

    assert result.outcome == "sent", result
    (mail,) = await smtp.wait_for_count(1)
    assert mail.mail_from == "alerts@example.com"
    assert mail.rcpt_tos == ("trade@example.com",)
    msg = mail.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "25% on HTS 8708" in plain.get_content()
    assert "— Japan" in html.get_content()
    assert msg["Message-ID"] == "<dlv_000000000000000000000001@tariff-notifier>"
    assert msg["From"] == SENDER
    assert msg["To"] == "trade@example.com"
    assert msg["Subject"] == "Section 232 tariff on automobile parts takes effect"
    assert msg["Date"] is not None
    assert msg["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not msg.defects
    assert all(len(line) <= 998 for line in mail.data.split(b"\r\n"))
    assert mail.data.isascii(), "7-bit clean: no 8BITMIME needed"


def test_crlf_in_subject_or_header_values_never_creates_a_header() -> None:
    message = email_message(
        subject="Alert\r\nBcc: victim@example.com\nX-Injected: 1",
        headers={"List-Unsubscribe": "<https://a.example/u>\r\nCc: other@example.com"},
    )

    parsed = parse(build_mime(message, sender=SENDER))

    assert parsed["Bcc"] is None and parsed["Cc"] is None and parsed["X-Injected"] is None
    assert parsed["Subject"] == "Alert Bcc: victim@example.com X-Injected: 1"
    assert parsed["List-Unsubscribe"].startswith("<https://a.example/u>")


def test_long_subject_is_folded_and_truncated_with_an_ellipsis() -> None:
    subject = "Zollsatz für Autoteile aus Japan steigt " * 20  # non-ASCII, ~800 chars

    raw = build_mime(email_message(subject=subject), sender=SENDER)
    parsed = parse(raw)

    assert len(parsed["Subject"]) <= SUBJECT_MAX_CHARS
    assert parsed["Subject"].endswith("…")
    assert parsed["Subject"].startswith("Zollsatz für Autoteile aus Japan steigt Zollsatz")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if b"unsubscribe" not in line)


def test_non_ascii_bodies_are_quoted_printable_and_round_trip() -> None:
    text = "Größe 25 %\nline with trailing space \n" + "x" * 1200 + "\n"

    parsed = parse(build_mime(email_message(), sender=SENDER))
    message = EmailMessage("<a@b>", "t@example.com", "s", text, "<p>ü</p>")
    part = parse(build_mime(message, sender=SENDER)).get_body(("plain",))

    assert parsed.get_body(("html",))["Content-Transfer-Encoding"] == "quoted-printable"
    assert part is not None
    assert part.get_content().replace("\r\n", "\n") == text


def test_build_mime_refuses_to_override_its_own_headers() -> None:
    with pytest.raises(ValueError, match="header name"):
        build_mime(email_message(headers={"From": "evil@example.com"}), sender=SENDER)


# --- email: SMTP outcomes ----------------------------------------------------------------


async def test_messages_reuse_one_pooled_connection(smtp: SmtpPeer, mailer: SmtpChannel) -> None:
    results = [await mailer.send(email_message(n)) for n in range(5)]

    assert [r.outcome for r in results] == ["sent"] * 5
    mails = await smtp.wait_for_count(5)
    assert smtp.connections == 1
    assert {m.connection for m in mails} == {1}


async def test_concurrent_sends_open_at_most_pool_size_connections(smtp: SmtpPeer) -> None:
    channel = smtp_channel(smtp, pool_size=2)
    await channel.open()
    try:
        results = await asyncio.gather(*(channel.send(email_message(n)) for n in range(8)))
    finally:
        await channel.close()

    assert [r.outcome for r in results] == ["sent"] * 8
    assert {m.message["Message-ID"] for m in await smtp.wait_for_count(8)} == {
        f"<dlv_{n:024d}@tariff-notifier>" for n in range(8)
    }
    assert 1 <= smtp.connections <= 2


async def test_451_is_retried_and_the_next_attempt_is_sent(
    smtp: SmtpPeer, mailer: SmtpChannel
) -> None:
    smtp.fail_rcpt("trade@example.com", "451 4.3.0 try later", times=1)

    first = await mailer.send(email_message())
    second = await mailer.send(email_message())

    assert first.outcome == "retry" and "451" in first.detail
    assert second.outcome == "sent"
    assert [reply for _, reply in smtp.rcpt_log] == ["451 4.3.0 try later", "250 OK"]
    assert len(await smtp.wait_for_count(1)) == 1
    assert smtp.connections == 1, "a refused recipient leaves the connection usable"


async def test_550_for_the_recipient_is_final(smtp: SmtpPeer, mailer: SmtpChannel) -> None:
    smtp.fail_rcpt("gone@example.com", "550 5.1.1 no such user", times=None)

    refused = await mailer.send(email_message(1, recipient="gone@example.com"))
    other = await mailer.send(email_message(2, recipient="trade@example.com"))

    assert refused.outcome == "failed"
    assert "550 5.1.1" in refused.detail
    assert other.outcome == "sent", "one refused recipient does not fail the others"
    assert [m.rcpt_tos for m in await smtp.wait_for_count(1)] == [("trade@example.com",)]


@pytest.mark.parametrize(
    ("stage", "reply", "outcome"),
    [
        ("mail", "550 5.7.1 sender rejected", "failed"),
        ("mail", "451 4.7.1 greylisted", "retry"),
        ("data", "554 5.6.0 message rejected", "failed"),
        ("data", "452 4.3.1 insufficient storage", "retry"),
    ],
)
async def test_answers_to_mail_from_and_data(
    smtp: SmtpPeer, mailer: SmtpChannel, stage: str, reply: str, outcome: str
) -> None:
    (smtp.fail_mail if stage == "mail" else smtp.fail_data)(reply, times=1)

    result = await mailer.send(email_message())

    assert result.outcome == outcome
    assert reply.split()[0] in result.detail
    assert smtp.messages == []


async def test_server_down_is_retry_and_back_up_is_sent(
    smtp: SmtpPeer, mailer: SmtpChannel
) -> None:
    assert (await mailer.send(email_message(1))).outcome == "sent"
    await smtp.stop()

    down = await mailer.send(email_message(2))
    await smtp.start()
    up = await mailer.send(email_message(2))

    assert down.outcome == "retry", down
    assert up.outcome == "sent", "the dead pooled connection was replaced"
    assert len(await smtp.wait_for_count(2)) == 2


async def test_connection_dropped_during_data_is_retry(smtp: SmtpPeer, mailer: SmtpChannel) -> None:
    smtp.fail_data(DROP, times=1)

    dropped = await mailer.send(email_message())
    again = await mailer.send(email_message())

    assert dropped.outcome == "retry" and "451" in dropped.detail
    assert again.outcome == "sent"


async def test_a_hanging_server_hits_the_total_deadline(smtp: SmtpPeer) -> None:
    smtp.fail_data(HANG, times=1)
    channel = smtp_channel(smtp, timeout_s=0.5)
    await channel.open()
    try:
        started = time.monotonic()
        result = await channel.send(email_message())
        elapsed = time.monotonic() - started
        after = await channel.send(email_message())
    finally:
        await channel.close()

    assert result.outcome == "retry"
    assert elapsed < 2.0
    assert after.outcome == "sent", "the timed-out connection was not reused"
    await smtp.wait_for(lambda peer: peer.open_connections == 0)  # none leaked


async def test_421_on_a_reused_connection_reconnects_instead_of_retrying(
    smtp: SmtpPeer, mailer: SmtpChannel
) -> None:
    assert (await mailer.send(email_message(1))).outcome == "sent"
    smtp.fail_mail("421 4.7.0 too many messages on this connection", times=1)

    result = await mailer.send(email_message(2))

    assert result.outcome == "sent"
    assert smtp.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced_not_retried() -> None:
    async with SmtpPeer(idle_timeout_s=0.2) as peer:
        channel = smtp_channel(peer)
        await channel.open()
        try:
            first = await channel.send(email_message(1))
            await peer.wait_for(lambda p: p.open_connections == 0)  # the server hung up
            second = await channel.send(email_message(2))
        finally:
            await channel.close()

        assert (first.outcome, second.outcome) == ("sent", "sent")
        assert peer.connections == 2


async def test_wrong_password_is_retry_and_never_shows_the_password() -> None:
    async with SmtpPeer(auth={"alerts": "right-password"}) as peer:
        wrong = smtp_channel(peer, username="alerts", password="s3cret-Wrong")
        right = smtp_channel(peer, username="alerts", password="right-password")
        await wrong.open()
        await right.open()
        try:
            refused = await wrong.send(email_message())
            accepted = await right.send(email_message())
        finally:
            await wrong.close()
            await right.close()

        assert refused.outcome == "retry"
        assert "authentication failed" in refused.detail
        assert "s3cret-Wrong" not in refused.detail
        assert peer.auth_failures >= 1
        assert accepted.outcome == "sent"
        assert len(await peer.wait_for_count(1)) == 1


async def test_unusable_recipient_fails_without_contacting_the_server(
    smtp: SmtpPeer, mailer: SmtpChannel
) -> None:
    result = await mailer.send(email_message(recipient="not an address"))

    assert result.outcome == "failed"
    assert smtp.connections == 0


async def test_close_quits_idle_connections(smtp: SmtpPeer) -> None:
    channel = smtp_channel(smtp)
    await channel.open()
    assert (await channel.send(email_message())).outcome == "sent"
    assert smtp.open_connections == 1

    await channel.close()

    await smtp.wait_for(lambda peer: peer.open_connections == 0)


async def test_starttls_and_implicit_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    for security, implicit in (("starttls", False), ("tls", True)):
        async with SmtpPeer(tls_context=server_context, implicit_tls=implicit) as peer:
            channel = smtp_channel(peer, security=security, tls_context=client_context)
            await channel.open()
            try:
                result = await channel.send(email_message())
            finally:
                await channel.close()
            assert result.outcome == "sent", (security, result)
            assert len(await peer.wait_for_count(1)) == 1


# --- Maildir -----------------------------------------------------------------------------


async def test_maildir_writes_a_parseable_message_once_per_message_id(tmp_path: Path) -> None:
    channel = MaildirChannel(tmp_path / "mail", sender=SENDER)
    await channel.open()

    first = await channel.send(email_message(1, headers=UNSUBSCRIBE))
    retried = await channel.send(email_message(1, headers=UNSUBSCRIBE))
    other = await channel.send(email_message(2))

    assert [first.outcome, retried.outcome, other.outcome] == ["sent"] * 3
    files = sorted((tmp_path / "mail" / "new").iterdir())
    assert len(files) == 2
    assert os.listdir(tmp_path / "mail" / "tmp") == []
    written = (tmp_path / "mail" / "new" / maildir_name(email_message(1).message_id)).read_bytes()
    parsed = parse(written)
    assert parsed["Message-ID"] == email_message(1).message_id
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\n" not in written, "Maildir files use LF line ends"


async def test_maildir_concurrent_attempts_of_one_delivery_leave_one_file(
    tmp_path: Path,
) -> None:
    channel = MaildirChannel(tmp_path, sender=SENDER)
    await channel.open()

    results = await asyncio.gather(*(channel.send(email_message(3)) for _ in range(8)))

    assert {r.outcome for r in results} == {"sent"}
    assert os.listdir(tmp_path / "new") == [maildir_name(email_message(3).message_id)]
    assert os.listdir(tmp_path / "tmp") == []


async def test_maildir_does_not_redeliver_a_message_a_reader_moved_to_cur(tmp_path: Path) -> None:
    channel = MaildirChannel(tmp_path, sender=SENDER)
    await channel.open()
    assert (await channel.send(email_message(7))).outcome == "sent"
    name = maildir_name(email_message(7).message_id)
    os.rename(tmp_path / "new" / name, tmp_path / "cur" / f"{name}:2,S")

    again = await channel.send(email_message(7))

    assert again.outcome == "sent"
    assert os.listdir(tmp_path / "new") == []


# --- webhooks ----------------------------------------------------------------------------


async def test_webhook_is_signed_and_verifies_at_the_receiver(
    hooks: WebhookPeer, poster: WebhookChannel
) -> None:
    message = webhook_message(hooks.url("/hook"))

    result = await poster.send(message)

    assert result.outcome == "sent"
    (call,) = await hooks.wait_for_count(1)
    assert call.verified, call.error
    assert call.body == message.body
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["webhook-id"] == "dlv_abc123"
    assert call.headers["webhook-signature"].startswith("v1,")
    assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 60
    assert call.json["type"] == "tariff.rule.effective"
    assert call.headers["User-Agent"].startswith("tariff-notifier/")


async def test_5xx_twice_then_204_keeps_the_id_and_signs_fresh_timestamps(
    hooks: WebhookPeer,
) -> None:
    hooks.script("/hook", 500, 503, 204)
    ticks = iter([time.time() - 120, time.time() - 60, time.time()])
    channel = WebhookChannel(timeout_s=2.0, clock=lambda: next(ticks))
    await channel.open()
    try:
        results = [await channel.send(webhook_message(hooks.url("/hook"))) for _ in range(3)]
    finally:
        await channel.close()

    assert [r.outcome for r in results] == ["retry", "retry", "sent"]
    calls = await hooks.wait_for_count(3)
    assert {c.headers["webhook-id"] for c in calls} == {"dlv_abc123"}
    assert len({c.headers["webhook-timestamp"] for c in calls}) == 3
    assert all(c.verified for c in calls), [c.error for c in calls]


async def test_redirect_is_retried_and_never_followed(
    hooks: WebhookPeer, poster: WebhookChannel
) -> None:
    hooks.script("/hook", Reply(302, headers={"Location": "/elsewhere"}))

    result = await poster.send(webhook_message(hooks.url("/hook")))

    assert result.outcome == "retry"
    assert result.detail.startswith("redirect not followed")
    assert "/elsewhere" in result.detail
    assert hooks.calls_to("/elsewhere") == []
    assert len(hooks.calls) == 1


async def test_hanging_receiver_is_retry_within_the_timeout(hooks: WebhookPeer) -> None:
    hooks.script("/hook", Reply(hang_s=30))
    channel = WebhookChannel(timeout_s=0.5)
    await channel.open()
    try:
        started = time.monotonic()
        result = await channel.send(webhook_message(hooks.url("/hook")))
        elapsed = time.monotonic() - started
    finally:
        await channel.close()

    assert result.outcome == "retry"
    assert 0.4 <= elapsed < 1.5


async def test_connection_closed_without_an_answer_is_retry(
    hooks: WebhookPeer, poster: WebhookChannel
) -> None:
    hooks.script("/hook", Reply(drop=True))

    result = await poster.send(webhook_message(hooks.url("/hook")))
    after = await poster.send(webhook_message(hooks.url("/hook")))

    assert result.outcome == "retry"
    assert after.outcome == "sent"


async def test_refused_connection_is_retry(poster: WebhookChannel) -> None:
    async with WebhookPeer() as peer:
        url = peer.url("/hook")
    # The peer is stopped: nothing listens on that port now.

    result = await poster.send(webhook_message(url))

    assert result.outcome == "retry"
    assert "connection failed" in result.detail


async def test_429_with_retry_after_sets_retry_after_s(
    hooks: WebhookPeer, poster: WebhookChannel
) -> None:
    hooks.script("/hook", Reply(429, headers={"Retry-After": "7"}))

    result = await poster.send(webhook_message(hooks.url("/hook")))

    assert result.outcome == "retry"
    assert result.retry_after_s == 7


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "sent"), (202, "sent"), (400, "failed"), (401, "failed"), (408, "retry")],
)
async def test_status_outcomes(
    hooks: WebhookPeer, poster: WebhookChannel, status: int, outcome: str
) -> None:
    hooks.script("/hook", status)

    result = await poster.send(webhook_message(hooks.url("/hook")))

    assert result.outcome == outcome
    assert result.retry_after_s is None


async def test_410_is_gone(hooks: WebhookPeer, poster: WebhookChannel) -> None:
    hooks.script("/hook", Reply(410, body=b"endpoint removed"))

    result = await poster.send(webhook_message(hooks.url("/hook")))

    assert result.outcome == "gone"
    assert result.detail == "HTTP 410: endpoint removed"


async def test_slack_format_sends_no_signature_headers(
    hooks: WebhookPeer, poster: WebhookChannel
) -> None:
    message = WebhookMessage("dlv_slack", hooks.url("/slack"), b'{"text": "hi"}', None)

    result = await poster.send(message)

    assert result.outcome == "sent"
    (call,) = await hooks.wait_for_count(1, path="/slack")
    assert not any(name.lower().startswith("webhook-") for name in call.headers)
    assert call.headers["Content-Type"] == "application/json"
    assert call.json == {"text": "hi"}


async def test_a_huge_error_body_is_not_read_whole(
    hooks: WebhookPeer, poster: WebhookChannel
) -> None:
    hooks.script("/hook", Reply(500, body=b"x" * (8 * 1024 * 1024)))

    result = await poster.send(webhook_message(hooks.url("/hook")))
    after = await poster.send(webhook_message(hooks.url("/hook")))

    assert result.outcome == "retry"
    assert len(result.detail) <= 300
    assert after.outcome == "sent"


async def test_invalid_secret_fails_without_showing_it(poster: WebhookChannel) -> None:
    for secret in ("whsec_", "whsec_Q"):  # empty; impossible base64
        result = await poster.send(webhook_message("http://127.0.0.1:9/hook", secret=secret))

        assert result.outcome == "failed"
        assert "invalid webhook secret" in result.detail
        assert "whsec_Q" not in result.detail


async def test_a_given_session_is_used_and_left_open(hooks: WebhookPeer) -> None:
    async with aiohttp.ClientSession() as session:
        channel = WebhookChannel(timeout_s=2.0, session=session)
        await channel.open()
        result = await channel.send(webhook_message(hooks.url("/hook")))
        await channel.close()

        assert result.outcome == "sent"
        assert not session.closed


# --- pure pieces -------------------------------------------------------------------------


def test_retry_after_parses_seconds_and_http_dates_and_caps_them() -> None:
    now = datetime(2025, 5, 3, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after("Sat, 03 May 2025 12:02:00 GMT", now=now) == 120
    assert parse_retry_after("Sat, 03 May 2025 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("99999999", now=now) == RETRY_AFTER_MAX_S
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_classify_status_table() -> None:
    assert classify_status(204).outcome == "sent"
    assert classify_status(301, location="https://x.example/").detail.startswith(
        "redirect not followed: HTTP 301 to https://x.example/"
    )
    assert classify_status(503, retry_after_s=30).retry_after_s == 30
    assert classify_status(404).outcome == "failed"
    assert classify_status(410).outcome == "gone"


def test_signature_matches_the_standardwebhooks_reference() -> None:
    """Our header trio verifies with the library for a fixed instant."""
    now = int(time.time())
    channel = WebhookChannel(timeout_s=1.0, clock=lambda: now + 0.9)
    headers: dict[str, str] = {}
    message = webhook_message("http://127.0.0.1/hook")

    assert channel._sign(message, headers) is None
    assert headers["webhook-timestamp"] == str(now)
    Webhook(SECRET).verify(message.body, headers)


def test_peers_run_in_a_background_thread() -> None:
    """The thread mode that subprocess tests use: start, serve, restart, stop."""
    smtp = SmtpPeer()
    hooks = WebhookPeer(secrets={"/hook": SECRET})
    smtp.start_in_thread()
    hooks.start_in_thread()
    try:

        async def use() -> tuple[str, str]:
            mailer = smtp_channel(smtp)
            poster = WebhookChannel(timeout_s=2.0)
            await mailer.open()
            await poster.open()
            try:
                sent = await mailer.send(email_message())
                await smtp.stop()  # hops to the peer's own loop
                await smtp.start()
                posted = await poster.send(webhook_message(hooks.url("/hook")))
            finally:
                await mailer.close()
                await poster.close()
            return sent.outcome, posted.outcome

        assert asyncio.run(use()) == ("sent", "sent")
        assert len(smtp.wait_for_count_sync(1)) == 1
        assert hooks.wait_for_count_sync(1)[0].verified
    finally:
        smtp.stop_in_thread()
        hooks.stop_in_thread()
