"""The HTS export parser and its events (pure): fixtures hts_v1.json / hts_v2.json in
tests/data/sources/ (shape: the USITC HTS REST ``exportList`` JSON, see its README.md)."""

from __future__ import annotations

import json
import random
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.config import FeedSection
from notifier.core.model import Entry
from notifier.errors import FetchError
from notifier.sources.base import Change
from notifier.sources.hts import HtsKind, parse_hts_export

DATA = Path(__file__).parent.parent / "data" / "sources"
NOW = datetime(2025, 5, 3, 4, 1, tzinfo=UTC)
FEED = FeedSection(id="hts-autos", url="https://hts.usitc.gov/reststop/exportList", kind="hts")


def lines(name: str) -> dict[str, Entry]:
    return {e.key: e for e in parse_hts_export((DATA / name).read_bytes()).entries}


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[Change]:
    """What the job's diff hands a kind: new, updated (with the stored previous) and
    removed (an entry rebuilt from the store: key, title, summary, hash)."""
    changes = []
    for key, entry in after.items():
        old = before.get(key)
        if old is None:
            changes.append(Change("new", entry))
        elif old.content_hash != entry.content_hash:
            changes.append(Change("updated", entry, (old.content_hash, old.title, old.summary)))
    for key, old in before.items():
        if key not in after:
            stored = (old.content_hash, old.title, old.summary)
            gone = Entry(key, old.title, "", None, old.summary, old.content_hash)
            changes.append(Change("removed", gone, stored))
    return changes


def test_lines_have_full_description_paths_and_keep_only_numbered_rows() -> None:
    v1 = lines("hts_v1.json")
    assert "" not in v1
    line = v1["8708.29.50"].details["line"]
    assert line["description"] == (
        "Parts and accessories of the motor vehicles of headings 8701 to 8705 > "
        "Other parts and accessories > Other parts and accessories of bodies (including cabs) "
        "> Other"
    )
    assert v1["8708.29.50"].title == line["description"]
    assert (line["general"], line["other"], line["units"]) == ("2.5%", "25%", "X")
    assert line["footnotes"] == "See 9903.94.05."
    assert line["applies_to"] == ("8708",) and line["origins"] == ("*",)
    assert v1["8703.23.01.90"].details["line"]["units"] == "No."  # the addiitionalDuties row


def test_the_summary_is_the_canonical_json_of_the_compared_fields() -> None:
    entry = lines("hts_v1.json")["8708.29.50"]
    fields = json.loads(entry.summary)
    assert sorted(fields) == ["description", "footnotes", "general", "other", "special", "units"]
    assert fields["general"] == "2.5%"


def test_chapter_99_applies_to_named_headings_and_footnote_pointers() -> None:
    v1 = lines("hts_v1.json")
    assert "8703" in v1["9903.94.01"].details["line"]["applies_to"]
    # 8708.29.50 and 8708.30.50 say "See 9903.94.05.": their heading goes there
    assert v1["9903.94.05"].details["line"]["applies_to"] == ("8708",)
    japan = v1["9903.94.40"].details["line"]
    assert japan["origins"] == ("JP",) and japan["applies_to"] == ("8703",)


def test_one_rate_change_is_exactly_one_changed_event_with_the_field_diff() -> None:
    changes = diff(lines("hts_v1.json"), lines("hts_v2.json"))
    events = HtsKind().events(FEED, changes, now=NOW, tagger=None)  # type: ignore[arg-type]
    changed = [e for e in events if e.type == "hts.line.changed"]
    assert len(changed) == 1
    event = changed[0]
    assert event.data["changes"] == [{"field": "general", "from": "2.5%", "to": "3%"}]
    assert event.data["line"]["htsno"] == "8708.29.50"
    assert event.data["line"]["applies_to"] == ["8708"]
    assert event.data["feed"] == "hts-autos" and event.data["detected_at"] == "2025-05-03T04:01:00Z"
    assert event.hts == ("87082950", "8708") and event.origins == ("*",)
    assert event.text == event.data["line"]["description"]
    assert event.id.startswith("evt_")
    again = HtsKind().events(FEED, changes, now=NOW, tagger=None)  # type: ignore[arg-type]
    assert [e.id for e in again] == [e.id for e in events]  # ids are what the event is


