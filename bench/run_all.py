"""Run every benchmark (issues 6 and 13), one process each, and print a summary.

    python bench/run_all.py            # the full set (about 15 minutes on 2 cores)
    python bench/run_all.py --quick    # smaller sizes, a few minutes
    python bench/run_all.py --only parse,scale

Each benchmark prints its figures and writes ``bench/results/<name>.json``;
docs/benchmarks.md records them. The peers (SMTP sink, webhook receiver, feed server)
run in processes of their own, so ratios against them are not ratios against the GIL.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import RESULTS, ROOT

BENCHMARKS = {
    "rss2email": "bench_rss2email.py",
    "fanout": "bench_fanout.py",
    "webhook_fanout": "bench_webhook_fanout.py",
    "poll_cycle": "bench_poll_cycle.py",
    "parse": "bench_parse.py",
    "calendar_precision": "bench_calendar_precision.py",
    "scale": "bench_scale.py",
}


def headline(name: str) -> str:
    """One line per benchmark from its JSON: the figure its target is about."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    if name == "rss2email":
        failed = f"; {len(data['failures'])} runs FAILED" if data.get("failures") else ""
        each = ", ".join(
            f"{v}: {d['speedup_vs_rss2email']}x" for v, d in data.get("variants", {}).items()
        )
        worst = data["speedup_vs_rss2email"]
        return f"{worst}x rss2email, worse variant (target 3; {each}){failed}"
    if name == "fanout":
        return (
            "; ".join(
                f"{r['channel']} x {r['subscribers']:,}: {r['ratio']} of bare "
                f"({r['ours_per_s']:,.0f}/s, {r['peak_rss_mib']} MiB)"
                for r in data["results"]
            )
            + " (target 0.7 at 5,000)"
        )
    if name == "webhook_fanout":
        return (
            f"{data['ours_vs_bare']:.0%} of bare aiohttp (target 70%); one slow endpoint: "
            f"{data['slow_endpoint_slowdown']:+.0%} (target <= +10%)"
        )
    if name == "poll_cycle":
        s = data["summary"]
        failed = s["not_modified"]["failed_cycles"] + s["ignores_validators"]["failed_cycles"]
        return (
            f"304 cycle {s['not_modified']['wall_s_median']} s (target < 2); "
            f"same-body cycle parsed {s['ignores_validators']['parsed_max']} feeds (target 0)"
            + (f"; {failed} cycles FAILED" if failed else "")
        )
    if name == "parse":
        return f"pool {data['vs_bare_feedparser']['parse_feed_pool']}x bare feedparser.parse"
    if name == "calendar_precision":
        d = data["delay_s"]
        return f"delay p50 {d['p50']} s, p99 {d['p99']} s (target < 1), max {d['max']} s"
    if name == "scale":
        largest = data["matching"][-1]
        return (
            f"{largest['subscribers']:,} subs: {largest['match_ms_mean']} ms/event "
            f"(target 5); daemon peak {data['daemon']['total_peak_rss_mib']} MiB (target 300)"
        )
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a quick look")
    names_help = "comma-separated names: " + ", ".join(BENCHMARKS)
    parser.add_argument("--only", default="", help=names_help)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    for name in names:
        command = [sys.executable, str(ROOT / "bench" / BENCHMARKS[name])]
        if args.quick:
            command.append("--quick")
        print(f"\n##### {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, cwd=ROOT, check=False).returncode
        print(f"##### {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    print("\nsummary")
    for name in names:
        print(f"  {name:<20} {'FAILED' if name in failed else headline(name)}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
