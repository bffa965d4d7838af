"""What every benchmark shares: the machine's description, result files, small stats,
config writing and running ``tariff-notifier`` as a user would (a subprocess)."""

from __future__ import annotations

import base64
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    """Cores, memory and CPU model: the figures only mean something beside these."""
    memory_kib = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    model = platform.processor() or ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "event_loop": loop_kind(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` with the machine beside the figures."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "command": " ".join(sys.argv), **figures}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def steal_s() -> float:
    """CPU seconds the hypervisor gave to others so far, all cores (``/proc/stat``'s
    ``steal``; 0 where it is not reported). A round's share of it says whether the
    machine was itself while it ran: these virtual machines share their host."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def notifier_command(*args: str) -> list[str]:
    """``tariff-notifier ARGS`` with the interpreter running the benchmark, on the event
    loop ``notifier.runtime.loop`` picks (``bench/launch.py``)."""
    ensure_bytecode()
    return [sys.executable, str(ROOT / "bench" / "launch.py"), *args]


_BYTECODE_WRITTEN = False


def ensure_bytecode() -> None:
    """Compile ``notifier/`` to ``__pycache__`` once per benchmark run.

    An installed package (a wheel; rss2email in its venv) has its bytecode written at
    install. This editable checkout only gets it when an import writes it, which
    ``PYTHONDONTWRITEBYTECODE`` (set on these machines) prevents: each of our processes
    would then compile our ~85 modules from source (~0.13 s of CPU each, parse workers
    included), a cost no installed copy pays."""
    global _BYTECODE_WRITTEN
    if not _BYTECODE_WRITTEN:
        import compileall

        compileall.compile_dir(ROOT / "notifier", quiet=1)
        _BYTECODE_WRITTEN = True


def loop_kind() -> str:
    """The event loop the commands above run on (``uvloop`` or ``asyncio``)."""
    from notifier.runtime.loop import loop_kind as kind

    return kind()


def run_timed(command: list[str], *, timeout_s: float = 600, env: Any = None) -> dict[str, Any]:
    """Run a command to completion; wall and CPU seconds (user+system), exit code, output."""
    cpu_before = children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "cpu_s": children_cpu_s() - cpu_before,
        "code": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def check_ok(result: dict[str, Any], what: str) -> None:
    if result["code"] != 0:
        raise SystemExit(
            f"{what} failed with exit {result['code']}:\n{result['stdout'][-2000:]}\n"
            f"{result['stderr'][-4000:]}"
        )


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def rule_toml(
    rule_id: str, *, effective: datetime, title: str | None = None, origins: str = '["*"]'
) -> str:
    return (
        f'[[rule]]\nid = "{rule_id}"\ntitle = {toml_str(title or "Bench rule " + rule_id)}\n'
        f'imposed_by = "US"\norigins = {origins}\nhts = ["8708"]\nrate = "25%"\n'
        f"effective = {effective.isoformat()}\n"
        f'basis = "Section 232"\nsource = "https://example.test/{rule_id}"\n\n'
    )


def show(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    """Print a benchmark's figures as aligned lines."""
    print(f"\n== {title}")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        text = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text}")


def feed_tables(feeds: Any, count: int, *, every: str = "15m") -> list[str]:
    """``[[feed]]`` tables for feeds ``f0``…``f{count-1}`` of a local feed server."""
    return [
        f'[[feed]]\nid = "f{index}"\nurl = "{feeds.url(index)}"\nevery = "{every}"\n'
        for index in range(count)
    ]
