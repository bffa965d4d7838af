"""One contract, every channel in the registry (as the store suite runs over both backends).

Each channel is built by the registry from a real config and talks to a real peer:
email over SMTP to aiosmtpd, email into a Maildir in a temporary folder, Standard
Webhooks to an aiohttp receiver that verifies with the ``standardwebhooks`` package, and
Slack to the same receiver. Every channel: is ``sent`` on success; keeps one id across
attempts; says ``retry`` for a transient failure and ``failed`` for a permanent one
(``gone`` for HTTP 410); hashes exactly the bytes the peer got; never raises.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from notifier.config import Config, load_config
from notifier.core.model import Delivery, SendResult
from notifier.core.planning import plan_deliveries
from notifier.delivery.channels.base import Channel, Outgoing
from notifier.delivery.channels.http import HttpPoster
from notifier.delivery.channels.registry import CHANNELS, Resources, channel_key
from notifier.delivery.render import Renderer
from tests.conftest import WriteConfig, new_secret
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import Reply, WebhookPeer
from tests.samples import sample_event

EVENT = sample_event("tariff.rule.effective")
SECRET = new_secret()
KINDS = ("email-smtp", "email-maildir", "webhook", "slack")
HTTP_KINDS = ("webhook", "slack")


@dataclass
class Case:
    """One channel under contract, with hooks into its peer."""

    kind: str
    channel: Channel[Any]
    outgoing: Outgoing
    received: Callable[[], list[bytes]]  # what the peer got, oldest first
    ids: Callable[[], list[str]]  # the delivery id as each arrival carried it
    transient: Callable[[], None]  # the next attempt meets a passing failure
    permanent: Callable[[], Outgoing]  # an outgoing that meets a final refusal
    unreachable: Callable[[], Awaitable[Outgoing]]  # an outgoing whose peer is not there
    gone: Callable[[], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def send(self, outgoing: Outgoing | None = None) -> SendResult:
        return await self.channel.send(self.channel.message(outgoing or self.outgoing))


def _config(write_config: WriteConfig, *, smtp_port: int | None, hook_url: str) -> Config:
    smtp = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        'sender = "Tariff Alerts <alerts@example.com>"\n'
        if smtp_port is not None
        else ""
    )
    path = write_config(
        '[notifier]\nstate = "sqlite:///state/n.db"\ntimezone = "America/New_York"\n'
        + smtp
        + '[delivery]\ntimeout = "3s"\n'
        + '[[subscriber]]\nid = "mail"\nemail = ["trade@example.com"]\n'
        + f'[[subscriber]]\nid = "erp"\nwebhook = "{hook_url}/erp"\nsecret = "{SECRET}"\n'
        + f'[[subscriber]]\nid = "chat"\nwebhook = "{hook_url}/slack"\nformat = "slack"\n'
    )
    return load_config(path)


def _outgoing(config: Config, subscriber_id: str, renderer: Renderer) -> Outgoing:
    sub = next(s for s in config.subscribers if s.id == subscriber_id)
    [delivery] = plan_deliveries(EVENT, [sub], now=EVENT.timestamp, zone=config.zone)
    return Outgoing(delivery=delivery, event=EVENT, subscriber=sub, renderer=renderer)


def _retarget(outgoing: Outgoing, target: str) -> Outgoing:
    delivery = replace(
        outgoing.delivery,
        target=target,
        id=Delivery.make_id(EVENT.id, outgoing.subscriber.id, outgoing.delivery.channel, target),
    )
    return replace(outgoing, delivery=delivery)


def _smtp_case(config: Config, out: Outgoing, smtp: SmtpPeer) -> Case:
    async def unreachable() -> Outgoing:
        await smtp.stop()
        return out

    def permanent() -> Outgoing:
        smtp.fail_rcpt("refused@example.com", "550 5.1.1 no such user", times=None)
        return _retarget(out, "refused@example.com")

    return Case(
        kind="email-smtp",
        channel=_build("email", config),
        outgoing=out,
        received=lambda: [m.data for m in smtp.messages],
        ids=lambda: [str(m.message["Message-ID"]) for m in smtp.messages],
        transient=lambda: smtp.fail_rcpt("trade@example.com", "451 4.3.0 try later", times=1),
        permanent=permanent,
        unreachable=unreachable,
    )


def _maildir_case(config: Config, out: Outgoing) -> Case:
    folder = config.state_dir / "maildir"

    def received() -> list[bytes]:
        files = [p for sub in ("new", "cur") for p in (folder / sub).glob("*")]
        return [p.read_bytes() for p in sorted(files, key=lambda p: p.stat().st_mtime_ns)]

    def ids() -> list[str]:
        return [
            next(line for line in raw.decode().splitlines() if line.startswith("Message-ID:"))
            for raw in received()
        ]

    def transient() -> None:
        # A disk problem: tmp/ is not a folder. The next attempt may find it fixed.
        os.rmdir(folder / "tmp")
        (folder / "tmp").write_bytes(b"")

    async def unreachable() -> Outgoing:
        transient()
        return out

    return Case(
        kind="email-maildir",
        channel=_build("email", config),
        outgoing=out,
        received=received,
        ids=ids,
        transient=transient,
        permanent=lambda: _retarget(out, "not an address"),
        unreachable=unreachable,
        extra={"heal": lambda: ((folder / "tmp").unlink(), (folder / "tmp").mkdir())},
    )


def _http_case(kind: str, config: Config, out: Outgoing, hooks: WebhookPeer) -> Case:
    path = "/erp" if kind == "webhook" else "/slack"

    async def unreachable() -> Outgoing:
        async with WebhookPeer() as gone_peer:
            url = gone_peer.url(path)
        return _retarget(out, url)  # nothing listens there any more

    return Case(
        kind=kind,
        channel=_build(kind, config),
        outgoing=out,
        received=lambda: [c.body for c in hooks.calls_to(path)],
        ids=lambda: [
            c.headers.get("webhook-id") or hashlib.sha256(c.body).hexdigest()
            for c in hooks.calls_to(path)
        ],
        transient=lambda: hooks.script(path, Reply(503, headers={"Retry-After": "7"})),
        permanent=lambda: (hooks.script(path, Reply(400, body=b"bad request")), out)[1],
        unreachable=unreachable,
        gone=lambda: hooks.script(path, Reply(410, body=b"endpoint removed")),
    )


def _build(kind: str, config: Config) -> Channel[Any]:
    timeout_s = config.model.delivery.timeout.total_seconds()
    resources = Resources(config=config, timeout_s=timeout_s, http=HttpPoster(timeout_s=timeout_s))
    return CHANNELS[kind](resources)


@pytest.fixture(params=KINDS)
async def case(
    request: pytest.FixtureRequest, write_config: WriteConfig, tmp_path: Path
) -> AsyncIterator[Case]:
    kind: str = request.param
    async with SmtpPeer() as smtp, WebhookPeer(secrets={"/erp": SECRET}) as hooks:
        config = _config(
            write_config,
            smtp_port=smtp.port if kind == "email-smtp" else None,
            hook_url=hooks.url("").rstrip("/"),
        )
        renderer = Renderer(override_dir=None, timezone=config.zone)
        subscriber = {"webhook": "erp", "slack": "chat"}.get(kind, "mail")
        out = _outgoing(config, subscriber, renderer)
        if kind == "email-smtp":
            built = _smtp_case(config, out, smtp)
        elif kind == "email-maildir":
            built = _maildir_case(config, out)
        else:
            built = _http_case(kind, config, out, hooks)
        built.extra["hooks"] = hooks
        await built.channel.open()
        try:
            yield built
        finally:
            await built.channel.close()


# --- the contract --------------------------------------------------------------------------


def test_the_registry_serves_every_channel_the_config_can_name() -> None:
    assert set(CHANNELS) == {"email", "webhook", "slack"}
    assert channel_key("email", format="standard") == "email"
    assert channel_key("webhook", format="standard") == "webhook"
    assert channel_key("webhook", format="slack") == "slack"


async def test_success_is_sent_and_the_hash_is_of_the_bytes_received(case: Case) -> None:
    result = await case.send()

    assert result.outcome == "sent", result
    [body] = case.received()
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    if case.kind == "webhook":
        [call] = case.extra["hooks"].calls_to("/erp")
        assert call.verified, call.error  # standardwebhooks verifies the signature
    if case.kind == "slack":
        [call] = case.extra["hooks"].calls_to("/slack")
        assert set(call.json) == {"text"}
        assert not any(name.lower().startswith("webhook-") for name in call.headers)


async def test_the_id_is_stable_across_attempts(case: Case) -> None:
    case.transient()
    first = await case.send()
    if "heal" in case.extra:
        case.extra["heal"]()
    second = await case.send()

    assert (first.outcome, second.outcome) == ("retry", "sent")
    ids = case.ids()
    assert len(set(ids)) == 1, ids
    assert case.outgoing.delivery.id in ids[0] or case.kind == "slack"


async def test_a_transient_failure_is_retry(case: Case) -> None:
    case.transient()

    result = await case.send()

    assert result.outcome == "retry", result
    if case.kind in HTTP_KINDS:
        assert result.retry_after_s == 7  # Retry-After honoured


async def test_a_permanent_failure_is_failed(case: Case) -> None:
    result = await case.send(case.permanent())

    assert result.outcome == "failed", result
    assert result.detail


async def test_410_is_gone_for_http_channels(case: Case) -> None:
    if case.gone is None:
        pytest.skip(f"{case.kind} has no 410")
    case.gone()

    result = await case.send()

    assert result.outcome == "gone"
    assert "410" in result.detail and "endpoint removed" in result.detail
    assert not result.detail.startswith("gone:")


async def test_send_never_raises_when_the_peer_is_not_there(case: Case) -> None:
    outgoing = await case.unreachable()

    result = await case.send(outgoing)

    assert result.outcome == "retry", result
    assert result.detail
