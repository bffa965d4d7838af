"""Summarise soak runs (bench/soak.py) as the Markdown table in docs/benchmarks.md.

    python bench/soak_report.py soak soak-fast soak-shipped

For each run: the daemon's RSS after warm-up (10 min), at the start of the last hour and
at the end; its growth over the last hour; where the memory is at the end (bench/
memprobe.py: Python objects, SQLite, malloc heaps); the parse workers' RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rss_at(samples: list[list[float]], t: float, column: int = 1) -> float:
    """RSS (MiB) of the first sample at or after t seconds."""
    for row in samples:
        if row[0] >= t:
            return row[column] / 1024
    return samples[-1][column] / 1024


def summary(name: str) -> dict[str, object]:
    run = json.loads((RESULTS / f"{name}.json").read_text())
    samples = run["samples"]
    end = samples[-1][0]
    last_hour = max(600.0, end - 3600)
    out: dict[str, object] = {
        "run": name,
        "minutes": run["minutes"],
        "config": run.get("config", "churn"),
        "entries": run["entries_published"],
        "webhooks": run["webhooks_received"],
        "rss_10min": round(rss_at(samples, 600), 1),
        "rss_last_hour_start": round(rss_at(samples, last_hour), 1),
        "rss_end": round(samples[-1][1] / 1024, 1),
        "rss_max_after_10min": round(max(r[1] for r in samples if r[0] >= 600) / 1024, 1),
        "rss_min_after_10min": round(min(r[1] for r in samples if r[0] >= 600) / 1024, 1),
        "last_hour_growth": round(samples[-1][1] / 1024 - rss_at(samples, last_hour), 1),
        "workers_end": round(samples[-1][2] / 1024, 1),
        "workers_last_hour_growth": round(
            samples[-1][2] / 1024 - rss_at(samples, last_hour, column=2), 1
        ),
        "database_mb": run.get("database_mb"),
        "exit_code": run["exit_code"],
    }
    probe = RESULTS / f"{name}-probe.jsonl"
    if probe.exists():
        rows = [json.loads(line) for line in probe.read_text().splitlines() if line.strip()]
        late = [r for r in rows if r["t"] >= 600] or rows
        for key in ("objects", "sqlite_kb", "heap_used_kb", "heap_free_kb", "thread_arenas_kb"):
            values = [r[key] for r in late if key in r]
            if values:
                out[f"{key}_range"] = (min(values), max(values))
        out["sqlite_connections_opened"] = rows[-1].get("sqlite_connections_opened")
    return out


def main(names: list[str]) -> None:
    runs = [summary(name) for name in names]
    print(
        "| run | entries / webhooks | RSS at 10 min | last hour: start -> end "
        "| range after 10 min | parse workers |"
    )
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['run']} ({r['config']}, {r['minutes']:g} min) | {r['entries']:,} / "
            f"{r['webhooks']:,} | {r['rss_10min']} MiB | {r['rss_last_hour_start']} -> "
            f"{r['rss_end']} MiB (**{r['last_hour_growth']:+} MiB**) | "
            f"{r['rss_min_after_10min']}-{r['rss_max_after_10min']} MiB | "
            f"{r['workers_end']} MiB ({r['workers_last_hour_growth']:+} MiB) |"
        )
    print()
    print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or ["soak", "soak-fast", "soak-shipped"])
