"""Tagging in another process: a parse worker tags the entries a poll alerts on, so the
event loop's process, which also renders and sends every alert, does not.

Part of the tagger (``notifier.sources.tagging``). A worker builds the tagger from the same
gazetteer files once per process (and set of files); a file changed since the asking
process read it is an error, so both never tag from different lists.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from notifier.core.model import Tags
from notifier.sources.tagging.gazetteer import GazetteerFiles
from notifier.sources.tagging.tagger import Tagger

__all__ = ["StaleGazetteer", "tag_remotely"]


class StaleGazetteer(Exception):
    """A gazetteer file changed since the asking process read it: tag there."""


def tag_remotely(
    files: GazetteerFiles,
    cache_dir: Path | None,
    texts: Sequence[tuple[str, datetime | None]],
) -> list[Tags]:
    """``Tagger.tag(text, reference=...)`` of each (text, reference), in order."""
    tagger = _tagger(files, cache_dir)
    if tagger is None:
        raise StaleGazetteer(f"gazetteer files changed: {', '.join(map(str, files.paths))}")
    return [tagger.tag(text, reference=reference) for text, reference in texts]


@functools.lru_cache(maxsize=4)
def _tagger(files: GazetteerFiles, cache_dir: Path | None) -> Tagger | None:
    """The tagger of these files as they were, once per process; None (remembered, so a
    stale request costs nothing the next time) when a file is no longer as it was."""
    tagger = Tagger.from_files(*files.paths, cache_dir=cache_dir)
    return tagger if tagger.files == files else None
