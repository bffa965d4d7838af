"""What a peer's answer means: HTTP statuses, Retry-After, and the delivery's next status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.delivery.channels.http import RETRY_AFTER_MAX_S, classify_status, parse_retry_after
from notifier.delivery.channels.registry import channel_key
from notifier.delivery.outbox import delivery_status

NOW = datetime(2025, 5, 3, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_sent(status: int) -> None:
    result = classify_status(status)

    assert (result.outcome, result.detail) == ("sent", f"HTTP {status}")


@pytest.mark.parametrize("status", [300, 301, 302, 307, 308])
def test_3xx_is_retry_and_names_the_location_it_did_not_follow(status: int) -> None:
    result = classify_status(status, location="https://elsewhere.example/")

    assert result.outcome == "retry"
    assert result.detail == f"redirect not followed: HTTP {status} to https://elsewhere.example/"


def test_410_is_gone_with_the_receivers_words() -> None:
    result = classify_status(410, snippet="endpoint removed")

    assert (result.outcome, result.detail) == ("gone", "HTTP 410: endpoint removed")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_408_429_and_5xx_are_retry_with_the_peers_wait(status: int) -> None:
    result = classify_status(status, retry_after_s=30)

    assert (result.outcome, result.retry_after_s) == ("retry", 30)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422, 451])
def test_other_4xx_are_failed(status: int) -> None:
    result = classify_status(status, snippet="no")

    assert (result.outcome, result.retry_after_s) == ("failed", None)
    assert result.detail == f"HTTP {status}: no"


def test_a_receivers_words_are_one_bounded_line() -> None:
    result = classify_status(500, snippet="line one\r\nline two\x1b[31m" + "x" * 1000)

    assert "\n" not in result.detail and "\x1b" not in result.detail
    assert len(result.detail) <= 300 and result.detail.endswith("…")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7),
        ("0", 0),
        (" 120 ", 120),
        ("Sat, 03 May 2025 12:02:00 GMT", 120),
        ("Sat, 03 May 2025 11:00:00 GMT", 0),  # a date in the past: now
        ("Sat, 03 May 2025 12:00:30 -0000", 30),
        ("99999999", RETRY_AFTER_MAX_S),  # capped at a day
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("outcome", "next_at", "status"),
    [
        ("sent", None, "sent"),
        ("failed", None, "failed"),
        ("gone", None, "failed"),
        ("retry", NOW, "queued"),
        ("retry", None, "dead"),
    ],
)
def test_the_delivery_status_after_an_attempt(
    outcome: str, next_at: datetime | None, status: str
) -> None:
    assert delivery_status(outcome, next_at=next_at) == status


def test_a_webhook_format_no_channel_serves_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        channel_key("webhook", format="teams")
