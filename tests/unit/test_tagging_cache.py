"""The tagger's compiled word lists kept between processes (tagging/compiled.py)."""

from __future__ import annotations

import fcntl
import marshal
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from notifier.sources.tagging import Tagger
from notifier.sources.tagging.compiled import MIN_CACHED_CHARS, STALE_AFTER_S, compile_cached

# Long enough to be cached; groups, named groups, lookarounds and classes all used.
PATTERN = (
    r"(?<!\w)(?=(?P<word>"
    + "|".join(f"w{n:04d}(?:[\\s\\-]+x)?" for n in range(600))
    + r"))|(\d+)(?!\w)"
)
TEXTS = ["w0001 x and w0599-x, 42 then w0300", "nothing here", "w9999 w0000x 7"]


def spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int, str | None, str | None]]:
    return [(m.start(), m.end(), m["word"], m[2]) for m in pattern.finditer(text)]


def test_a_cached_pattern_matches_as_re_compile_does(tmp_path: Path) -> None:
    assert len(PATTERN) >= MIN_CACHED_CHARS
    expected = re.compile(PATTERN)
    first = compile_cached(PATTERN, tmp_path)  # compiled, then written
    assert len(list(tmp_path.glob("*.sre"))) == 1
    second = compile_cached(PATTERN, tmp_path)  # loaded from the file
    for pattern in (first, second):
        assert pattern.pattern == PATTERN
        assert pattern.groupindex == expected.groupindex
        assert pattern.groups == expected.groups
        for text in TEXTS:
            assert spans(pattern, text) == spans(expected, text)


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not marshal at all",
        marshal.dumps(("wrong digest", ([1, 2, 3], 0, 1, {}, [None]))),
    ],
)
def test_a_damaged_cache_file_means_compiling_again(tmp_path: Path, damage: bytes) -> None:
    compile_cached(PATTERN, tmp_path)
    (path,) = tmp_path.glob("*.sre")
    path.write_bytes(damage)
    pattern = compile_cached(PATTERN, tmp_path)
    assert spans(pattern, TEXTS[0]) == spans(re.compile(PATTERN), TEXTS[0])


def test_invalid_code_under_the_right_key_is_rejected(tmp_path: Path) -> None:
    compile_cached(PATTERN, tmp_path)
    (path,) = tmp_path.glob("*.sre")
    digest, record = marshal.loads(path.read_bytes())
    code, *rest = record
    path.write_bytes(marshal.dumps((digest, ([*code[:10], 99999, *code[10:]], *rest))))
    pattern = compile_cached(PATTERN, tmp_path)
    assert spans(pattern, TEXTS[0]) == spans(re.compile(PATTERN), TEXTS[0])


def test_a_folder_that_cannot_be_made_only_costs_a_compile(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    pattern = compile_cached(PATTERN, blocked / "cache")
    assert spans(pattern, TEXTS[0]) == spans(re.compile(PATTERN), TEXTS[0])
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_tagger_tags_the_same_with_its_lists_from_the_cache(tmp_path: Path) -> None:
    text = (
        "Steel and aluminum foil from Japan, South Korea and the European Union: "
        "heading 8708 and 9903.01.25 at 25 percent from May 3, 2025"
    )
    when = datetime(2025, 4, 1, tzinfo=UTC)
    expected = Tagger.from_files().tag(text, reference=when)
    writer = Tagger.from_files(cache_dir=tmp_path)
    assert writer.tag(text, reference=when) == expected
    assert len(list(tmp_path.glob("*.sre"))) == 2  # the country and product lists
    reader = Tagger.from_files(cache_dir=tmp_path)
    assert reader.tag(text, reference=when) == expected


def test_processes_missing_the_same_file_compile_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parse workers start tagging together; flock(2) serialises threads too, since each
    # opens the lock file anew.
    from notifier.sources.tagging import compiled

    real_compile, real_flock = compiled._compile_into, fcntl.flock
    calls: list[int] = []
    asked = threading.Condition()
    waiting = [0]  # threads that asked for the lock

    def flock(fd: Any, operation: int) -> None:
        with asked:
            waiting[0] += 1
            asked.notify_all()
        real_flock(fd, operation)

    def counting(pattern: str, path: Path, digest: str) -> re.Pattern[str]:
        calls.append(1)
        # The lock's holder compiles only once the other three wait for the lock.
        with asked:
            assert asked.wait_for(lambda: waiting[0] == 4, timeout=10), waiting
        return real_compile(pattern, path, digest)

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(compiled, "_compile_into", counting)
    with ThreadPoolExecutor(4) as pool:
        patterns = list(pool.map(lambda _: compile_cached(PATTERN, tmp_path), range(4)))
    assert calls == [1]
    for pattern in patterns:
        assert spans(pattern, TEXTS[0]) == spans(re.compile(PATTERN), TEXTS[0])


def test_a_new_file_sweeps_out_files_no_process_loaded_for_a_month(tmp_path: Path) -> None:
    compile_cached(PATTERN, tmp_path)
    (used,) = tmp_path.glob("*.sre")
    long_ago = time.time() - STALE_AFTER_S - 3600
    for name in ("old-lists", "old-python"):
        (tmp_path / f"{name}.sre").write_bytes(b"from an earlier version")
        (tmp_path / f"{name}.lock").write_bytes(b"")
    recent = tmp_path / "recent.sre"
    recent.write_bytes(b"another config's lists, loaded yesterday")
    os.utime(recent, (time.time() - 86_400,) * 2)
    for name in ("old-lists", "old-python"):
        os.utime(tmp_path / f"{name}.sre", (long_ago, long_ago))
    os.utime(used, (long_ago, long_ago))
    compile_cached(PATTERN, tmp_path)  # loaded: touched, so no longer stale
    assert used.stat().st_mtime > long_ago + 3600
    assert (tmp_path / "old-lists.sre").exists()  # nothing is swept on a load

    compile_cached(PATTERN.replace("w0001", "v0001"), tmp_path)  # a new file is written
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert len(left) == 3 and used.name in left and "recent.sre" in left, left
    assert not (tmp_path / "old-lists.lock").exists()
    assert not (tmp_path / "old-python.sre").exists()
