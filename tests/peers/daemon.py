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

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "daemon.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Daemon:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("a")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier",
            "run",
            "-c",
            str(self.config),
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        await wait_for(lambda: "running:" in self.log(), timeout_s=20, what="daemon start")
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

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