def test_a_line_gone_from_the_export_is_a_removed_event() -> None:
    changes = diff(lines("hts_v1.json"), lines("hts_v2.json"))
    events = HtsKind().events(FEED, changes, now=NOW, tagger=None)  # type: ignore[arg-type]
    removed = [e for e in events if e.type == "hts.line.removed"]
    assert [e.data["line"]["htsno"] for e in removed] == ["8708.40.11"]
    line = removed[0].data["line"]
    assert line["general"] == "Free" and line["applies_to"] == ["8708"]
    assert removed[0].data["changes"] == []
    assert {e.type for e in events} == {"hts.line.changed", "hts.line.removed"}


def test_a_new_line_is_an_added_event() -> None:
    v1 = lines("hts_v1.json")
    before = {k: v for k, v in v1.items() if k != "9903.94.40"}
    events = HtsKind().events(FEED, diff(before, v1), now=NOW, tagger=None)  # type: ignore[arg-type]
    assert [(e.type, e.origins) for e in events] == [("hts.line.added", ("JP",))]
    assert events[0].hts == ("99039440", "8703")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ((DATA / "hts_malformed.json").read_bytes(), "not a JSON array"),
        (b"<html>maintenance</html>", "not a JSON array"),
        (b'[{"htsno": "8708", "indent": "0", "description": "x"}', "not valid JSON"),
        (b'[{"htsno": "8708", "description": "x"}]', "row 1 lacks indent"),
        (b'[{"htsno": "8708", "indent": "zero", "description": "x"}]', "`indent` is not"),
        (b'[{"htsno": "", "indent": "0", "description": "x"}]', "no lines"),
        (b"[]", "no lines"),
    ],
)
def test_a_malformed_export_fails_naming_what_was_expected(body: bytes, expected: str) -> None:
    with pytest.raises(FetchError, match=expected):
        parse_hts_export(body)


def generated_export(target_bytes: int) -> bytes:
    """A plausible export of about ``target_bytes`` (bench/bench_hts_export.py makes
    bigger ones the same way)."""
    rng = random.Random(7)
    rows = []
    size = 0
    number = 0
    while size < target_bytes:
        heading = f"{(number // 50) % 97 + 1:02d}{number % 99 + 1:02d}"
        words = " ".join(rng.choice(("steel", "parts", "other", "of iron")) for _ in range(8))
        row = {
            "htsno": f"{heading}.{number % 90 + 10:02d}.{rng.randint(10, 99)}",
            "indent": str(number % 3),
            "description": words,
            "superior": None,
            "units": ["kg"],
            "general": rng.choice(("Free", "2.5%", "25%")),
            "special": "Free (A+,AU,B,BH,CA,CL,CO,D,E,IL,JO,KR,MA,MX,OM,P,PA,PE,S,SG)",
            "other": "35%",
            "footnotes": [{"columns": ["general"], "value": "See 9903.94.05.", "type": "endnote"}],
            "quotaQuantity": None,
            "additionalDuties": None,
        }
        text = json.dumps(row)
        rows.append(text)
        size += len(text) + 2
        number += 1
    return ("[\n" + ",\n".join(rows) + "\n]").encode()


@pytest.mark.parametrize(
    ("body_mb", "min_lines"),
    [
        pytest.param(5, 10_000, id="5MB"),
        # The 40 MB export (about 3x the real schedule's lines): ~45 s traced on
        # two busy cores, so it runs with `pytest -m heavy`; docs/benchmarks.md has its
        # untraced parse time and peak RSS.
        pytest.param(40, 100_000, marks=[pytest.mark.heavy, pytest.mark.timeout(300)], id="40MB"),
    ],
)
def test_the_streaming_parse_holds_little_beyond_what_it_returns(
    body_mb: int, min_lines: int
) -> None:
    body = generated_export(body_mb * 2**20)
    tracemalloc.start()
    try:
        parsed = parse_hts_export(body)
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(parsed.entries) > min_lines
    # json.loads of the body alone would add ~5x the body; streaming adds well under 1x
    # on top of the entries it returns.
    assert peak - retained < 0.75 * len(body)
    assert peak < 8 * len(body)
