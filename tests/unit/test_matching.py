"""Subscriber matching: the contract's filter semantics, and the bitmask index agreeing
with the one-subscriber-at-a-time reference on random subscribers and events."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.config import SubscriberSection
from notifier.core.matching import SubscriberIndex, compile_filter
from notifier.core.model import EVENT_TYPES, Event, Subscriber

NOW = datetime(2025, 5, 3, tzinfo=UTC)


def sub(sid: str, **filters: object) -> Subscriber:
    section = SubscriberSection(id=sid, email=[f"{sid}@example.com"], **filters)  # type: ignore[arg-type]
    return section.to_subscriber()


def rule_event(origins: tuple[str, ...], hts: tuple[str, ...], kind: str = "effective") -> Event:
    return Event(
        id="e", type=f"tariff.rule.{kind}", timestamp=NOW, data={}, origins=origins, hts=hts
    )


def entry_event(text: str, origins: tuple[str, ...] = (), hts: tuple[str, ...] = ()) -> Event:
    return Event(
        id="e",
        type="feed.entry.new",
        timestamp=NOW,
        data={},
        origins=origins,
        hts=hts,
        text=text,
    )


def ids(index: SubscriberIndex, event: Event) -> list[str]:
    return [s.id for s in index.match(event)]


def test_filters_combine_with_and_values_with_or() -> None:
    index = SubscriberIndex(
        [
            sub("jp-parts", origins=["JP"], hts=["8708"]),
            sub("jp-or-cn", origins=["JP", "CN"]),
            sub("steel", hts=["72"]),
            sub("everything"),
        ]
    )
    assert ids(index, rule_event(("JP",), ("8708",))) == ["jp-parts", "jp-or-cn", "everything"]
    assert ids(index, rule_event(("CN",), ("7208",))) == ["jp-or-cn", "steel", "everything"]
    assert ids(index, rule_event(("MX",), ("0101",))) == ["everything"]


def test_star_origins_and_goods_match_any_filter() -> None:
    index = SubscriberIndex([sub("jp-parts", origins=["JP"], hts=["8708"])])
    assert ids(index, rule_event(("*",), ("8708",))) == ["jp-parts"]
    assert ids(index, rule_event(("JP",), ("*",))) == ["jp-parts"]
    assert ids(index, rule_event(("*",), ("72",))) == []


def test_hts_prefixes_match_both_ways() -> None:
    index = SubscriberIndex([sub("narrow", hts=["870829"]), sub("chapter", hts=["87"])])
    assert ids(index, rule_event(("JP",), ("8708",))) == ["narrow", "chapter"]
    assert ids(index, rule_event(("JP",), ("87082950",))) == ["narrow", "chapter"]
    assert ids(index, rule_event(("JP",), ("8703",))) == ["chapter"]


def test_keywords_filter_feed_entries_only_case_insensitively() -> None:
    index = SubscriberIndex([sub("kw", keywords=["Tariff"], events=["feed.*", "tariff.*"])])
    assert ids(index, entry_event("New TARIFF on steel")) == ["kw"]
    assert ids(index, entry_event("Trade talks resume")) == []
    assert ids(index, rule_event(("JP",), ("72",))) == ["kw"]  # rule events carry no text


def test_event_globs() -> None:
    index = SubscriberIndex(
        [sub("rules", events=["tariff.rule.*"]), sub("new", events=["feed.entry.new"])]
    )
    assert ids(index, rule_event(("JP",), ("72",), kind="reminder")) == ["rules"]
    assert ids(index, entry_event("x")) == ["new"]


ORIGINS = ["JP", "CN", "MX", "CA", "EU", "DE"]
HTS = ["72", "7208", "73", "8703", "8708", "870829", "30", "8541"]
WORDS = ["tariff", "steel", "japan", "chips"]

subscribers = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "origins": st.lists(st.sampled_from(ORIGINS), min_size=1, max_size=3),
            "hts": st.lists(st.sampled_from(HTS), min_size=1, max_size=3),
            "keywords": st.lists(st.sampled_from(WORDS), min_size=1, max_size=2),
            "events": st.lists(
                st.sampled_from(["tariff.*", "feed.*", "*.new", *EVENT_TYPES]),
                min_size=1,
                max_size=2,
            ),
        },
    ),
    min_size=0,
    max_size=40,
)
events = st.builds(
    lambda kind, origins, hts, words: Event(
        id="e",
        type=kind,
        timestamp=NOW,
        data={},
        origins=tuple(origins),
        hts=tuple(hts),
        text=" ".join(words) if kind.startswith("feed.") else None,
    ),
    st.sampled_from(EVENT_TYPES),
    st.lists(st.sampled_from([*ORIGINS, "*"]), max_size=3),
    st.lists(st.sampled_from([*HTS, "*", "87082950"]), max_size=3),
    st.lists(st.sampled_from([*WORDS, "Trade", "TARIFF"]), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(raw=subscribers, event=events)
def test_index_agrees_with_the_reference_semantics(
    raw: list[dict[str, object]], event: Event
) -> None:
    subs = [sub(f"s{i}", **filters) for i, filters in enumerate(raw)]
    lowered = event.text.lower() if event.text is not None else None
    expected = [s.id for s in subs if compile_filter(s).matches(event, lowered_text=lowered)]
    assert ids(SubscriberIndex(subs), event) == expected
