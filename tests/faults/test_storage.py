"""A full disk, a read-only state folder and a damaged state file: a clear error, and no
corrupted state.

The state folder is a real small tmpfs (needs root or CAP_SYS_ADMIN, else the tests are
skipped): SQLite then meets a genuine ENOSPC / EROFS, as it would on a real disk. A
damaged file is a real state file with garbage, a cut, or a page overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.errors import StoreDamaged
from notifier.store import Store
from tests.conftest import WriteConfig, new_secret
from tests.faults import (
    cli,
    deliveries,
    delivery_section,
    email_subscriber,
    feed_section,
    notifier_section,
    smtp_section,
    statuses,
    webhook_subscriber,
)
from tests.peers import wait_for
from tests.peers.daemon import Daemon
from tests.peers.feeds import FeedItem, FeedServer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import Reply, WebhookPeer

pytestmark = pytest.mark.slow


def _mount(*args: str) -> bool:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    return done.returncode == 0


@pytest.fixture
def state_fs(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/state`` as a 4 MB tmpfs; remount it with ``remount(state, "ro")``."""
    state = tmp_path / "state"
    state.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(state)):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def remount(state: Path, mode: str) -> None:
    assert _mount("-o", f"remount,{mode}", str(state)), f"remount {mode} failed"


def fill(state: Path) -> Path:
    """Take every free byte of the state filesystem; returns the filler file."""
    filler = state / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def config_for(smtp: SmtpPeer, feeds: FeedServer) -> str:
    return (
        notifier_section()
        + smtp_section(smtp.port)
        + delivery_section(("1s", "1s", "2s", "5s"), timeout="3s")
        + feed_section("news", feeds.url("news"), max_changes=100_000)
        + email_subscriber("desk", "desk@example.com")
    )


async def test_read_only_state_folder_is_a_clear_error_and_state_survives(
    write_config: WriteConfig, state_fs: Path, smtp: SmtpPeer, feeds: FeedServer
) -> None:
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    config = write_config(config_for(smtp, feeds))
    code, _, err = await cli(config, "once")
    assert code == 0, err
    db = state_fs / "n.db"
    before = db.read_bytes()

    remount(state_fs, "ro")
    feeds.feeds["news"].append(FeedItem("n1", "Tariff on steel raised"))
    for command in ("once", "run"):
        code, out, err = await cli(config, command)
        assert code == 1, (command, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err  # one readable line
        assert lines[0].startswith("tariff-notifier: ")
        assert "read-only" in lines[0].lower() or "not writable" in lines[0], lines[0]
    assert smtp.messages == []  # nothing was sent that could not be recorded

    remount(state_fs, "rw")
    assert integrity(db) == "ok"
    assert db.read_bytes() == before  # untouched
    code, _, err = await cli(config, "once")
    assert code == 0, err
    [mail] = await smtp.wait_for_count(1)
    assert "steel" in mail.message["Subject"].lower()


async def test_disk_full_while_running_is_reported_and_nothing_is_lost(
    write_config: WriteConfig,
    state_fs: Path,
    smtp: SmtpPeer,
    feeds: FeedServer,
    daemons: list[Daemon],
) -> None:
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    config = write_config(config_for(smtp, feeds))
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=30, what="baseline")

    filler = fill(state_fs)
    # A burst that needs new pages in the database: it cannot be committed now.
    feeds.feeds["news"] += [
        FeedItem(f"n{i:02d}", f"Tariff notice {i}", "Duty on steel. " * 40) for i in range(40)
    ]
    await wait_for(
        lambda: daemon.log().count("disk is full") >= 2,
        timeout_s=20,
        what="the full disk to be reported",
    )
    assert daemon.proc is not None and daemon.proc.returncode is None  # still up
    full_lines = [line for line in daemon.log().splitlines() if "full" in line]
    assert any("could not be recorded" in line for line in full_lines), full_lines
    assert "Traceback" not in daemon.log()
    sent_while_full = len(smtp.messages)

    filler.unlink()  # space comes back: the next poll commits the burst
    await smtp.wait_for(
        lambda peer: len({m.message["Message-ID"] for m in peer.messages}) >= 40, timeout_s=30
    )
    deadline = asyncio.get_running_loop().time() + 20
    while statuses(items := await deliveries(config)) != {"sent": 40}:
        assert asyncio.get_running_loop().time() < deadline, statuses(items)
        await asyncio.sleep(0.3)
    code, _ = await daemon.stop()
    assert code == 0
    assert integrity(state_fs / "n.db") == "ok"
    assert sent_while_full == 0  # nothing went out that was not first in the outbox
    ids = [m.message["Message-ID"] for m in smtp.messages]
    assert len(ids) == len(set(ids)) == 40


