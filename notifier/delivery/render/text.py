"""Text shaping for templates: paragraphs, wrapping, aligned fields, Slack ``mrkdwn``. Pure."""

from __future__ import annotations

import re
import textwrap
from typing import Any

_BLANK_LINE = re.compile(r"\n\s*\n")


def paragraphs(text: str | None) -> list[str]:
    """Blank-line separated paragraphs, inner whitespace collapsed."""
    return [" ".join(words) for words in _paragraph_words(text)]


def wrap(text: str | None, width: int = 72, indent: str = "") -> str:
    """Fill each paragraph to ``width`` columns. Long words (URLs) are never broken."""
    return "\n\n".join(fill_words(words, width, indent, indent) for words in _paragraph_words(text))


def _paragraph_words(text: str | None) -> list[list[str]]:
    """The words of each blank-line separated paragraph (none: no paragraph)."""
    if not text:
        return []
    text = str(text)
    if "\n" not in text and "\r" not in text:  # one paragraph (most summaries)
        return [words] if (words := text.split()) else []
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [words for block in _BLANK_LINE.split(text) if (words := block.split())]


def text_field(label: str, value: Any, *, width: int = 72, label_width: int = 14) -> str:
    """``"  Rate:         25%"`` with a hanging indent when the value wraps."""
    head = f"  {label + ':':<{label_width}}"
    return fill_words(str(value).split(), width, head, " " * len(head))


def fill_words(words: list[str], width: int, initial: str, subsequent: str) -> str:
    """Words (no whitespace inside) filled greedily to ``width`` columns: exactly what
    ``textwrap.fill`` makes of them joined by single spaces with
    ``break_long_words=False, break_on_hyphens=False`` (a test compares the two), at a
    fraction of its cost; wrapping was the largest part of rendering an email."""
    if width - max(len(initial), len(subsequent)) <= 0:
        return textwrap.fill(  # textwrap's own error for an indent that leaves no room
            " ".join(words),
            width=width,
            initial_indent=initial,
            subsequent_indent=subsequent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    if words and len(initial) + sum(map(len, words)) + len(words) - 1 <= width:
        return initial + " ".join(words)  # one line (most fields and headlines)
    lines: list[str] = []
    line: list[str] = []
    used = len(initial) - 1  # the line's length, as if a space came before its first word
    for word in words:
        used += len(word) + 1
        if used > width and line:
            lines.append((subsequent if lines else initial) + " ".join(line))
            line = [word]
            used = len(subsequent) + len(word)
        else:
            line.append(word)
    if line:
        lines.append((subsequent if lines else initial) + " ".join(line))
    return "\n".join(lines)


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
    tidy = "\n".join([line.rstrip() for line in text.splitlines()]).strip("\n")
    # What re.sub(r"\n{3,}", "\n\n", ...) makes of it, at a fraction of the regex's cost
    # (a scan of every character): each pass shortens every run of three or more.
    while "\n\n\n" in tidy:
        tidy = tidy.replace("\n\n\n", "\n\n")
    return tidy + "\n"
