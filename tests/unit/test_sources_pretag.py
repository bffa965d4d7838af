"""Entries tagged in a parse worker make the same events as entries tagged in place
(notifier/sources/tagging/remote.py, Pretagged in notifier/sources/events.py)."""

from __future__ import annotations

import asyncio
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from notifier.config import FeedSection
from notifier.core.entries import Change
from notifier.core.model import Entry, Tags
from notifier.errors import FetchError
from notifier.runtime.polls import TAG_REMOTELY_FROM, SourceJobs
from notifier.sources.events import Pretagged, entry_events, tagged_texts
from notifier.sources.hts import HtsKind
from notifier.sources.rss import RssKind
from notifier.sources.tagging import Tagger, default_gazetteer_path, load_gazetteer
from notifier.sources.tagging.gazetteer import GazetteerFiles
from notifier.sources.tagging.remote import StaleGazetteer, TagBatches, tag_remotely

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FEED = FeedSection.model_validate({"id": "trade-news", "url": "https://news.example.test/feed"})


def entry(key: str, title: str, summary: str, published: str | None) -> Entry:
    return Entry(
        key=key, title=title, link="", published=published, summary=summary, content_hash=key
    )


CHANGES = [
    Change("new", entry("a", "Steel From Japan", "25 percent from May 3", "2025-04-01T00:00:00Z")),
    Change("new", entry("b", "Aluminum foil from China", "heading 7607 in June", None)),
    Change(
        "updated",
        entry("c", "Auto parts from Mexico", "9903.01.25 applies", None),
        ("old", "Auto parts", "old summary"),
    ),
    Change("removed", entry("d", "Gone", "", None), ("d", "Gone", "")),
]


def test_tagged_texts_are_what_entry_events_tags() -> None:
    asked: list[tuple[str, datetime | None]] = []

    class Recording:
        def tag(self, text: str, *, reference: datetime | None = None) -> Tags:
            asked.append((text, reference))
            return Tags()

    entry_events(FEED, CHANGES, now=NOW, tagger=Recording())
    assert asked == tagged_texts(CHANGES, now=NOW)
    assert len(asked) == 3  # a removed entry is no event


def test_events_from_worker_tags_equal_events_tagged_here() -> None:
    tagger = Tagger.from_files()
    assert tagger.files is not None
    texts = tagged_texts(CHANGES, now=NOW)
    # What crosses the process boundary: the request and the answer are pickled.
    request = pickle.loads(pickle.dumps((tagger.files, None, texts)))
    answer = pickle.loads(pickle.dumps(tag_remotely(*request)))
    pretagged = Pretagged(tagger, dict(zip(texts, answer, strict=True)))
    assert entry_events(FEED, CHANGES, now=NOW, tagger=pretagged) == entry_events(
        FEED, CHANGES, now=NOW, tagger=tagger
    )


def test_a_text_not_tagged_beforehand_is_tagged_here() -> None:
    tagger = Tagger.from_files()
    pretagged = Pretagged(tagger, {})
    assert pretagged.tag("Steel from Japan", reference=NOW) == tagger.tag(
        "Steel from Japan", reference=NOW
    )


def test_a_worker_never_tags_with_lists_other_than_the_askers(tmp_path: Path) -> None:
    words = tmp_path / "words.toml"
    words.write_text('[product]\nwidgets = { terms = ["widget"], hts = ["8479"] }\n')
    asked = GazetteerFiles.now((default_gazetteer_path(), words))
    # A worker that read the lists as the asker did keeps them (one tagger per process).
    assert tag_remotely(asked, None, [("widgets", None)])[0].hts == ("8479",)
    words.write_text('[product]\nwidgets = { terms = ["widget"], hts = ["8480"] }\n')
    stamp = asked.stamps[1] + 1_000_000_000
    os.utime(words, ns=(stamp, stamp))  # edited after the asker read it
    assert tag_remotely(asked, None, [("widgets", None)])[0].hts == ("8479",)
    # A worker that reads them only now would read other lists: it refuses.
    before = GazetteerFiles(asked.paths, (asked.stamps[0], asked.stamps[1] - 1))
    with pytest.raises(StaleGazetteer):
        tag_remotely(before, None, [("widgets", None)])
    with pytest.raises(StaleGazetteer):  # and says so again at no cost
        tag_remotely(before, None, [("widgets", None)])


def test_a_tagger_knows_the_files_it_was_read_from() -> None:
    assert Tagger.from_files().files == GazetteerFiles.now((default_gazetteer_path(),))


class StubNotifier:
    """What SourceJobs._tagger uses of a Notifier: its parse pool."""

    def __init__(self, parse: Any) -> None:
        self.parse = parse


