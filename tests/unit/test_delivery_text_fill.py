"""The templates' line filler is textwrap's, word for word, at a fraction of the cost."""

from __future__ import annotations

import re
import textwrap

from hypothesis import given
from hypothesis import strategies as st

from notifier.delivery.render.text import fill_words, paragraphs, text_field, tidy_text, wrap

WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")),
    min_size=1,
    max_size=30,
)


@given(
    words=st.lists(WORD, max_size=40),
    width=st.integers(min_value=1, max_value=100),
    initial=st.sampled_from(["", "  ", "   ", "  Rate:         "]),
    subsequent=st.sampled_from(["", "  ", "    ", " " * 16]),
)
def test_fill_words_equals_textwrap_fill(
    words: list[str], width: int, initial: str, subsequent: str
) -> None:
    words = [w for w in words if w.split() == [w]]  # no whitespace of any kind inside
    if width - max(len(initial), len(subsequent)) <= 0:
        return
    expected = textwrap.fill(
        " ".join(words),
        width=width,
        initial_indent=initial,
        subsequent_indent=subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    assert fill_words(words, width, initial, subsequent) == expected


def test_wrap_and_field_keep_their_shape() -> None:
    text = "The 25% rate is in effect as of Wed 4 Jun 2025, 12:01 AM EDT.\n\n"
    text += "See https://x.test/" + "a" * 80
    assert wrap(text, 30, "  ") == (
        "  The 25% rate is in effect as\n  of Wed 4 Jun 2025, 12:01 AM\n  EDT.\n\n"
        "  See\n  https://x.test/" + "a" * 80
    )
    assert text_field("Rate", "25%") == "  Rate:         25%"
    assert text_field("Goods", "") == ""


LINES = st.text(
    alphabet=st.sampled_from(["a", " ", "\t", "\n", "\r", "\u2028", "\x0c", "é"]), max_size=60
)


@given(text=LINES)
def test_tidy_text_equals_its_regex_definition(text: str) -> None:
    lines = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    assert tidy_text(text) == re.sub(r"\n{3,}", "\n\n", lines) + "\n"


@given(text=LINES)
def test_paragraphs_split_at_blank_lines_and_collapse_whitespace(text: str) -> None:
    unified = text.replace("\r\n", "\n").replace("\r", "\n")
    expected = [" ".join(b.split()) for b in re.split(r"\n\s*\n", unified) if b.strip()]
    assert paragraphs(text) == expected
