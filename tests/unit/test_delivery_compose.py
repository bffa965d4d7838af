"""Render once per event, splice per recipient: the bytes are exactly those of a full
render and ``build_mime``, for every event type, both unsubscribe shapes, long and
non-ASCII content, odd subscriber ids and a user template that defeats splicing."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.core.model import Delivery, EmailMessage, Event, Subscriber
from notifier.delivery.channels.base import Outgoing
from notifier.delivery.channels.compose import EmailComposer, PreparedEmail, mime_bytes
from notifier.delivery.channels.mime import (
    build_mime,
    date_header,
    lf_lines,
    message_id_for,
    needs_quoted_printable,
    unsubscribe_headers,
)
from notifier.delivery.render import Renderer
from notifier.delivery.render.text import wrap
from tests.samples import sample_events

SENDER = "Tariff Alerts <alerts@example.com>"
ZONE = ZoneInfo("America/New_York")
SUBSCRIBERS = ("s1", "broker-desk.east_2", "a" * 60, "x")


def outgoing(event: Event, sub_id: str, *, url: bool, renderer: Renderer) -> Outgoing:
    target = f"{sub_id}@subscribers.example.com"
    delivery = Delivery(
        id=Delivery.make_id(event.id, sub_id, "email", target),
        event_id=event.id,
        subscriber_id=sub_id,
        channel="email",
        target=target,
        status="queued",
        attempts=0,
        next_at=None,
        created_at=datetime(2025, 5, 3, tzinfo=UTC),
    )
    link = f"https://alerts.example.com/unsubscribe/{sub_id}/{'ab' * 16}" if url else None
    return Outgoing(
        delivery=delivery,
        event=event,
        subscriber=Subscriber(id=sub_id, email=(target,)),
        renderer=renderer,
        unsubscribe_url=link,
    )


def direct_bytes(out: Outgoing, *, boundary: str, date_line: bytes) -> bytes:
    """What the slow path makes: a full render, then build_mime (same boundary, Date)."""
    rendered = out.renderer.render_email(
        out.event, subscriber_id=out.subscriber.id, unsubscribe_url=out.unsubscribe_url
    )
    message = EmailMessage(
        message_id=message_id_for(out.delivery.id, sender=SENDER),
        recipient=out.delivery.target,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers=unsubscribe_headers(out.unsubscribe_url),
    )
    raw = build_mime(message, sender=SENDER, boundary=boundary)
    head, _, rest = raw.partition(b"\r\nDate: ")
    return head + b"\r\nDate: " + date_line + b"\r\n" + rest.partition(b"\r\n")[2]


def parts_of(payload: bytes) -> tuple[str, bytes]:
    boundary = payload.split(b'boundary="', 1)[1].split(b'"', 1)[0].decode()
    date_line = payload.split(b"\r\nDate: ", 1)[1].split(b"\r\n", 1)[0]
    return boundary, date_line


def long_entry(event: Event) -> Event:
    """An entry with non-ASCII text and a very long unbroken line (QP in both parts)."""
    entry = dict(event.data["entry"])
    entry["summary"] = "Zölle → 25 % für Stahl. " * 40 + "x" * 1200
    entry["title"] = "Ümlaut title " + "y" * 300
    return dataclasses.replace(event, id=event.id + "-long", data={**event.data, "entry": entry})


EVENTS = [*sample_events(), long_entry(sample_events()[-2])]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.id)
@pytest.mark.parametrize("url", [True, False], ids=["unsubscribe", "no-unsubscribe"])
def test_spliced_bytes_equal_a_full_render_for_every_recipient(event: Event, url: bool) -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    composer = EmailComposer(sender=SENDER)
    for index, sub_id in enumerate(SUBSCRIBERS):
        out = outgoing(event, sub_id, url=url, renderer=renderer)
        prepared = composer.compose(out)
        if index == 0:  # an event's first recipient is rendered in full (one render)
            assert isinstance(prepared, EmailMessage)
            continue
        assert isinstance(prepared, PreparedEmail), "the fast path was not taken"
        boundary, date_line = parts_of(prepared.payload)
        assert prepared.payload == direct_bytes(out, boundary=boundary, date_line=date_line)
        assert f"Message-ID: <{out.delivery.id}@example.com>".encode() in prepared.payload
        assert f"To: {out.delivery.target}\r\n".encode() in prepared.payload
        assert (b"List-Unsubscribe: <https://" in prepared.payload) is url


def test_the_footer_is_refilled_to_width_per_recipient() -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    event = sample_events()[4]
    template = renderer.email_template(event, unsubscribe=True)
    for sub_id in SUBSCRIBERS:
        url = f"https://alerts.example.com/unsubscribe/{sub_id}/t"
        mine = renderer.personalise(template, subscriber_id=sub_id, unsubscribe_url=url)
        assert mine == renderer.render_email(event, subscriber_id=sub_id, unsubscribe_url=url)
        assert f'subscription "{sub_id}"'.replace(" ", "") in mine.text.replace(" ", "").replace(
            "\n", ""
        )
    assert template.exact is True


def test_a_template_that_transforms_the_subscriber_id_falls_back_to_full_renders(
    tmp_path: Path,
) -> None:
    # An override that upper-cases the id: substitution alone would be wrong.
    (tmp_path / "email" / "rule").mkdir(parents=True)
    (tmp_path / "email" / "rule" / "subject.txt").write_text(
        "Alert for {{ subscriber_id|upper }}: {{ title }}\n"
    )
    renderer = Renderer(override_dir=tmp_path, timezone=ZONE)
    composer = EmailComposer(sender=SENDER)
    event = sample_events()[0]
    for sub_id in ("alpha", "beta"):
        out = outgoing(event, sub_id, url=True, renderer=renderer)
        message = composer.compose(out)
        payload = mime_bytes(message, sender=SENDER)
        assert f"Alert for {sub_id.upper()}:".encode() in payload
        assert isinstance(message, EmailMessage)  # the slow path, for every recipient


def test_a_recipient_the_fast_path_cannot_spell_gets_the_slow_path() -> None:
    renderer = Renderer(override_dir=None, timezone=ZONE)
    composer = EmailComposer(sender=SENDER)
    event = sample_events()[0]
    out = outgoing(event, "s1", url=True, renderer=renderer)
    odd = dataclasses.replace(
        out, delivery=dataclasses.replace(out.delivery, target="Zoë <zoe@exämple.com>")
    )
    message = composer.compose(odd)
    payload = mime_bytes(message, sender=SENDER)
    assert b"To: =?utf-8?" in payload and b"xn--" in payload


def test_wrap_outside_a_template_is_unchanged() -> None:
    assert wrap("one two three", 7) == "one two\nthree"


_OLD_NOT_7BIT = re.compile(rb"[^\t\r\n\x20-\x7e]")


@given(
    text=st.text(
        alphabet=st.sampled_from(["a", " ", "\t", "\n", "\r", "\x00", "\x7f", "\x0c", "é", "·"]),
        max_size=40,
    ),
    long=st.sampled_from([0, 996, 997, 998, 999, 1200]),
)
def test_a_body_is_quoted_printable_exactly_when_rfc_5322_needs_it(text: str, long: int) -> None:
    # The rule as it was written first: a regex over the CRLF body and its lines.
    text = text + "x" * long + "\n" + text
    crlf = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode()
    expected = bool(_OLD_NOT_7BIT.search(crlf)) or any(len(x) > 998 for x in crlf.split(b"\r\n"))
    assert needs_quoted_printable(lf_lines(text)) is expected
    assert lf_lines(text).replace(b"\n", b"\r\n") == crlf + (
        b"" if crlf.endswith(b"\r\n") else b"\r\n"
    )


def test_the_date_header_is_the_second_of_the_moment_in_utc() -> None:
    moment = datetime(2025, 5, 3, 4, 1, 7, 999_999, tzinfo=UTC)
    assert date_header(moment) == "Date: Sat, 03 May 2025 04:01:07 +0000\r\n"
    eastern = moment.astimezone(ZoneInfo("America/New_York"))
    assert date_header(eastern) == date_header(moment.replace(microsecond=0))
    assert date_header(moment + timedelta(seconds=1)).startswith("Date: Sat, 03 May 2025 04:01:08")
