"""Crafted feed entries (markup, CR/LF header injection, very long titles) go through
`tariff-notifier once` into email, Standard Webhooks and Slack safely: escaped, kept on
one folded header line, and truncated."""

from __future__ import annotations

import email.policy
import json
from email import message_from_bytes

import pytest

from tests.conftest import WriteConfig, new_secret
from tests.faults import (
    cli,
    delivery_section,
    email_subscriber,
    feed_section,
    notifier_section,
    smtp_section,
    webhook_subscriber,
)
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookPeer

pytestmark = pytest.mark.slow

LONG_WORDS = "Tariff on steel " * 700  # 11,200 characters with spaces
LONG_RUN = "A" * 5000  # no space to fold at
LONG_UNICODE = "Zölle auf Stahl für Japan " * 300

# guid -> title as it appears in the XML (character references are decoded by the parser)
CRAFTED = {
    "xss": (
        "&lt;script&gt;alert(1)&lt;/script&gt;Steel tariff &amp;lt;b&amp;gt;x&amp;lt;/b&amp;gt; "
        "&lt;img src=x onerror=alert(2)&gt; rates &amp;lt; 25% &amp;amp; up"
    ),
    "crlf": (
        "Steel tariff&#13;&#10;Bcc: victim@example.org&#13;&#10;X-Injected: yes"
        "&#10;&#10;<!-- -->body injected&#x2028;Reply-To: evil@example.org&#x85;X-Two: 2"
    ),
    "slack": "&amp;amp;lt;!channel&amp;amp;gt; alert &lt;http://evil.example|click here&gt;",
    "long-words": LONG_WORDS,
    "long-run": LONG_RUN,
    "long-unicode": LONG_UNICODE,
}


def crafted_rss() -> bytes:
    items = "".join(
        f"<item><title>{title}</title>"
        f"<link>javascript:alert('{guid}')</link>"
        f"<description>&lt;script&gt;steal()&lt;/script&gt;Summary of {guid}</description>"
        f'<guid isPermaLink="false">{guid}</guid></item>'
        for guid, title in CRAFTED.items()
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>crafted</title><link>https://example.test/</link>{items}</channel></rss>"
    ).encode()


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


async def test_crafted_entries_are_escaped_folded_and_truncated_everywhere(
    write_config: WriteConfig, smtp: SmtpPeer, hooks: WebhookPeer, feeds: FeedServer
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    config = write_config(
        notifier_section()
        + smtp_section(smtp.port)
        + delivery_section(timeout="3s")
        + feed_section("news", feeds.url("news"), every="15m")
        + email_subscriber("desk", "desk@example.com")
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
        + webhook_subscriber("chat", hooks.url("/slack"), None, extra='format = "slack"\n')
    )
    code, _, err = await cli(config, "once")
    assert code == 0, err
    feeds.raw["news"] = crafted_rss()
    code, _, err = await cli(config, "once")
    assert code == 0, err
    n = len(CRAFTED)
    mails = await smtp.wait_for_count(n)
    hooks_std = await hooks.wait_for_count(n, path="/erp")
    slack = await hooks.wait_for_count(n, path="/slack")

    # Email: one recipient, no injected header, every header line short and ASCII.
    for mail in mails:
        assert mail.rcpt_tos == ("desk@example.com",)
        head = header_block(mail.data)
        for line in head.split(b"\r\n"):
            assert len(line) <= 998 and line.isascii(), line[:80]
            assert not line.lower().startswith((b"bcc:", b"x-injected", b"reply-to", b"x-two"))
        parsed = message_from_bytes(mail.data, policy=email.policy.default)
        subject = str(parsed["Subject"])
        assert "\r" not in subject and "\n" not in subject and "\u2028" not in subject
        assert len(subject) <= 260, len(subject)
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        lowered = html.lower()
        assert "<script" not in lowered and "<img" not in lowered and "javascript:" not in lowered
    subjects = {str(m.message["Subject"]) for m in mails}
    long_ones = [
        s for s in subjects if "Tariff on steel Tariff" in s or "AAAA" in s or "Zölle" in s
    ]
    assert len(long_ones) == 3 and all(s.endswith("…") for s in long_ones), long_ones
    crlf_subject = next(s for s in subjects if "Bcc" in s)
    assert "Bcc: victim@example.org X-Injected: yes" in crlf_subject  # kept, as text
    # What was markup in the feed is text: HTML-escaped in the HTML part.
    xss_mail = next(m for m in mails if "rates" in str(m.message["Subject"]))
    assert str(xss_mail.message["Subject"]).endswith("Steel tariff x rates < 25% & up")
    xss_html = message_from_bytes(xss_mail.data, policy=email.policy.default)
    html = xss_html.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "rates &lt; 25% &amp; up" in html

    # Standard Webhooks: JSON-escaped by construction; titles one line and bounded.
    for call in hooks_std:
        assert call.verified, call.error
        entry = call.json["data"]["entry"]
        assert "\r" not in entry["title"] and "\n" not in entry["title"]
        assert len(entry["title"]) <= 500 and len(entry["summary"]) <= 2000
        assert "<script" not in entry["title"] and "<script" not in entry["summary"]
        assert entry["link"] == ""  # javascript: is not a link
        assert len(call.body) < 16_384

    # Slack: its control characters are escaped, so a title cannot ping or link.
    for call in slack:
        text = json.loads(call.body)["text"]
        assert "<!channel>" not in text and "<http://evil" not in text and "<script" not in text
        assert len(text) < 4000
    slack_text = next(
        json.loads(c.body)["text"] for c in slack if "channel" in json.loads(c.body)["text"]
    )
    assert "&lt;!channel&gt;" in slack_text
