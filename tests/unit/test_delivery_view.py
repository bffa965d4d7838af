"""The alert view: the flat facts a template sees, the same keys for every family."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.core.model import Event
from notifier.delivery.render import LABELS, alert_view
from tests.samples import sample_event

AT = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)
LINE = {
    "htsno": "8708295160",
    "description": "Parts and accessories of motor vehicles: Other parts: Of iron or steel",
    "general": "2.5%",
    "special": "Free (A,AU)",
    "other": "25%",
    "units": ["kg"],
    "footnotes": "See 9903.94.05.",
    "applies_to": ["8708"],
    "origins": ["*"],
}


def hts_event(**data: object) -> Event:
    changes = [{"field": "general", "from": "2.5%", "to": "2.5% + 25%"}]
    return Event("evt_h", "hts.line.changed", AT, {"line": LINE, "changes": changes, **data})


def source_event(event_type: str = "source.held", **data: object) -> Event:
    return Event("evt_s", event_type, AT, {"source": "usitc-hts", "kind": "hts", **data})


def _all_families() -> list[Event]:
    return [
        sample_event("tariff.rule.effective"),
        sample_event("feed.entry.new"),
        hts_event(),
        source_event(),
    ]


@pytest.mark.parametrize("event", _all_families(), ids=lambda e: e.type)
def test_every_family_has_every_key(event: Event) -> None:
    keys = set(alert_view(sample_event("tariff.rule.effective")))

    view = alert_view(event)

    assert set(view) == keys
    assert view["label"] == LABELS[event.type]
    assert view["title"]
    assert view["colour"].startswith("#")


def test_a_rule_event() -> None:
    event = sample_event("tariff.rule.effective")

    view = alert_view(event)

    assert (view["family"], view["kind"]) == ("rule", "effective")
    assert view["rule"] == event.data["rule"]
    assert view["title"] == event.data["rule"]["title"]
    assert view["link"] == event.data["rule"]["source"]
    assert view["started"] is True  # the effective instant has been reached
    assert view["entry"] is None and view["line"] is None and view["source"] is None


def test_a_feed_entry_event() -> None:
    event = sample_event("feed.entry.new")

    view = alert_view(event)

    assert (view["family"], view["kind"]) == ("entry", "new")
    assert view["title"] == event.data["entry"]["title"]
    assert view["feed_name"] == "UPI World News"
    assert view["tags"]["origins"] == ["JP", "US"]
    assert view["link"] == event.data["entry"]["link"]
    assert view["rule"] is None and view["started"] is False


def test_an_hts_line_event() -> None:
    view = alert_view(hts_event())

    assert (view["family"], view["kind"]) == ("hts", "changed")
    line = view["line"]
    assert line["dotted"] == "8708.29.51.60"
    assert line["short"] == "Of iron or steel"  # the last step of the description path
    assert line["applies_to"] == ["8708"] and line["origins"] == ["*"]
    assert view["title"] == "HTS 8708.29.51.60 Of iron or steel"
    assert view["changes"] == [{"field": "general", "from": "2.5%", "to": "2.5% + 25%"}]


def test_an_hts_line_with_missing_fields_still_has_them() -> None:
    event = Event("evt_h", "hts.line.removed", AT, {"line": {"htsno": "8708"}})

    line = alert_view(event)["line"]

    assert line["general"] == "" and line["footnotes"] == "" and line["origins"] == ["*"]
    assert line["applies_to"] == []


def test_a_held_source_event() -> None:
    event = source_event(
        would_emit={"hts.line.changed": 340, "hts.line.added": 2},
        examples=["8708.29.51.60 general 2.5% -> 2.5% + 25%"],
    )

    view = alert_view(event)

    assert (view["family"], view["kind"]) == ("source", "held")
    source = view["source"]
    assert source["id"] == "usitc-hts" and source["kind"] == "hts"
    assert source["held_total"] == 342
    assert source["examples"] == ["8708.29.51.60 general 2.5% -> 2.5% + 25%"]
    assert view["title"] == "Source usitc-hts"


def test_a_failing_source_event() -> None:
    event = source_event(
        "source.failing", since="2025-05-02T10:00:00Z", failures=5, last_error="HTTP 503"
    )

    source = alert_view(event)["source"]

    assert (source["failures"], source["last_error"]) == (5, "HTTP 503")
    assert source["since"] == "2025-05-02T10:00:00Z"
    assert source["would_emit"] == {} and source["examples"] == []


def test_an_event_type_no_family_claims_is_refused() -> None:
    with pytest.raises(ValueError, match="no template family"):
        alert_view(Event("evt_x", "calendar.day.new", AT, {}))
