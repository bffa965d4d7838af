"""Tagger quality and speed on the hand-labelled set.

Prints micro precision, recall and F1 for origins, hts, rates and dates over
``tests/data/tagging_labelled.toml``, plus throughput, and writes them as JSON to
``bench/results/tagger_quality.json``. Run from the repository root or anywhere:

    python bench/tagger_quality.py [--verbose]

``--verbose`` lists every false positive and false negative, which is how the gazetteer
is meant to be improved: fix the word list for what generalises, not for one headline.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from notifier.tagging import Tagger

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "tagging_labelled.toml"
RESULTS = ROOT / "bench" / "results" / "tagger_quality.json"
FIELDS = ("origins", "hts", "rates", "dates")


@dataclass
class Score:
    """Micro-averaged counts over all cases, and the misses for reading."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, case_id: str, predicted: Iterable[str], gold: Iterable[str]) -> None:
        got, want = set(predicted), set(gold)
        self.tp += len(got & want)
        self.fp += len(got - want)
        self.fn += len(want - got)
        if got != want:
            extra, missing = sorted(got - want), sorted(want - got)
            self.misses.append(f"{case_id}: +{extra} -{missing}")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


def load_cases(path: Path = LABELLED) -> list[Mapping[str, Any]]:
    with path.open("rb") as handle:
        cases: list[Mapping[str, Any]] = tomllib.load(handle)["case"]
    return cases


def split_of(case: Mapping[str, Any]) -> str:
    """``dev`` cases were used to improve the gazetteer; ``holdout`` cases never were."""
    return str(case.get("split", "dev"))


def reference_of(case: Mapping[str, Any]) -> datetime | None:
    value = case.get("reference")
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


def score(tagger: Tagger, cases: Sequence[Mapping[str, Any]]) -> dict[str, Score]:
    """Micro precision/recall per field; a case without a field's label is skipped."""
    scores = {name: Score() for name in FIELDS}
    for case in cases:
        tags = tagger.tag(case["text"], reference=reference_of(case)).to_dict()
        for name in FIELDS:
            if name in case:
                scores[name].add(case["id"], tags[name], case[name])
    return scores


def throughput(tagger: Tagger, cases: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Entries per second over the labelled texts, and the cost of a 500-char paragraph.

    Best of five rounds, so another process on the machine inflates the figure less.
    """
    texts = [(case["text"], reference_of(case)) for case in cases]
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        count = 0
        while time.perf_counter() - started < 0.4:
            for text, reference in texts:
                tagger.tag(text, reference=reference)
            count += len(texts)
        rounds.append(count / (time.perf_counter() - started))
    paragraph = " ".join(text for text, _ in texts)[:500]
    per_call = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(500):
            tagger.tag(paragraph, reference=datetime(2025, 5, 1))
        per_call.append((time.perf_counter() - started) / 500)
    return {
        "entries_per_s": round(max(rounds)),
        "mean_entry_chars": round(sum(len(text) for text, _ in texts) / len(texts)),
        "paragraph_500_chars_us": round(min(per_call) * 1e6, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every miss")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    tagger = Tagger.from_files()
    compile_ms = (time.perf_counter() - started) * 1e3
    cases = load_cases()
    splits = {
        "all": cases,
        "dev": [case for case in cases if split_of(case) == "dev"],
        "holdout": [case for case in cases if split_of(case) == "holdout"],
    }
    scores = {split: score(tagger, chosen) for split, chosen in splits.items()}
    speed = throughput(tagger, cases)

    print(f"{len(cases)} labelled cases ({LABELLED.relative_to(ROOT)})")
    for split, by_field in scores.items():
        print(f"\n[{split}: {len(splits[split])} cases]")
        print(f"{'field':8} {'precision':>9} {'recall':>7} {'f1':>6} {'tp':>5} {'fp':>4} {'fn':>4}")
        for name, result in by_field.items():
            print(
                f"{name:8} {result.precision:9.3f} {result.recall:7.3f} {result.f1:6.3f} "
                f"{result.tp:5d} {result.fp:4d} {result.fn:4d}"
            )
            if args.verbose and split != "all":
                for miss in result.misses:
                    print(f"    {miss}")
    print()
    print(
        f"throughput: {speed['entries_per_s']:,} entries/s "
        f"(mean {speed['mean_entry_chars']} chars); 500-char paragraph: "
        f"{speed['paragraph_500_chars_us']} µs; gazetteer load+compile: {compile_ms:.0f} ms"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "cases": len(cases),
                "splits": {split: len(chosen) for split, chosen in splits.items()},
                "scores": {
                    split: {name: result.as_dict() for name, result in by_field.items()}
                    for split, by_field in scores.items()
                },
                "speed": {**speed, "compile_ms": round(compile_ms, 1)},
                "python": platform.python_version(),
                "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
