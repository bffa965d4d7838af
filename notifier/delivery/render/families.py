"""Which template family renders an event: a small table keyed by event type prefix.

A family is a folder ``templates/email/<family>/`` (subject, text and HTML body) and a file
``templates/slack/<family>.txt``. Adding a family of events takes that folder, that file
and one line here.
"""

from __future__ import annotations

#: Event type prefix -> template family. The first matching prefix wins.
FAMILIES: dict[str, str] = {
    "tariff.rule.": "rule",
    "feed.entry.": "entry",
    "hts.line.": "hts",
    "source.": "source",
}

#: The parts of every single-alert email, and of a digest.
EMAIL_PARTS = ("subject.txt", "body.txt", "body.html")

#: The templates every installation needs; ``Renderer.check()`` fails when one is missing.
REQUIRED_TEMPLATES = (
    *(
        f"email/{family}/{part}"
        for family in (*FAMILIES.values(), "digest")
        for part in EMAIL_PARTS
    ),
    *(f"slack/{family}.txt" for family in FAMILIES.values()),
)


def family_of(event_type: str) -> str:
    """The template family of an event type; ``ValueError`` when no family claims it."""
    for prefix, family in FAMILIES.items():
        if event_type.startswith(prefix):
            return family
    raise ValueError(f"no template family for event type {event_type!r}")
