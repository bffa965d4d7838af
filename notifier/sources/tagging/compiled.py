"""The tagger's compiled regexes, kept between processes in a cache folder.

Part of the tagger (``notifier.sources.tagging``). The two prefix-tree patterns are 20 and
36 KB long; ``re.compile`` spends ~0.3 s on them, all of it in ``re``'s parser and code
generator, which are pure Python: ``_sre.compile``, which builds the pattern object from
the generated code, takes ~2 ms. So the generated code is what is cached (marshal, as
Jinja2's bytecode cache does, in the state folder), under a key naming the pattern and
the interpreter's regex engine; ``_sre`` validates the code it is given.

Best-effort: a folder that cannot be read or written, a damaged file or an interpreter
whose ``re`` internals differ means compiling as usual, never a failed start. Processes
missing the same file take turns (a lock file beside it): the first compiles, the others
load its work. A file is touched when it is loaded; when a new one is written (new word
lists, a new Python), files no process has loaded for ``STALE_AFTER_S`` go, so the
folder does not grow with every upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import marshal
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import _sre  # type: ignore[import-not-found]  # no stub: CPython internals
except ImportError:  # another interpreter: nothing is cached
    _sre = None

log = logging.getLogger("notifier.sources.tagging")

__all__ = ["compile_cached"]

# Smaller patterns compile in well under a millisecond: not worth a file.
MIN_CACHED_CHARS = 4096
# A cache file not loaded for this long belongs to word lists or a Python no longer run.
STALE_AFTER_S = 30 * 86_400


def compile_cached(pattern: str, cache_dir: Path | None) -> re.Pattern[str]:
    """``re.compile(pattern)``, from the code cached in ``cache_dir`` when it is there."""
    if cache_dir is None or len(pattern) < MIN_CACHED_CHARS or _sre is None:
        return re.compile(pattern)
    engine = f"{sys.version}|{_sre.MAGIC}|{_sre.CODESIZE}"
    digest = hashlib.sha256(f"{engine}\0{pattern}".encode()).hexdigest()
    path = cache_dir / f"{digest[:32]}.sre"
    compiled = _from_file(pattern, path, digest)
    if compiled is None:
        # The parse workers start tagging at the same moment: one compiles, the others
        # wait for its file instead of compiling too.
        with _exclusive(path):
            compiled = _from_file(pattern, path, digest) or _compile_into(pattern, path, digest)
    return compiled


def _from_file(pattern: str, path: Path, digest: str) -> re.Pattern[str] | None:
    loaded = _load(path, digest)
    if loaded is None:
        return None
    code, flags, groups, groupindex, indexgroup = loaded
    try:
        compiled: re.Pattern[str] = _sre.compile(
            pattern, flags, code, groups - 1, groupindex, indexgroup
        )
    except (RuntimeError, TypeError, ValueError, OverflowError):  # invalid SRE code
        log.debug("regex cache %s is damaged: compiling anew", path)
        return None
    with contextlib.suppress(OSError):  # in use: not stale (a read-only folder stays)
        os.utime(path)
    return compiled


def _compile_into(pattern: str, path: Path, digest: str) -> re.Pattern[str]:
    try:
        from re import _compiler, _parser  # type: ignore[attr-defined]

        # What re._compiler.compile does, keeping the code it generates.
        parsed = _parser.parse(pattern, 0)
        code = [int(op) for op in _compiler._code(parsed, 0)]
        groupindex = dict(parsed.state.groupdict)
        names: list[str | None] = [None] * parsed.state.groups
        for name, index in groupindex.items():
            names[index] = name
        flags, groups, indexgroup = int(parsed.state.flags), parsed.state.groups, tuple(names)
        compiled: re.Pattern[str] = _sre.compile(
            pattern, flags, code, groups - 1, groupindex, indexgroup
        )
    except Exception:  # re internals not as expected: the public way
        return re.compile(pattern)
    _store(path, digest, (code, flags, groups, groupindex, list(indexgroup)))
    return compiled


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold a lock beside ``path`` (none when it cannot be made): released when the
    holder exits, even when it is killed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "ab")  # noqa: SIM115  (held across the yield)
    except OSError:
        yield
        return
    with lock:
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(path: Path, digest: str) -> tuple[Any, ...] | None:
    try:
        stored = marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not (isinstance(stored, tuple) and len(stored) == 2 and stored[0] == digest):
        return None
    record = stored[1]
    if not (isinstance(record, tuple) and len(record) == 5):
        return None
    code, flags, groups, groupindex, indexgroup = record
    return code, flags, groups, groupindex, tuple(indexgroup)


def _store(path: Path, digest: str, record: tuple[Any, ...]) -> None:
    """Write atomically: a concurrent reader sees the old file, the new one or none."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(marshal.dumps((digest, record)))
        os.replace(temporary, path)
    except OSError as exc:
        log.debug("regex cache %s not written: %s", path, exc)
        with contextlib.suppress(OSError):
            temporary.unlink()
        return
    _prune(path.parent, keep=path)


def _prune(folder: Path, *, keep: Path) -> None:
    """Remove the cache files (and their locks) not loaded for ``STALE_AFTER_S``."""
    stale_before = time.time() - STALE_AFTER_S
    with contextlib.suppress(OSError):
        for old in folder.glob("*.sre"):
            with contextlib.suppress(OSError):
                if old != keep and old.stat().st_mtime < stale_before:
                    old.unlink()
                    old.with_suffix(".lock").unlink(missing_ok=True)
