"""Compiled templates kept between processes: Jinja2's file cache, made best-effort."""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2
import jinja2.bccache

log = logging.getLogger("notifier.delivery.render")


class QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja2's file cache of compiled templates, made best-effort: a folder that cannot
    be created, read or written means compiling again, never a failed start or alert."""

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory), pattern="%s.jinja2.cache")
        self._folder = directory

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # unreadable, truncated or garbage (pickle, marshal): compile anew
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.debug("template cache %s not written: %s", self._folder, exc)
