"""Where the shipped templates and config live, from a source tree or from a wheel.

In a wheel they are package data under ``notifier/_shipped/``; in a source checkout or an
editable install they are the repository's top-level ``templates/`` and ``config/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_path(name: str) -> Path:
    """The shipped ``templates`` or ``config`` folder."""
    packaged = _PACKAGE / "_shipped" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / name
