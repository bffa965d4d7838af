"""Templates -> subject, text, HTML and Slack text: wording, escaping, zones, overrides."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.core.model import EVENT_TYPES, Entry, Event, Rule, Tags
from notifier.delivery.render import (
    REQUIRED_TEMPLATES,
    Renderer,
    duration_words,
    family_of,
    hts_dotted,
    hts_label,
    origins_label,
)
from notifier.errors import ConfigError
from tests.samples import (
    AUTO_PARTS,
    UPI_ENTRY,
    UPI_TAGS,
    entry_event,
    rule_event,
    sample_event,
    sample_events,
    schedule_and_source_events,
)

NEW_YORK = ZoneInfo("America/New_York")
UNSUBSCRIBE = "https://alerts.example.com/unsubscribe/compliance-team/tok_123"


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(override_dir=None, timezone=NEW_YORK)


def _email(renderer: Renderer, event, unsubscribe_url: str | None = UNSUBSCRIBE):
    return renderer.render_email(
        event, subscriber_id="compliance-team", unsubscribe_url=unsubscribe_url
    )


def _with_rate_change(before: str, after: str):
    rule = Rule(**{**_rule_fields(AUTO_PARTS), "rate": after})
    return rule_event(
        "tariff.rule.changed",
        rule,
        timestamp=datetime(2025, 4, 1, 12, tzinfo=UTC),
        changes=[{"field": "rate", "from": before, "to": after}],
    )


def _rule_fields(rule: Rule) -> dict:
    return {name: getattr(rule, name) for name in rule.__slots__}


def test_samples_cover_every_event_type() -> None:
    types = [event.type for event in [*sample_events(), *schedule_and_source_events()]]
    assert types == list(EVENT_TYPES)


def test_every_family_has_its_templates() -> None:
    families = {family_of(t) for t in EVENT_TYPES}
    assert families == {"rule", "entry", "hts", "source"}
    for family in families:
        assert f"slack/{family}.txt" in REQUIRED_TEMPLATES
        assert f"email/{family}/body.html" in REQUIRED_TEMPLATES


def test_an_event_type_no_family_claims_is_an_error() -> None:
    with pytest.raises(ValueError, match="no template family"):
        family_of("calendar.day.new")


@pytest.mark.parametrize("event", schedule_and_source_events(), ids=lambda e: e.type)
def test_schedule_and_source_events_render_everywhere(renderer: Renderer, event: Event) -> None:
    email = _email(renderer, event)
    slack = renderer.render_slack(event)
    label = renderer._env.globals["labels"][event.type]
    name = "8708.29.51.60" if event.type.startswith("hts.") else "usitc-hts"

    assert name in email.subject and name in email.text and name in email.html
    assert email.subject.startswith(label.split()[0])
    assert email.text.endswith("\n") and "\n\n\n" not in email.text
    assert all(len(line) <= 72 or "://" in line for line in email.text.splitlines())
    assert f">{label}</span>" in email.html
    assert "compliance-team" in email.text and UNSUBSCRIBE in email.html
    assert slack.startswith(f"*{label}") and name in slack
    assert "<b>" not in email.html and "<b>" not in slack  # untrusted text stays text


def test_hts_and_source_subjects_say_what_happened(renderer: Renderer) -> None:
    subjects = {e.type: _email(renderer, e).subject for e in schedule_and_source_events()}

    assert subjects["hts.line.changed"] == (
        "HTS 8708.29.51.60 changed — general rate 2.5% → 2.5% + 25%"
    )
    assert subjects["hts.line.added"] == "New HTS line: HTS 8708.29.51.60 Of iron or steel"
    assert subjects["source.failing"] == "Source failing: usitc-hts (5 failed polls)"
    assert subjects["source.held"] == "Changes held: usitc-hts would send 342 alerts"


def test_a_held_source_names_what_it_holds_and_how_to_release_it(renderer: Renderer) -> None:
    held = schedule_and_source_events()[-1]
    text = " ".join(_email(renderer, held).text.split())

    assert "HTS line changed: 340" in text and "New HTS line: 2" in text
    assert "sources release usitc-hts" in text and "sources discard usitc-hts" in text
    assert "8708.29.51.60 general 2.5% -> 2.5% + 25%" in text


def test_a_digest_mixes_every_family(renderer: Renderer) -> None:
    events = [sample_event("tariff.rule.effective"), *schedule_and_source_events()]
    digest = renderer.render_digest(
        events, subscriber_id="ops", unsubscribe_url=None, period="daily 08:00"
    )

    assert digest.subject.startswith(f"{len(events)} tariff alerts (daily 08:00)")
    assert "HTS 8708.29.51.60 Of iron or steel" in digest.text
    assert "Source usitc-hts" in digest.text and "Source usitc-hts" in digest.html


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_every_event_type_renders_all_three_parts(renderer: Renderer, event) -> None:
    email = _email(renderer, event)
    title = (
        event.data["rule"]["title"]
        if event.type.startswith("tariff.rule.")
        else event.data["entry"]["title"]
    )
    label = renderer._env.globals["labels"][event.type]
    assert email.subject.startswith(f"{label}: ")
    assert title in email.subject
    assert title in " ".join(email.text.split())
    assert email.text.endswith("\n") and "\n\n\n" not in email.text
    assert all(len(line) <= 72 or "://" in line for line in email.text.splitlines())
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert "max-width:600px" in email.html
    assert f">{label}</span>" in email.html
    assert "compliance-team" in email.html and "compliance-team" in email.text


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_every_event_type_renders_for_slack(renderer: Renderer, event) -> None:
    text = renderer.render_slack(event)
    link = (
        event.data["rule"]["source"]
        if event.type.startswith("tariff.rule.")
        else event.data["entry"]["link"]
    )
    assert text.startswith("*")
    assert f"<{link}|" in text


def test_subjects_say_what_happened(renderer: Renderer) -> None:
    subjects = {e.type: _email(renderer, e).subject for e in sample_events()}
    assert subjects["tariff.rule.effective"] == (
        "In effect: Section 232 tariff on automobile parts (25%)"
    )
    assert subjects["tariff.rule.reminder"] == (
        "Reminder: Section 232 tariff on automobile parts takes effect in 7 days (Sat 3 May)"
    )
    assert "rate 25% → 15% (+1 more)" in subjects["tariff.rule.changed"]
    assert subjects["tariff.rule.withdrawn"].endswith("(revoked)")
    assert subjects["tariff.rule.expired"].endswith("(late: ended while the notifier was down)")
    assert subjects["feed.entry.new"] == (
        "New notice: Japan, U.S. begin tariff talks as 25% auto duties bite"
    )


def test_late_effective_event_says_so_everywhere(renderer: Renderer) -> None:
    event = rule_event(
        "tariff.rule.effective",
        AUTO_PARTS,
        timestamp=datetime(2025, 5, 3, 9, 30, tzinfo=UTC),
        transition_at=AUTO_PARTS.effective.isoformat(),
        late=True,
    )
    email = _email(renderer, event)
    assert email.subject.endswith("(late: took effect while the notifier was down)")
    assert "Late alert:" in email.text
    assert "Late alert." in email.html
    on_time = _email(renderer, sample_event("tariff.rule.effective"))
    assert "late" not in on_time.subject and "Late alert" not in on_time.html


def test_script_in_feed_entry_is_escaped_in_html(renderer: Renderer) -> None:
    hostile = Entry(
        key="x1",
        title="Tariffs <script>alert('t')</script> & more",
        link="https://example.com/a?b=1&c=2",
        published=None,
        summary="Before <script>steal()</script> after & <b>bold</b>",
        content_hash="h",
    )
    event = entry_event(
        "feed.entry.new",
        hostile,
        Tags(),
        timestamp=datetime.now(UTC),
        feed_title='<img src=x onerror="alert(1)">',
    )
    email = _email(renderer, event)
    assert "&lt;script&gt;" in email.html
    assert "<img" not in email.html and "&lt;img src=x" in email.html
    assert "<script" not in email.html.lower()
    assert "<b>bold" not in email.html
    assert "&amp; more" in email.html
    assert 'href="https://example.com/a?b=1&amp;c=2"' in email.html
    # The text part is plain text: it shows the characters as they are.
    assert "<script>steal()</script>" in email.text
    digest = renderer.render_digest(
        [event], subscriber_id="s", unsubscribe_url=None, period="daily 08:00"
    )
    assert "&lt;script&gt;" in digest.html and "<script" not in digest.html.lower()
    slack = renderer.render_slack(event)
    assert "&lt;script&gt;" in slack and "<script" not in slack


def test_subject_is_one_line_even_when_the_title_has_line_breaks(renderer: Renderer) -> None:
    rule = Rule(**{**_rule_fields(AUTO_PARTS), "title": "Steel\r\nand aluminum\n\tderivatives"})
    event = rule_event("tariff.rule.announced", rule, timestamp=datetime(2025, 3, 1, tzinfo=UTC))
    subject = _email(renderer, event).subject
    assert "\r" not in subject and "\n" not in subject and "\t" not in subject
    assert "Steel and aluminum derivatives" in subject
    entry = Entry("k", "Line one\r\nBcc: victim@example.com", "", None, "", "h")
    event = entry_event("feed.entry.new", entry, Tags(), timestamp=datetime.now(UTC))
    assert _email(renderer, event).subject == "New notice: Line one Bcc: victim@example.com"


def test_times_are_shown_in_the_configured_zone() -> None:
    event = sample_event("tariff.rule.effective")  # 2025-05-03T00:01-04:00 = 04:01 UTC
    new_york = _email(Renderer(override_dir=None, timezone=NEW_YORK), event)
    tokyo = _email(Renderer(override_dir=None, timezone=ZoneInfo("Asia/Tokyo")), event)
    assert "Sat 3 May 2025, 12:01 AM EDT" in new_york.text
    assert "Sat 3 May 2025, 12:01 AM EDT" in new_york.html
    assert "Sat 3 May 2025, 1:01 PM JST" in tokyo.text
    assert "Sat 3 May 2025, 1:01 PM JST" in tokyo.html
    assert "EDT" not in tokyo.text
    assert "Asia/Tokyo" in tokyo.text


def test_zone_without_a_letter_abbreviation_reads_as_utc_offset() -> None:
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/Sao_Paulo"))
    assert renderer.localtime("2025-05-03T04:01:00Z") == "Sat 3 May 2025, 1:01 AM UTC-03"


def test_changed_rate_shows_old_and_new_side_by_side(renderer: Renderer) -> None:
    email = _email(renderer, _with_rate_change("10%", "25%"))
    assert "rate 10% → 25%" in email.subject
    assert re.search(r"Rate:\s+10% → 25%", email.text)
    # One table row holds both tiles: "Before 10%" then "Now 25%".
    rows = re.findall(r"<tr>(.*?)</tr>", email.html, flags=re.S)
    tiles = [row for row in rows if ">Before<" in row and ">Now<" in row and "&rarr;" in row]
    assert len(tiles) == 1
    assert re.search(r">10%<.*&rarr;.*>25%<", tiles[0], flags=re.S)
    assert "line-through" in tiles[0].split("&rarr;")[0]


def test_changes_table_lists_every_field_change(renderer: Renderer) -> None:
    event = sample_event("tariff.rule.changed")
    email = _email(renderer, event)
    assert "What changed" in email.html
    for change in event.data["changes"]:
        assert f">{change['from']}</td>" in email.html
        assert f">{change['to']}</td>" in email.html


def test_unsubscribe_footer_only_when_a_url_is_given(renderer: Renderer) -> None:
    for event in sample_events():
        with_link = _email(renderer, event, UNSUBSCRIBE)
        assert f'href="{UNSUBSCRIBE}"' in with_link.html and ">Unsubscribe</a>" in with_link.html
        assert f"Unsubscribe:\n{UNSUBSCRIBE}\n" in with_link.text
        without = _email(renderer, event, None)
        assert "Unsubscribe" not in without.html and "Unsubscribe" not in without.text
        assert 'subscription "compliance-team" matches' in without.text


def test_links_sit_on_their_own_line_in_text(renderer: Renderer) -> None:
    email = _email(renderer, sample_event("tariff.rule.changed"))
    source = sample_event("tariff.rule.changed").data["rule"]["source"]
    assert f"\n{source}\n" in email.text


def test_rule_scope_is_shown_with_names_and_dotted_codes(renderer: Renderer) -> None:
    email = _email(renderer, sample_event("tariff.rule.changed"))
    assert "Japan (JP)" in email.html and "8704.21" in email.html
    assert "870421" not in email.text
    wildcard = _email(renderer, sample_event("tariff.rule.withdrawn"))
    assert "All countries" in wildcard.html and "All goods" in wildcard.html
    assert re.search(r"Origins:\s+all countries", wildcard.text)


def test_optional_notes_are_rendered_when_present(renderer: Renderer) -> None:
    event = sample_event("tariff.rule.announced")
    data = {**event.data, "rule": {**event.data["rule"], "notes": "USMCA parts exempt."}}
    noted = rule_event("tariff.rule.announced", AUTO_PARTS, timestamp=event.timestamp)
    noted = type(noted)(**{**{s: getattr(noted, s) for s in noted.__slots__}, "data": data})
    assert "USMCA parts exempt." in _email(renderer, noted).html
    assert "USMCA parts exempt." in _email(renderer, noted).text


def test_feed_entry_shows_feed_published_and_tag_chips(renderer: Renderer) -> None:
    email = _email(renderer, sample_event("feed.entry.new"))
    assert "UPI World News" in email.html
    assert "Wed 16 Apr 2025, 10:30 PM EDT" in email.html  # 02:30 UTC on the 17th
    assert "Japan (JP)" in email.html and "United States (US)" in email.html
    assert f'href="{UPI_ENTRY.link}"' in email.html
    assert "Sat 3 May 2025" in email.text  # the tagged date, not shifted by the zone


def test_digest_lists_every_event_with_the_period(renderer: Renderer) -> None:
    events = sample_events()
    digest = renderer.render_digest(
        events, subscriber_id="team", unsubscribe_url=UNSUBSCRIBE, period="daily 08:00"
    )
    assert digest.subject.startswith(f"{len(events)} tariff alerts (daily 08:00): ")
    assert "\n" not in digest.subject
    assert "daily 08:00" in digest.html and "daily 08:00" in digest.text
    for event in events:
        title = (event.data.get("rule") or event.data.get("entry"))["title"]
        assert title in " ".join(digest.text.split())
    assert UNSUBSCRIBE in digest.html
    one = renderer.render_digest(
        [events[0]], subscriber_id="team", unsubscribe_url=None, period="daily 08:00"
    )
    assert one.subject == _email(renderer, events[0]).subject


def test_slack_escapes_control_characters(renderer: Renderer) -> None:
    entry = Entry("k", "A | B & <C>", "https://example.com/x|y", None, "", "h")
    event = entry_event("feed.entry.new", entry, UPI_TAGS, timestamp=datetime.now(UTC))
    text = renderer.render_slack(event)
    assert "<https://example.com/x%7Cy|A ¦ B &amp; &lt;C&gt;>" in text


def test_override_folder_wins_over_shipped_templates(tmp_path: Path) -> None:
    (tmp_path / "email" / "rule").mkdir(parents=True)
    (tmp_path / "email" / "rule" / "subject.txt").write_text("[ACME] {{ rule.title }}\n")
    renderer = Renderer(override_dir=tmp_path, timezone=NEW_YORK)
    email = _email(renderer, sample_event("tariff.rule.effective"))
    assert email.subject == "[ACME] Section 232 tariff on automobile parts"
    assert "Read the source document" in email.html  # the rest still comes from the shipped set


def test_syntax_error_in_override_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "email" / "entry" / "body.html"
    broken.parent.mkdir(parents=True)
    broken.write_text("<p>\n{{ entry.title }}\n{{ entry.link | }}\n<p>end</p>\n")
    renderer = Renderer(override_dir=tmp_path, timezone=NEW_YORK)
    with pytest.raises(ConfigError) as caught:
        renderer.check()
    assert Path(caught.value.file or "") == broken
    assert caught.value.line == 3
    assert str(broken) in str(caught.value)
    with pytest.raises(ConfigError):
        _email(renderer, sample_event("feed.entry.new"))


def test_unknown_variable_in_override_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "email" / "rule").mkdir(parents=True)
    (tmp_path / "email" / "rule" / "subject.txt").write_text("ok\n{{ rule.titel }}\n")
    renderer = Renderer(override_dir=tmp_path, timezone=NEW_YORK)
    assert renderer.check() >= len(REQUIRED_TEMPLATES)  # compiles fine...
    with pytest.raises(ConfigError) as caught:  # ...but StrictUndefined stops the render
        _email(renderer, sample_event("tariff.rule.effective"))
    assert caught.value.line == 2
    assert "titel" in str(caught.value)


def test_check_compiles_every_shipped_template(renderer: Renderer) -> None:
    assert renderer.check() >= len(REQUIRED_TEMPLATES)


def test_missing_required_template_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    from notifier import resources

    monkeypatch.setattr(resources, "shipped_path", lambda name: tmp_path)
    with pytest.raises(ConfigError, match="template not found"):
        Renderer(override_dir=None, timezone=NEW_YORK).check()


@pytest.mark.parametrize(
    ("code", "dotted"),
    [
        ("8708", "8708"),
        ("870421", "8704.21"),
        ("87042100", "8704.21.00"),
        ("8704210010", "8704.21.00.10"),
        ("72", "72"),
        ("8704.21", "8704.21"),
        ("*", "*"),
    ],
)
def test_hts_dotted(code: str, dotted: str) -> None:
    assert hts_dotted(code) == dotted


def test_scope_labels() -> None:
    assert hts_label(["*"]) == "all goods"
    assert hts_label(["72", "870421"]) == "chapter 72, 8704.21"
    assert origins_label(["*"]) == "all countries"
    assert origins_label(["JP", "US"]) == "Japan (JP), United States (US)"
    assert origins_label(["XX"]) == "XX"
    assert origins_label("EU") == "European Union (EU)"


def test_duration_words() -> None:
    assert duration_words("7d") == "7 days"
    assert duration_words("1d") == "1 day"
    assert duration_words("1w") == "1 week"
    assert duration_words("90m") == "90 minutes"
    assert duration_words("1d12h") == "1d12h"


def test_localtime_format(renderer: Renderer) -> None:
    assert renderer.localtime("2025-05-03T00:01:00-04:00") == "Sat 3 May 2025, 12:01 AM EDT"
    assert renderer.localtime("2026-01-01T17:30:00Z") == "Thu 1 Jan 2026, 12:30 PM EST"
    assert renderer.localtime(datetime(2025, 7, 4, 16, 0, tzinfo=UTC)) == (
        "Fri 4 Jul 2025, 12:00 PM EDT"
    )
    assert renderer.localtime(None) == "—"


def test_month_only_date_tags_render(renderer: Renderer) -> None:
    """The tagger emits "2025-07" for "in July": an email must still render."""
    base = sample_event("feed.entry.new")
    data = {**base.data, "tags": {**base.data["tags"], "dates": ["2025-07", "2025-05-03"]}}
    event = replace(base, data=data)
    rendered = _email(renderer, event)
    assert "July 2025" in rendered.text and "July 2025" in rendered.html


def test_a_body_cached_by_event_id_is_not_served_for_other_data(renderer: Renderer) -> None:
    # Event ids are stable across stores: a rule's reminder has the same id everywhere. The
    # demo, run in a process that had rendered the same reminder marked late for another
    # store, sent that stale body (late: true) until the cache checked the event itself.
    on_time = sample_event("tariff.rule.reminder")
    late = replace(on_time, data={**on_time.data, "late": True, "late_by_s": 604800})
    first = json.loads(renderer.webhook_body(late))
    again = json.loads(renderer.webhook_body(on_time))
    assert first["data"]["late"] is True and again["data"]["late"] is False
    assert "late_by_s" not in again["data"]
    # The same event again is served from the cache, byte for byte.
    assert renderer.webhook_body(on_time) is renderer.webhook_body(on_time)


def test_compiled_templates_are_kept_for_the_next_process_and_an_edit_recompiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jinja2

    compiled: list[str | None] = []
    original = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None, *a, **k):  # type: ignore[no-untyped-def]
        compiled.append(name)
        return original(self, source, name, *a, **k)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    zone = ZoneInfo("America/New_York")
    overrides = tmp_path / "templates"
    (overrides / "email" / "rule").mkdir(parents=True)
    subject = overrides / "email" / "rule" / "subject.txt"
    subject.write_text("Rule: {{ title }}\n")
    cache = tmp_path / "state" / "cache" / "templates"

    first = Renderer(override_dir=overrides, timezone=zone, bytecode_dir=cache).check()
    assert len(compiled) >= first >= 22 and any(cache.iterdir())
    compiled.clear()
    # A new process (a new Renderer) loads them instead of compiling.
    Renderer(override_dir=overrides, timezone=zone, bytecode_dir=cache).check()
    assert compiled == []
    # An edited template is compiled again, and only that one.
    subject.write_text("Edited rule: {{ title }}\n")
    edited = Renderer(override_dir=overrides, timezone=zone, bytecode_dir=cache)
    edited.check()
    assert compiled == ["email/rule/subject.txt"]
    email = edited.render_email(
        sample_event("tariff.rule.changed"), subscriber_id="s", unsubscribe_url=None
    )
    assert email.subject.startswith("Edited rule:")


def test_a_template_cache_that_cannot_be_written_or_read_only_costs_a_compile(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    zone = ZoneInfo("America/New_York")
    # The cache folder would have to live under a file: nothing can be written there.
    assert Renderer(override_dir=None, timezone=zone, bytecode_dir=blocker / "c").check() >= 22
    # A damaged cache entry is compiled anew.
    cache = tmp_path / "cache"
    Renderer(override_dir=None, timezone=zone, bytecode_dir=cache).check()
    for entry in cache.iterdir():
        entry.write_bytes(entry.read_bytes()[:40])
    renderer = Renderer(override_dir=None, timezone=zone, bytecode_dir=cache)
    assert renderer.check() >= 22
    assert renderer.render_email(
        sample_event("tariff.rule.changed"), subscriber_id="s", unsubscribe_url=None
    )
