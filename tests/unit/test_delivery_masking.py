"""What the delivery log shows of a target: never a secret URL."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.delivery import masking
from notifier.delivery.masking import mask_target, split_and_mask


@pytest.mark.parametrize(
    ("target", "secret", "shown"),
    [
        ("trade@example.com", False, "trade@example.com"),
        ("trade@example.com", True, "trade@example.com"),
        ("https://hooks.slack.com/services/T0/B0/XYZ", True, "https://hooks.slack.com/…"),
        ("https://hooks.slack.com/services/T0/B0/XYZ", False, "https://hooks.slack.com/…"),
        ("https://erp.example.com:8443/hooks/tariff?token=abc", True, "https://erp.example.com:8443/…"),
        ("https://erp.example.com/hooks/tariff?token=abc#x", False, "https://erp.example.com/hooks/tariff"),
        ("http://user:pw@erp.example.com/h", False, "http://erp.example.com/h"),
        ("http://[::1]:9000/h?k=v", True, "http://[::1]:9000/…"),
    ],
)  # fmt: skip
def test_mask_target(target: str, secret: bool, shown: str) -> None:
    assert mask_target(target, secret=secret) == shown


def test_a_secret_never_survives_masking() -> None:
    for target in ("https://hooks.slack.com/services/T0/B0/s3cret", "https://x.example/s3cret"):
        assert "s3cret" not in mask_target(target, secret=True)
    assert "s3cret" not in mask_target("https://x.example/h?key=s3cret", secret=False)


_URL_PIECES = st.sampled_from(
    ["http", "https", "HTTP", "ftp", "://", ":", "/", "?", "#", "@", "[", "]", ".", "-",
     "a", "Z", "0", "1", "8443", "65535", "65536", "099", "%2F", " ", "\t", "\\", ";",
     "hooks.slack.com", "example.com", "user:pw", "é"]
)  # fmt: skip


@given(st.lists(_URL_PIECES, max_size=12).map("".join), st.booleans())
@settings(max_examples=3000, deadline=None)
def test_the_plain_url_shortcut_masks_as_the_split_does(tail: str, secret: bool) -> None:
    """``mask_target`` skips ``urlsplit`` for plain URLs: never with another result."""
    for target in (tail, "http://" + tail, "https://" + tail):
        if "://" not in target:
            continue  # an address: shown as it is, before either path
        assert mask_target(target, secret=secret) == split_and_mask(target, secret=secret)


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:8080/h/1", "https://erp.example.com/hooks/tariffs", "https://a.b"],
)
def test_plain_urls_take_the_shortcut(target: str) -> None:
    assert masking._PLAIN_URL.fullmatch(target) is not None
    assert mask_target(target, secret=False) == target == split_and_mask(target, secret=False)
