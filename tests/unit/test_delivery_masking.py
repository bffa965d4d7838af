"""What the delivery log shows of a target: never a secret URL."""

from __future__ import annotations

import pytest

from notifier.delivery.masking import mask_target


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
