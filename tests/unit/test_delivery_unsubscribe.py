"""Unsubscribe tokens: stable, one per subscriber and address, unforgeable."""

from __future__ import annotations

from notifier.config import Config, load_config
from notifier.delivery.unsubscribe import target_for, unsubscribe_token
from tests.conftest import WriteConfig

SECRET = "a-long-random-unsubscribe-secret"


def _config(write_config: WriteConfig) -> Config:
    return load_config(
        write_config(
            '[notifier]\nstate = "sqlite:///state/n.db"\n'
            '[[subscriber]]\nid = "trade"\nemail = ["a@example.com", "b@example.com"]\n'
            '[[subscriber]]\nid = "ops"\nemail = ["a@example.com"]\n'
        )
    )


def test_a_token_is_stable() -> None:
    assert unsubscribe_token(SECRET, "trade", "a@example.com") == unsubscribe_token(
        SECRET, "trade", "a@example.com"
    )
    assert len(unsubscribe_token(SECRET, "trade", "a@example.com")) == 32


def test_tokens_differ_per_subscriber_per_address_and_per_secret() -> None:
    tokens = {
        unsubscribe_token(SECRET, "trade", "a@example.com"),
        unsubscribe_token(SECRET, "trade", "b@example.com"),
        unsubscribe_token(SECRET, "ops", "a@example.com"),
        unsubscribe_token("another-secret", "trade", "a@example.com"),
    }
    assert len(tokens) == 4


def test_field_boundaries_cannot_be_shifted() -> None:
    # "ab" + "c@x" and "a" + "bc@x" must not give the same token.
    assert unsubscribe_token(SECRET, "ab", "c@x.org") != unsubscribe_token(SECRET, "a", "bc@x.org")


def test_target_for_finds_the_address_a_token_was_made_for(write_config: WriteConfig) -> None:
    config = _config(write_config)
    token = unsubscribe_token(SECRET, "trade", "b@example.com")

    assert target_for(config, SECRET, "trade", token) == "b@example.com"


def test_target_for_rejects_forged_and_misused_tokens(write_config: WriteConfig) -> None:
    config = _config(write_config)
    genuine = unsubscribe_token(SECRET, "trade", "a@example.com")

    assert target_for(config, SECRET, "trade", "0" * 32) is None  # forged
    assert target_for(config, SECRET, "ops", genuine) is None  # another subscriber's
    assert target_for(config, "wrong-secret", "trade", genuine) is None
    assert target_for(config, "", "trade", genuine) is None  # no secret: nothing matches
    assert target_for(config, SECRET, "nobody", genuine) is None
    forged = unsubscribe_token("guessed", "trade", "a@example.com")
    assert target_for(config, SECRET, "trade", forged) is None
