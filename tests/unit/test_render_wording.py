"""``say`` words each alert once per email: its results are kept per macro and
arguments for the parts of one email, never across emails, and an operator's
``_macros.txt`` still decides the wording."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from markupsafe import escape

from notifier.delivery.render import Renderer
from notifier.delivery.render.wording import OneEmailWording, Wording
from tests.samples import sample_event, sample_events

ZONE = ZoneInfo("America/New_York")
SHIPPED_MACROS = Path(__file__).parents[2] / "templates" / "email" / "_macros.txt"


def counted(renderer: Renderer, name: str) -> list[tuple[Any, ...]]:
    """The calls that reach the macro ``name`` itself (not the kept results)."""
    wording: Wording = renderer._wording
    macro: Callable[..., str] = getattr(wording, name)
    calls: list[tuple[Any, ...]] = []

    def counting(*args: Any) -> str:
        calls.append(args)
        return macro(*args)

    setattr(wording, name, counting)
    return calls


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_the_subject_and_headline_are_worded_once_per_email(event: Any) -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    subjects, headlines = counted(renderer, "subject"), counted(renderer, "headline")
    email = renderer.render_email(event, subscriber_id="s1", unsubscribe_url=None)
    assert len(subjects) == 1 and len(headlines) == 1
    assert f"<title>{escape(email.subject)}</title>" in email.html  # the same subject
    renderer.render_email(event, subscriber_id="s1", unsubscribe_url=None)
    assert len(subjects) == 2 and len(headlines) == 2  # nothing kept across emails


def test_results_are_kept_per_macro_and_arguments(tmp_path: Path) -> None:
    body = tmp_path / "email" / "rule" / "body.txt"
    body.parent.mkdir(parents=True)
    body.write_text(
        "{{ say.reason(alert, 'desk-a') }}\n{{ say.reason(alert, 'desk-b') }}\n"
        "{{ say.reason(alert, subscriber_id) }}\n{{ say.headline(alert) }}\n"
    )
    renderer = Renderer(override_dir=tmp_path, timezone=ZONE)
    text = renderer.render_email(
        sample_event("tariff.rule.effective"), subscriber_id="me", unsubscribe_url=None
    ).text
    lines = text.splitlines()
    assert '"desk-a"' in lines[0] and '"desk-b"' in lines[1] and '"me"' in lines[2]
    assert lines[3].startswith("The 25% rate is in effect")


def test_a_digest_words_each_of_its_alerts() -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    events = sample_events()
    headlines = counted(renderer, "headline")
    digest = renderer.render_digest(
        events, subscriber_id="s", unsubscribe_url=None, period="daily 08:00"
    )
    # Each alert once, although the text and the HTML both show every headline.
    assert len(headlines) == len(events)
    assert "New in UPI World News" in digest.html


def test_an_override_of_the_wording_is_used_everywhere(tmp_path: Path) -> None:
    macros = tmp_path / "email" / "_macros.txt"
    macros.parent.mkdir(parents=True)
    shipped = SHIPPED_MACROS.read_text()
    macros.write_text(
        shipped.replace("In effect: {{ r.title }}", "NOW LIVE: {{ r.title|upper }}")
        .replace("You receive this because", "ACME sends this because")
        .replace(
            'rate {{ "took effect" if a.late else "is in effect as of" }}', "rate applies from"
        )
    )
    renderer = Renderer(override_dir=tmp_path, timezone=ZONE)
    event = sample_event("tariff.rule.effective")
    email = renderer.render_email(event, subscriber_id="s1", unsubscribe_url=None)
    assert email.subject == "NOW LIVE: SECTION 232 TARIFF ON AUTOMOBILE PARTS (25%)"
    assert "<title>NOW LIVE: SECTION 232" in email.html
    assert "ACME sends this because" in email.text and "ACME sends this because" in email.html
    assert "The 25% rate applies from Sat 3 May" in renderer.render_slack(event)
    assert "The 25% rate applies from Sat 3 May" in email.html
    # Once per event, spliced per recipient: the override holds there too.
    template = renderer.email_template(event, unsubscribe=False)
    mine = renderer.personalise(template, subscriber_id="s2", unsubscribe_url=None)
    assert mine.subject == email.subject and "ACME sends this because" in mine.text


def test_arguments_are_held_so_their_identity_cannot_be_reused() -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    say = OneEmailWording(renderer._wording)
    first = say.late_by({"data": {"late_by_s": 120}})
    # The first dict is held by the kept result, so this new one has another id.
    second = say.late_by({"data": {"late_by_s": 7200}})
    assert (first, second) == ("2 minutes", "2 hours")


def test_a_macro_that_does_not_exist_is_an_error() -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    with pytest.raises(AttributeError):
        _ = OneEmailWording(renderer._wording).no_such_macro
    with pytest.raises(AttributeError):
        _ = renderer._wording._private