MANY = [
    Change("new", entry(str(n), f"Steel from Japan {n}", f"{n} percent", None))
    for n in range(TAG_REMOTELY_FROM)
]


async def test_a_poll_has_its_entries_tagged_in_a_worker(tmp_path: Path) -> None:
    tagger = Tagger.from_files()
    rt: Any = SimpleNamespace(tagger=tagger, config=SimpleNamespace(state_dir=tmp_path))
    calls: list[Any] = []

    async def parse(fn: Any, *args: Any) -> Any:
        calls.append(args[1])  # the cache folder the worker is told to use
        return fn(*args)

    jobs = SourceJobs(cast(Any, StubNotifier(parse)))
    pretagged = await jobs._tagger(rt, RssKind(), MANY, now=NOW)
    assert isinstance(pretagged, Pretagged)
    assert calls == [tmp_path / "cache" / "tagger"]
    assert entry_events(FEED, MANY, now=NOW, tagger=pretagged) == entry_events(
        FEED, MANY, now=NOW, tagger=tagger
    )
    # A dry run writes nothing, not even a cache.
    await SourceJobs(cast(Any, StubNotifier(parse)), write=False)._tagger(
        rt, RssKind(), MANY, now=NOW
    )
    assert calls[-1] is None


async def test_a_poll_tags_here_when_a_worker_would_not_pay_or_fails(tmp_path: Path) -> None:
    tagger = Tagger.from_files()
    rt: Any = SimpleNamespace(tagger=tagger, config=SimpleNamespace(state_dir=tmp_path))

    async def broken(fn: Any, *args: Any) -> Any:
        raise FetchError("the parse worker died (replaced)")

    async def unused(fn: Any, *args: Any) -> Any:
        raise AssertionError("no worker should be asked")

    assert (
        await SourceJobs(cast(Any, StubNotifier(broken)))._tagger(rt, RssKind(), MANY, now=NOW)
        is tagger
    )
    few = MANY[: TAG_REMOTELY_FROM - 1]
    jobs = SourceJobs(cast(Any, StubNotifier(unused)))
    assert await jobs._tagger(rt, RssKind(), few, now=NOW) is tagger
    assert await jobs._tagger(rt, HtsKind(), MANY, now=NOW) is tagger  # it tags nothing
    unknown: Any = SimpleNamespace(
        tagger=Tagger(load_gazetteer(default_gazetteer_path())), config=rt.config
    )
    assert await jobs._tagger(unknown, RssKind(), MANY, now=NOW) is unknown.tagger


async def test_concurrent_polls_share_one_round_trip_and_get_their_own_tags() -> None:
    tagger = Tagger.from_files()
    assert tagger.files is not None
    calls: list[int] = []

    async def parse(fn: Any, *args: Any) -> Any:
        calls.append(len(args[2]))
        return fn(*args)

    batches = TagBatches(parse, batch_texts=1000, wait_s=0.01)
    requests = [[(f"steel from Japan, {n} percent", NOW)] * (n + 1) for n in range(5)]
    answers = await asyncio.gather(*(batches.tag(tagger.files, None, r) for r in requests))
    assert calls == [15]  # one round trip for the five polls
    for request, answer in zip(requests, answers, strict=True):
        assert answer == [tagger.tag(text, reference=ref) for text, ref in request]


async def test_a_full_batch_goes_at_once_and_a_failure_reaches_every_poll() -> None:
    tagger = Tagger.from_files()
    assert tagger.files is not None
    calls: list[int] = []

    async def broken(fn: Any, *args: Any) -> Any:
        calls.append(len(args[2]))
        raise FetchError("the parse worker died (replaced)")

    batches = TagBatches(broken, batch_texts=3, wait_s=60)  # the timer never fires here
    texts = [("steel", NOW), ("aluminum", NOW)]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(batches.tag(tagger.files, None, texts) for _ in range(2)), return_exceptions=True
        ),
        timeout=5,
    )
    assert calls == [4]
    assert all(isinstance(r, FetchError) for r in results)


async def test_a_poll_cancelled_while_waiting_leaves_the_others_their_tags() -> None:
    tagger = Tagger.from_files()
    assert tagger.files is not None
    release, sent = asyncio.Event(), asyncio.Event()

    async def slow(fn: Any, *args: Any) -> Any:
        sent.set()
        await release.wait()
        return fn(*args)

    batches = TagBatches(slow, wait_s=0)
    gone = asyncio.ensure_future(batches.tag(tagger.files, None, [("steel", NOW)]))
    kept = asyncio.ensure_future(batches.tag(tagger.files, None, [("Japan", NOW)]))
    await asyncio.wait_for(sent.wait(), timeout=10)  # the batch is with the worker
    gone.cancel()
    release.set()
    assert (await kept)[0].origins == ("JP",)
