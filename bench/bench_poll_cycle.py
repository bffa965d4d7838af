"""Benchmark 3: a poll cycle where nothing changed.

1,000 feeds on a local server. A first cycle takes the baseline (200s, parsed). Timed:
(a) a cycle where every feed answers 304 to its validator, and (b) a cycle where the
server ignores validators and answers 200 with the same bytes: the body hash must
match and nothing may be parsed. Wall and CPU seconds of the whole cycle
(``App.poll_all``, what ``once`` runs and what the daemon's jobs add up to).

    python bench/bench_poll_cycle.py [--feeds 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import feed_tables, median, show, write_result
from peers import FeedServer

from notifier.config import load_config
from notifier.errors import NotifierError
from notifier.runtime.runtime import App


def write_config(folder: Path, *, feeds: FeedServer, count: int) -> Path:
    (folder / "calendar").mkdir(exist_ok=True)
    parts = [
        f"""[notifier]
state = "sqlite:///{folder}/state/notifier.db"

[calendar]
paths = ["calendar/*.toml"]

[[subscriber]]
id = "reader"
email = ["reader@example.com"]
events = ["feed.entry.new"]
"""
    ]
    parts += feed_tables(feeds, count)
    path = folder / "notifier.toml"
    path.write_text("\n".join(parts))
    return path


def cpu_s() -> float:
    """CPU of this process and of its (parse pool) children, user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


async def baseline(app: App) -> list[str]:
    """The first cycle, in batches of 8 feeds: with all 32 polls at once SQLite's writer
    lock times out ("database is locked") and the whole pass fails (docs/benchmarks.md).
    Returns the errors of the first try of each batch that failed (then retried)."""
    errors: list[str] = []
    feeds = app.config.feeds
    for start in range(0, len(feeds), 8):
        batch = feeds[start : start + 8]
        for _attempt in range(3):
            try:
                await asyncio.gather(*(app.pipeline.poll_feed(f) for f in batch))
                break
            except NotifierError as exc:
                errors.append(str(exc))
    return errors


async def cycles(config_path: Path, *, fs: FeedServer, repeat: int) -> dict[str, Any]:
    config = load_config(config_path)
    out: dict[str, Any] = {"not_modified": [], "ignores_validators": []}
    async with App(config, parse_in_processes=True) as app:
        parsed = [0]
        real_parse = app.pipeline._parse

        async def counting_parse(*args: Any, **kwargs: Any) -> Any:
            parsed[0] += 1
            return await real_parse(*args, **kwargs)

        app.pipeline._parse = counting_parse  # type: ignore[method-assign]
        started = time.perf_counter()
        out["baseline_errors"] = await baseline(app)
        out["baseline_s"] = round(time.perf_counter() - started, 3)
        out["baseline_parsed"] = parsed[0]
        for _ in range(repeat):
            for mode, key in (("etag", "not_modified"), ("plain", "ignores_validators")):
                fs.set(mode=mode)
                fs.reset()
                parsed[0] = 0
                cpu, started = cpu_s(), time.perf_counter()
                try:
                    report = await app.poll_all()
                except NotifierError as exc:  # the whole pass fails: record it, go on
                    out[key].append(
                        {
                            "error": str(exc),
                            "failed_after_s": round(time.perf_counter() - started, 3),
                        }
                    )
                    print(f"  {key}: FAILED {out[key][-1]}", flush=True)
                    continue
                wall = time.perf_counter() - started
                served = fs.stats()
                out[key].append(
                    {
                        "wall_s": round(wall, 3),
                        "cpu_s": round(cpu_s() - cpu, 3),
                        "unchanged": report.feeds_unchanged,
                        "parsed": parsed[0],
                        "errors": len(report.feed_errors),
                        "answers_304": served["not_modified"],
                        "answers_200": served["ok"],
                    }
                )
                print(f"  {key}: {out[key][-1]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 feeds, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.feeds, args.repeat = 300, 1
    with (
        FeedServer(feeds=args.feeds, per_generation=20, window=20) as fs,
        tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp,
    ):
        config = write_config(Path(tmp), feeds=fs, count=args.feeds)
        out = asyncio.run(cycles(config, fs=fs, repeat=args.repeat))
    summary: dict[str, Any] = {}
    for key in ("not_modified", "ignores_validators"):
        runs = [r for r in out[key] if "error" not in r]
        summary[key] = {
            "failed_cycles": len(out[key]) - len(runs),
            "wall_s_median": median([r["wall_s"] for r in runs]) if runs else None,
            "cpu_s_median": median([r["cpu_s"] for r in runs]) if runs else None,
            "all_unchanged": all(r["unchanged"] == args.feeds for r in runs) if runs else None,
            "parsed_max": max(r["parsed"] for r in runs) if runs else None,
        }
    figures = {
        "feeds": args.feeds,
        **out,
        "summary": summary,
        "targets": {"not_modified_cycle_s": 2.0, "ignores_validators_parsed": 0},
    }
    nm, iv = summary["not_modified"], summary["ignores_validators"]
    show(
        f"unchanged poll cycle, {args.feeds} feeds",
        [
            ("baseline cycle (s, parses all)", out["baseline_s"]),
            ("304 cycle wall (s, target < 2)", nm["wall_s_median"]),
            ("304 cycle CPU (s)", nm["cpu_s_median"]),
            ("same-body 200 cycle wall (s)", iv["wall_s_median"]),
            ("same-body 200 cycle CPU (s)", iv["cpu_s_median"]),
            ("same-body feeds parsed (target 0)", iv["parsed_max"]),
            ("failed cycles (304 / same-body)", f"{nm['failed_cycles']} / {iv['failed_cycles']}"),
        ],
    )
    write_result("poll_cycle", figures)


if __name__ == "__main__":
    main()
