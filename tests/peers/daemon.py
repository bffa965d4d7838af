"""A `tariff-notifier run` subprocess for tests: start, signal, stop, read its log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

from tests.peers import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """One `tariff-notifier run` subprocess with its log in a file."""

    def __init__(
        self, config: Path, *, log_name: str = "daemon.log", args: tuple[str, ...] = ()
    ) -> None:
        self.config = config
        self.args = args  # extra `run` options, e.g. ("--health", "127.0.0.1:0")
        self.log_path = config.parent / log_name
        self.proc: asyncio.subprocess.Process | None = None
        self._log_start = 0

    async def spawn(self) -> None:
        """Start the process without waiting for it to be ready."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("a")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "run",
            "-c",
            str(self.config),
            *self.args,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()

    async def start(self) -> Daemon:
        """Start and wait until this run (not an earlier one in the same log) is up."""
        await self.spawn()
        await wait_for(
            lambda: "running:" in self.log() or self.exited(),
            timeout_s=30,
            what="daemon start",
        )
        assert not self.exited(), f"daemon exited at start:\n{self.log()}"
        return self

    async def run_to_exit(self, *, timeout_s: float) -> int:
        await self.spawn()
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout=timeout_s)

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def log(self) -> str:
        """What this run wrote to the log (earlier runs with the same log excluded)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open() as handle:
            handle.seek(self._log_start)
            return handle.read()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, *, within_s: float = 10.0) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout=within_s + 5)
        return code, time.monotonic() - started

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def run_cli(*args: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
    """``python -m notifier ARGS`` as its own process, as an operator runs it beside a
    daemon; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
