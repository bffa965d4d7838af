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

from _common import median, show, write_result
from peers import FeedServer

from notifier.app import App
from notifier.config import load_config


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
    for index in range(count):
        parts.append(f'[[feed]]\nid = "f{index}"\nurl = "{feeds.url(index)}"\nevery = "15m"\n')
    path = folder / "notifier.toml"
    path.write_text("\n".join(parts))
    return path


def cpu_s() -> float:
    """CPU of this process and of its (parse pool) children, user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
        baseline = await app.poll_all()
        out["baseline_s"] = round(time.perf_counter() - started, 3)
        out["baseline_parsed"] = parsed[0]
        if len(baseline.baselined) != len(config.feeds):
            raise SystemExit(f"baseline: {baseline.feed_errors or baseline.baselined[:3]}")
        for _ in range(repeat):
            for mode, key in (("etag", "not_modified"), ("plain", "ignores_validators")):
                fs.set(mode=mode)
                fs.reset()
                parsed[0] = 0
                cpu, started = cpu_s(), time.perf_counter()
                report = await app.poll_all()
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
        runs = out[key]
        summary[key] = {
            "wall_s_median": median([r["wall_s"] for r in runs]),
            "cpu_s_median": median([r["cpu_s"] for r in runs]),
            "all_unchanged": all(r["unchanged"] == args.feeds for r in runs),
            "parsed_max": max(r["parsed"] for r in runs),
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
        ],
    )
    write_result("poll_cycle", figures)


if __name__ == "__main__":
    main()
