"""The demo's printout: what each subscriber received, in simulated time order.

Webhook deliveries carry the event's data, so for the official documents the printout
shows the dates apart: when a document was filed, published, takes effect, and when the
notifier detected it (the time of the delivery line), as a user's program would see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.cli.demo.peers import Hook, Received
from notifier.cli.demo.story import EASTERN, END, START, Subscriber


@dataclass
class Replay:
    received: Received
    subscribers: tuple[Subscriber, ...]
    passes: int
    problems: list[str]


def when(moment: datetime) -> str:
    return moment.astimezone(EASTERN).strftime("%a %Y-%m-%d %H:%M")


def span() -> str:
    return f"{START:%b %d} - {END:%b %d %Y}"


def format_report(result: Replay, *, elapsed_s: float) -> str:
    """What each subscriber received, in simulated time order, and a summary line."""
    lines: list[str] = []
    for sub in result.subscribers:
        lines.append(f"\n== {sub.id}: {sub.about}")
        if sub.hook_path is not None:
            got = []
            for hook in result.received.hooks:
                if hook.path == sub.hook_path:
                    got.append(
                        f"  {when(hook.at)}  {hook.type} {hook.subject} "
                        f"late={str(hook.late).lower()} verified={'yes' if hook.verified else 'NO'}"
                    )
                    got += [f"      {detail}" for detail in hook_details(hook)]
        else:
            got = [
                f"  {when(m.at)}  {m.subject}"
                for m in result.received.mails
                if m.recipient in sub.email
            ]
        lines += got or ["  (nothing)"]
    hooks = result.received.hooks
    verified = sum(h.verified for h in hooks)
    lines.append(
        f"\n{len(result.received.mails)} emails and {len(hooks)} webhooks ({verified} verified) "
        f"from {result.passes} passes over {span()} of simulated time, in {elapsed_s:.1f} s."
    )
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s):")
        lines += [f"  {p}" for p in result.problems]
    return "\n".join(lines)


def hook_details(hook: Hook) -> list[str]:
    """The lines under a feed or HTS delivery: its source and the dates it names."""
    data = hook.data
    entry: Mapping[str, Any] = data.get("entry") or {}
    line: Mapping[str, Any] = data.get("line") or {}
    details: list[str] = []
    if line:
        rate = line.get("general") or "no rate"
        applies = ", ".join(line.get("applies_to") or ()) or "none"
        details.append(f"HTS {line.get('htsno')}: {rate}; applies to {applies}")
        details += [_change(change) for change in data.get("changes") or ()]
    elif entry:
        details.append(f"{data.get('feed')}: {_shorten(str(entry.get('title', '')), 88)}")
        document: Mapping[str, Any] = entry.get("document") or {}
        csms: Mapping[str, Any] = entry.get("csms") or {}
        if document:
            details.append(_document_dates(document))
        elif csms:
            lines99 = ", ".join(csms.get("chapter99") or ()) or "none"
            named = ", ".join(csms.get("hts") or ()) or "none"
            details.append(f"CSMS #{csms.get('number')}: chapter 99 {lines99}; HTS {named}")
        if entry.get("published") and not document:
            details.append(f"sent {_local(str(entry['published']))}")
    detected = data.get("detected_at")
    if details and isinstance(detected, str):
        details[-1] += f"; detected {_local(detected)}"
    return details


def _document_dates(document: Mapping[str, Any]) -> str:
    number = document.get("proclamation_number")
    named = {"PRESDOCU": "Presidential document", "RULE": "Rule", "NOTICE": "Notice"}
    kind = f"Proclamation {number}" if number else named.get(str(document.get("type")), "Document")
    parts = [f"{kind}, FR Doc. {document.get('number')}"]
    if document.get("filed_at"):
        filed = _local(str(document["filed_at"]))
        parts.append(f"filed {filed} ({document.get('filing_type')} filing)")
        parts.append(f"to be published {document.get('publication_date')}")
    else:
        if document.get("signing_date"):
            parts.append(f"signed {document['signing_date']}")
        parts.append(f"published {document.get('publication_date')}")
        if document.get("citation"):
            parts.append(str(document["citation"]))
    if document.get("effective_on"):
        source = " (read from its text)" if document.get("effective_on_source") == "text" else ""
        parts.append(f"effective {document['effective_on']}{source}")
    return ", ".join(parts)


def _change(change: Mapping[str, Any]) -> str:
    return f"{change.get('field')}: {change.get('from') or '(none)'!r} -> {change.get('to')!r}"


def _local(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        return text
    return moment.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M %Z")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


__all__ = ["Replay", "format_report", "hook_details", "span", "when"]
