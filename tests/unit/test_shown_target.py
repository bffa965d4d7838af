"""What logs, the ledger and command output show of a target: a webhook URL that holds a
value read from ``${VAR}`` is masked like a Slack URL (CONTRACT, "The delivery log")."""

from __future__ import annotations

from notifier.core.model import Subscriber
from notifier.delivery.masking import shown_target

HOOK = Subscriber(id="erp", webhook="https://erp.example.com/hooks/abc123token", secret="whsec_x")


def test_a_webhook_url_with_an_environment_value_in_it_is_masked() -> None:
    shown = shown_target(HOOK.webhook or "", subscriber=HOOK, env_values=["abc123token"])
    assert shown == "https://erp.example.com/…"


def test_a_plain_webhook_url_keeps_its_path_but_an_unknown_subscriber_is_masked() -> None:
    url = "https://erp.example.com/hooks/tariffs?key=1"
    assert "tariffs" in shown_target(url, subscriber=HOOK, env_values=["whsec_x"])
    assert "key=1" not in shown_target(url, subscriber=HOOK)
    assert shown_target(url, subscriber=None) == "https://erp.example.com/…"


def test_slack_urls_and_emails() -> None:
    slack = Subscriber(id="s", webhook="https://hooks.slack.com/services/T/B/X", format="slack")
    assert shown_target(slack.webhook or "", subscriber=slack) == "https://hooks.slack.com/…"
    desk = Subscriber(id="d", email=("desk@example.com",))
    assert shown_target("desk@example.com", subscriber=desk) == "desk@example.com"
