"""The HTS export parser on a ~40 MB export: parse time and peak memory.

Generates a realistic export (the USITC ``exportList?format=JSON&styles=false`` shape: a
JSON array of rows with ``htsno``, ``indent``, ``description``, ``superior``, ``units``,
``general``, ``special``, ``other``, ``footnotes``, ``quotaQuantity``,
``additionalDuties``), random but plausible: headings with description-only rows,
subheadings, statistical suffixes, long ``special`` program lists, footnotes pointing at
Chapter 99, and a Chapter 99 block naming headings and countries. Then parses it with
:func:`notifier.sources.hts.parse_hts_export` (as the parse pool would) and prints the parse
time, the tracemalloc peak and the growth of the process's peak RSS (ru_maxrss).

    python bench/bench_hts_export.py [--mb 40] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifier.sources.hts import parse_hts_export

WORDS = tuple(
    " ".join(
        (
            "articles parts accessories steel iron aluminum copper alloy flat-rolled width",
            "thickness coated plated motor vehicles engines pistons cylinder capacity exceeding",
            "other fabrics woven cotton synthetic fibers containing weight machines apparatus",
            "electrical conductors insulated fitted connectors furniture wooden frames",
        )
    ).split()
)
SPECIAL = "Free (A+,AU,B,BH,CA,CL,CO,D,E,IL,JO,KR,MA,MX,OM,P,PA,PE,S,SG)"
RATES = ("Free", "2.5%", "3.4%", "4.9%", "6.5%", "25%", "1.2¢/kg", "10% + 2.1¢/kg")
COUNTRIES = ("Japan", "China", "the United Kingdom", "Mexico", "Canada", "Korea")


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize()


def _row(htsno: str, indent: int, description: str, **fields: object) -> dict[str, object]:
    return {
        "htsno": htsno,
        "indent": str(indent),
        "description": description,
        "superior": None,
        "units": fields.get("units", []),
        "general": fields.get("general", ""),
        "special": fields.get("special", ""),
        "other": fields.get("other", ""),
        "footnotes": fields.get("footnotes", []),
        "quotaQuantity": None,
        "additionalDuties": None,
    }


def generate_export(target_bytes: int, *, seed: int = 1) -> bytes:
    """A JSON export of about ``target_bytes``."""
    rng = random.Random(seed)
    out = [b"["]
    size = 1
    first = True
    chapter, heading = 1, 1

    def emit(row: dict[str, object]) -> None:
        nonlocal size, first
        chunk = (b"" if first else b",\n") + json.dumps(row).encode()
        first = False
        out.append(chunk)
        size += len(chunk)

    while size < target_bytes * 0.97:
        code = f"{chapter:02d}{heading:02d}"
        emit(_row(code, 0, _text(rng, 8, 30) + ":"))
        for sub in range(rng.randint(2, 6)):
            six = f"{code}.{10 + sub * 10:02d}"
            emit(_row("", 1, _text(rng, 3, 10) + ":"))
            for eight in range(rng.randint(1, 5)):
                line = f"{six}.{eight * 10 + 5:02d}"
                notes = (
                    [{"columns": ["general"], "value": "See 9903.94.05.", "type": "endnote"}]
                    if rng.random() < 0.1
                    else []
                )
                emit(
                    _row(
                        line,
                        2,
                        _text(rng, 2, 14),
                        general=rng.choice(RATES),
                        special=SPECIAL if rng.random() < 0.7 else "Free (A,AU,CA,MX)",
                        other=rng.choice(("25%", "35%", "45%", "Free")),
                        footnotes=notes,
                    )
                )
                for stat in range(rng.randint(0, 3)):
                    emit(_row(f"{line}.{stat * 10 + 10:02d}", 3, _text(rng, 1, 6), units=["kg"]))
        heading += 1
        if heading > 99:
            chapter, heading = chapter % 97 + 1, 1
    for number in range(1, 400):
        named = f"{rng.randint(1, 97):02d}{rng.randint(1, 99):02d}"
        emit(
            _row(
                f"9903.{number // 100 + 1:02d}.{number % 100:02d}",
                1,
                f"Articles the product of {rng.choice(COUNTRIES)}, as provided for in heading "
                f"{named}",
                general="The duty provided in the applicable subheading + 25%",
            )
        )
    out.append(b"\n]\n")
    return b"".join(out)


def timed(body: bytes) -> tuple[int, float, float]:
    """Lines, parse seconds and ru_maxrss growth (MB) of one untraced parse."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    parsed = parse_hts_export(body)
    elapsed = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return len(parsed.entries), elapsed, (rss_after - rss_before) / 1024


def traced_peak_mb(body: bytes) -> float:
    """The tracemalloc peak of one parse (tracing slows it several times: not timed)."""
    gc.collect()
    tracemalloc.start()
    parsed = parse_hts_export(body)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del parsed
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    body = generate_export(int(args.mb * 2**20), seed=args.seed)
    print(f"export: {len(body) / 2**20:.1f} MB")
    # Only the first run's ru_maxrss growth means anything: later runs reuse freed memory.
    for run in range(1, args.repeat + 1):
        lines, elapsed, rss_mb = timed(body)
        print(f"run {run}: {lines} lines in {elapsed:.2f} s; ru_maxrss +{rss_mb:.0f} MB")
    print(f"tracemalloc peak: {traced_peak_mb(body):.0f} MB")


if __name__ == "__main__":
    main()
