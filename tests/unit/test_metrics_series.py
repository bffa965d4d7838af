"""The per-subscriber delivery series: created from the config, counted like the others."""

from __future__ import annotations

from notifier.config import load_config
from notifier.runtime.metrics import Metrics
from tests.conftest import WriteConfig, new_secret
from tests.faults import notifier_section, webhook_subscriber

HOOK = "https://erp.example.com/hooks"
SERIES = 'notifier_subscriber_deliveries_total{{channel="{}",outcome="sent",subscriber="{}"}}'


def test_each_subscribers_sent_series_exists_at_zero_from_the_config(
    write_config: WriteConfig,
) -> None:
    """Created while idle, not one by one at the instant of a fan-out; and counted the
    same as a series created at the first delivery."""
    config = load_config(
        write_config(
            notifier_section()
            + webhook_subscriber("erp", HOOK, new_secret())
            + '[[subscriber]]\nid = "team"\nemail = ["trade@example.com"]\n'
        )
    )
    metrics = Metrics()
    metrics.set_config(config)
    text = metrics.render().decode()
    assert SERIES.format("webhook", "erp") + " 0.0" in text
    assert SERIES.format("email", "team") + " 0.0" in text
    assert SERIES.format("email", "erp") not in text  # erp has no email address
    metrics.observe_delivery("webhook", "sent", 0.2, subscriber="erp")
    metrics.observe_delivery("webhook", "dead", None, subscriber="erp")
    metrics.observe_delivery("webhook", "sent", 0.1, subscriber="not-configured")
    text = metrics.render().decode()
    assert SERIES.format("webhook", "erp") + " 1.0" in text
    assert 'notifier_deliveries_total{channel="webhook",outcome="sent"} 2.0' in text
    assert 'outcome="dead",subscriber="erp"} 1.0' in text
    assert "not-configured" not in text
    metrics.set_subscribers([])
    assert 'subscriber="erp"' not in metrics.render().decode()
