"""Start-up stays cheap: what a command imports before it needs it."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest

from notifier.config.schema import FeedSection
from notifier.sources.registry import KINDS, source_kind


def imported_after(statement: str, modules: list[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after ``statement``."""
    probe = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


def test_the_cli_imports_no_runtime_before_a_command_needs_it() -> None:
    # `--help`, `calendar`: neither needs HTTP, templates or the outbox (loading a config
    # imports the store's URL parsing, and with it SQLAlchemy, but not at import time).
    heavy = ["sqlalchemy", "aiohttp", "jinja2", "feedparser", "notifier.runtime.jobs"]
    assert imported_after("import notifier.cli, notifier.cli.commands", heavy) == []


def test_the_main_process_of_once_imports_no_parser_and_no_unused_kind() -> None:
    # Feeds are parsed in the pool's processes; a kind's module is imported when a
    # source of that kind is first polled.
    unused = [
        "feedparser",
        "ijson",
        "notifier.sources.hts",
        "notifier.sources.csms",
        "notifier.sources.federal_register",
    ]
    statement = "import notifier.cli.commands, notifier.runtime.jobs, notifier.runtime.runtime"
    assert imported_after(statement, unused) == []


@pytest.mark.parametrize("name", get_args(FeedSection.model_fields["kind"].annotation))
def test_every_kind_the_config_accepts_has_an_implementation(name: str) -> None:
    assert name in KINDS
    assert source_kind(name).name == name
    assert source_kind(name) is source_kind(name)  # one instance per kind


def test_the_registry_knows_no_kind_the_config_rejects() -> None:
    assert set(KINDS) == set(get_args(FeedSection.model_fields["kind"].annotation))
    with pytest.raises(KeyError):
        source_kind("atom-but-misspelt")
