"""The wheel carries what an installed daemon needs, and nothing of a local run."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_wheel_ships_templates_config_and_migrations_but_no_state(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("tariff_notifier-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "notifier/_shipped/config/notifier.toml",
        "notifier/_shipped/config/gazetteer.toml",
        "notifier/_shipped/config/calendar/us-2025.toml",
        "notifier/_shipped/templates/email/rule/body.html",
        "notifier/_shipped/templates/slack/entry.txt",
        "notifier/store/migrations/env.py",
        "notifier/store/migrations/versions/0001_initial.py",
        "notifier/py.typed",
    ):
        assert required in names, required
    assert not [n for n in names if "/state/" in n or n.endswith((".db", ".lock"))]
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in declared:
        assert f"Requires-Dist: {dependency.split('[')[0].split('>')[0]}" in metadata
    assert "Requires-Dist: alembic" in metadata  # migrations run on every start
