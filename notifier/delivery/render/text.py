"""Text shaping for templates: paragraphs, wrapping, aligned fields, Slack ``mrkdwn``. Pure."""

from __future__ import annotations

import re
import textwrap
from typing import Any


def paragraphs(text: str | None) -> list[str]:
    """Blank-line separated paragraphs, inner whitespace collapsed."""
    if not text:
        return []
    blocks = re.split(r"\n\s*\n", str(text).replace("\r\n", "\n").replace("\r", "\n"))
    return [" ".join(b.split()) for b in blocks if b.strip()]


def wrap(text: str | None, width: int = 72, indent: str = "") -> str:
    """Fill each paragraph to ``width`` columns. Long words (URLs) are never broken."""
    return "\n\n".join(
        textwrap.fill(
            p,
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paragraphs(text)
    )


def text_field(label: str, value: Any, *, width: int = 72, label_width: int = 14) -> str:
    """``"  Rate:         25%"`` with a hanging indent when the value wraps."""
    head = f"  {label + ':':<{label_width}}"
    return textwrap.fill(
        " ".join(str(value).split()),
        width=width,
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_long_words=False,
        break_on_hyphens=False,
    )


def mrkdwn(text: Any) -> str:
    """Escape the three characters Slack's ``mrkdwn`` treats as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(text: Any, url: str | None) -> str:
    """``<url|text>``, or the escaped text alone when there is no URL."""
    label = mrkdwn(" ".join(str(text).split())).replace("|", "¦")
    if not url:
        return label
    safe_url = str(url).replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe_url}|{label}>"


def tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one final newline."""
    lines = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", lines) + "\n"