async def test_disk_full_when_a_sent_delivery_is_recorded_is_reported_and_recovers(
    write_config: WriteConfig,
    state_fs: Path,
    hooks: WebhookPeer,
    feeds: FeedServer,
    daemons: list[Daemon],
) -> None:
    secret = new_secret()
    hooks.set_secret("/erp", secret)
    feeds.feeds["news"] = [FeedItem("seed", "Seed entry")]
    config = write_config(
        notifier_section()
        + delivery_section(("1s", "1s", "2s", "5s"), timeout="3s")
        + feed_section("news", feeds.url("news"), max_changes=100_000)
        + webhook_subscriber("erp", hooks.url("/erp"), secret)
    )
    daemon = await Daemon(config).start()
    daemons.append(daemon)
    await wait_for(lambda: feeds.requests.get("news", 0) >= 2, timeout_s=30, what="baseline")
    hooks.script("/erp", Reply(204, hang_s=2.0))  # the answer comes after the disk fills
    feeds.feeds["news"].append(FeedItem("n1", "Tariff on steel raised"))
    [first] = await hooks.wait_for_count(1, path="/erp", timeout_s=10)
    filler = fill(state_fs)  # the 204 arrives now: the "sent" cannot be written
    # The 204 comes 2 s after the request, on a full disk.
    await wait_for(
        lambda: time.time() > first.received_at + 2.5 and "disk is full" in daemon.log(),
        timeout_s=10,
        what="the answer to arrive while the disk is full",
    )
    filler.unlink()
    deadline = asyncio.get_running_loop().time() + 20
    while statuses(items := await deliveries(config)) != {"sent": 1}:
        assert asyncio.get_running_loop().time() < deadline, statuses(items)
        await asyncio.sleep(0.3)
    code, _ = await daemon.stop()
    assert code == 0
    assert integrity(state_fs / "n.db") == "ok"
    calls = hooks.calls_to("/erp")
    assert {c.headers["webhook-id"] for c in calls} == {first.headers["webhook-id"]}
    # The failure was reported in one clear line, not as an unretrieved task exception.
    log = daemon.log()
    assert "Task exception was never retrieved" not in log
    assert any(
        "notifier.delivery.outbox" in line
        and "could not be recorded" in line
        and "disk is full" in line
        for line in log.splitlines()
    ), log[-3000:]


# --- a damaged state file ------------------------------------------------------------------

PAGE = 4096


def root_page(db: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        [(page,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
        return int(page)


def wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def overwrite_page(db: Path, page: int, data: bytes) -> None:
    """Overwrite page ``page`` (1-based) of ``db`` in place."""
    assert len(data) == PAGE
    with db.open("r+b") as f:
        f.seek((page - 1) * PAGE)
        f.write(data)


async def state_with_history(
    write_config: WriteConfig, smtp: SmtpPeer, feeds: FeedServer
) -> tuple[Path, Path]:
    """A config and its real state file after a few passes (entries, events, attempts)."""
    feeds.feeds["news"] = [FeedItem(f"s{i}", f"Seed entry {i}") for i in range(30)]
    config = write_config(config_for(smtp, feeds))
    code, _, err = await cli(config, "once")
    assert code == 0, err
    feeds.feeds["news"].append(FeedItem("n1", "Tariff on steel raised"))
    code, _, err = await cli(config, "once")
    assert code == 0, err
    db = config.parent / "state" / "n.db"
    assert integrity(db) == "ok"
    assert wal_size(db) == 0  # everything is in the file itself (checkpointed at exit)
    return config, db


def damage(db: Path, how: str) -> None:
    if how == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    elif how == "truncated":
        with db.open("r+b") as f:
            f.truncate(db.stat().st_size // 2 + 100)
    elif how == "zeroed page":
        overwrite_page(db, root_page(db, "seen_entries"), b"\0" * PAGE)
    elif how == "garbage page":
        overwrite_page(db, root_page(db, "feed_state"), os.urandom(PAGE))
    else:
        raise AssertionError(how)


def assert_damage_reported(code: int, out: str, err: str, db: Path) -> None:
    assert code == 1, (code, out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one readable line
    [line] = lines
    assert line.startswith(f"tariff-notifier: state file {db} is damaged ("), line
    assert "restore it from a backup" in line and "move it aside" in line, line


@pytest.mark.parametrize("how", ["garbage", "truncated", "zeroed page", "garbage page"])
async def test_a_damaged_state_file_is_one_line_naming_the_file(
    write_config: WriteConfig, smtp: SmtpPeer, feeds: FeedServer, how: str
) -> None:
    config, db = await state_with_history(write_config, smtp, feeds)
    sent = len(smtp.messages)
    damage(db, how)
    damaged = db.read_bytes()
    feeds.feeds["news"].append(FeedItem("n2", "Tariff on copper raised"))
    took: dict[str, float] = {}
    for command in ("once", "run"):
        started = time.monotonic()
        code, out, err = await cli(config, command)
        took[command] = time.monotonic() - started
        assert_damage_reported(code, out, err, db)
    assert db.read_bytes() == damaged  # not made worse
    assert len(smtp.messages) == sent  # nothing sent that could not be recorded
    print(
        f"\nFIGURE damaged-state ({how}): `once` exit 1 in {took['once']:.1f} s, `run` exit 1 "
        f"in {took['run']:.1f} s, one line naming the file each; file unchanged; 0 sent"
    )


async def test_a_page_damaged_while_open_is_reported_by_the_next_query(
    write_config: WriteConfig, smtp: SmtpPeer, feeds: FeedServer
) -> None:
    _, db = await state_with_history(write_config, smtp, feeds)
    store = await Store.open(f"sqlite:///{db}")
    try:
        assert await store.feed_states()
        await store.close()  # the next query opens a new connection (no cached pages)
        overwrite_page(db, root_page(db, "feed_state"), b"\0" * PAGE)
        with pytest.raises(StoreDamaged) as caught:
            await store.feed_states()
        message = str(caught.value)
        assert message.startswith(f"state file {db} is damaged (")
        assert "\n" not in message
    finally:
        await store.close()
