"""Our Standard Webhooks signature is the library's, for any secret, id, instant and body."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from notifier.delivery.channels.webhook import secret_key, sign


@given(
    key=st.binary(min_size=1, max_size=64),
    msg_id=st.text(min_size=1, max_size=40),
    seconds=st.integers(min_value=0, max_value=2**33),
    body=st.binary(max_size=2000),
    padded=st.booleans(),
)
def test_sign_equals_the_reference_implementation(
    key: bytes, msg_id: str, seconds: int, body: bytes, padded: bool
) -> None:
    encoded = base64.b64encode(key).decode()
    secret = "whsec_" + (encoded if padded else encoded.rstrip("="))
    text = body.decode("utf-8", "replace")
    data = text.encode("utf-8")
    expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(seconds, UTC), text)

    assert sign(secret_key(secret), msg_id, seconds, data) == expected


def test_a_signed_request_verifies_with_the_library() -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    now = int(datetime.now(UTC).timestamp())
    body = b'{"type":"tariff.rule.effective"}'
    headers = {
        "webhook-id": "dlv_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret_key(secret), "dlv_1", now, body),
    }
    Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_Q", ""])
def test_secrets_that_are_not_base64_keys_are_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        secret_key(secret)
