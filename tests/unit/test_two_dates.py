"""Every alert shows the date the change names beside the date it was detected, where they
differ (issue 12, "Two dates")."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from notifier.core.model import Event
from notifier.delivery.render import Renderer
from notifier.delivery.render.view import moments

DETECTED = datetime(2025, 4, 2, 20, 40, tzinfo=UTC)


def document_event(**document: str) -> Event:
    entry = {
        "id": "2025-05930",
        "title": "Adjusting Imports of Automobiles and Automobile Parts",
        "link": "https://www.federalregister.gov/d/2025-05930",
        "published": document.get("publication_date"),
        "summary": "",
        "document": {"number": "2025-05930", **document},
    }
    return Event(
        id="evt_doc",
        type="feed.entry.new",
        timestamp=DETECTED,
        data={
            "feed": "fr",
            "feed_title": "Federal Register",
            "entry": entry,
            "tags": {"origins": [], "hts": ["8708"], "rates": [], "dates": [], "chapter99": []},
            "changes": [],
            "detected_at": "2025-04-02T20:40:00Z",
        },
    )


def test_a_document_names_effective_published_and_detected() -> None:
    event = document_event(effective_on="2025-05-03", publication_date="2025-04-03")
    assert moments(event) == [
        ("effective", "2025-05-03", False),
        ("published", "2025-04-03", False),
        ("detected", "2025-04-02T20:40:00Z", True),
    ]
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/New_York"))
    email = renderer.render_email(event, subscriber_id="desk", unsubscribe_url=None)
    line = "Effective Sat 3 May 2025, published Thu 3 Apr 2025, detected Wed 2 Apr"
    assert line in " ".join(email.text.split())
    assert "detected Wed 2 Apr 2025, 4:40 PM EDT" in email.html


def test_a_public_inspection_filing_names_when_it_was_filed() -> None:
    event = document_event(publication_date="2025-04-03", filed_at="2025-04-02T08:45:00-04:00")
    assert [label for label, _, _ in moments(event)] == ["to be published", "filed", "detected"]
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/New_York"))
    email = renderer.render_email(event, subscriber_id="desk", unsubscribe_url=None)
    text = " ".join(email.text.split())
    # Its publication is still ahead: the alert must not say it was published.
    assert "To be published Thu 3 Apr 2025, filed Wed 2 Apr 2025, 8:45 AM EDT" in text
    assert "on file since Wed 2 Apr 2025, 8:45 AM EDT" in text
    assert "published Thu" not in text.replace("To be published Thu", "")
    same_day = document_event(publication_date="2025-04-02", filed_at="2025-04-02T08:45:00-04:00")
    slack = renderer.render_slack(same_day)
    assert "On file since Wed 2 Apr 2025" in slack and "Published" not in slack


def test_no_extra_line_when_everything_happened_the_same_day() -> None:
    event = document_event(publication_date="2025-04-02")
    assert moments(event) == []


def test_slack_names_effective_published_and_detected_too() -> None:
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/New_York"))
    event = document_event(effective_on="2025-05-03", publication_date="2025-04-03")
    text = renderer.render_slack(event)
    line = "Effective Sat 3 May 2025, published Thu 3 Apr 2025, detected Wed 2 Apr 2025, 4:40 PM"
    assert line in text
    same_day = renderer.render_slack(document_event(publication_date="2025-04-02"))
    assert "detected" not in same_day and "Published Wed 2 Apr 2025" in same_day
