"""core/schedule.py: description paths, applies_to, origins and field diffs (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from notifier.core import schedule


def test_description_path_joins_ancestors_and_drops_deeper_levels() -> None:
    path = schedule.DescriptionPath()
    assert path.push(0, "Parts and accessories:") == "Parts and accessories"
    assert path.push(1, "Other parts:") == "Parts and accessories > Other parts"
    assert path.push(2, "Other") == "Parts and accessories > Other parts > Other"
    # a sibling at depth 1 replaces "Other parts" and everything under it
    assert path.push(1, "Brakes") == "Parts and accessories > Brakes"
    assert path.push(0, "Motor cars") == "Motor cars"


def test_description_path_tolerates_a_skipped_level() -> None:
    path = schedule.DescriptionPath()
    path.push(0, "Heading")
    assert path.push(2, "Deep") == "Heading > Deep"
    assert path.push(1, "Middle") == "Heading > Middle"


def test_headings_named_reads_headings_subheadings_and_chapters_but_not_chapter_99() -> None:
    text = (
        "Except as provided in headings 9903.94.02 through 9903.94.04, passenger vehicles "
        "as provided for in heading 8703 and subheadings 8704.21 and 8704.31, and articles "
        "of iron or steel of chapters 72 and 73"
    )
    assert schedule.headings_named(text) == ["8704", "8703", "72", "73"]


def test_headings_named_ignores_years_and_plain_numbers() -> None:
    assert schedule.headings_named("Proclamation 10908 of March 26, 2025, paragraph 2025") == []


def test_chapter99_refs_in_footnotes() -> None:
    assert schedule.chapter99_refs("See 9903.94.05.; See 9903.88.15. See 9903.94.05.") == [
        "9903.94.05",
        "9903.88.15",
    ]


def test_resolve_applies_to_joins_footnote_pointers_to_chapter_99_lines() -> None:
    lines = [
        ("8708.29.50", "Parts > Other", "See 9903.94.05."),
        ("9903.94.01", "vehicles as provided for in heading 8703", ""),
        ("9903.94.05", "automobile parts enumerated in the annex", ""),
        ("7208.10.15", "Flat-rolled products of iron", "See 9903.94.05."),
    ]
    applies = schedule.resolve_applies_to(lines)
    assert applies["8708.29.50"] == ("8708",)
    assert applies["9903.94.01"] == ("8703",)
    assert applies["9903.94.05"] == ("8708", "7208")
    assert applies["7208.10.15"] == ("7208",)


def test_origins_named_is_case_sensitive_and_defaults_to_every_origin() -> None:
    assert schedule.origins_named("articles the product of Japan or of the European Union") == (
        "JP",
        "EU",
    )
    assert schedule.origins_named("Tableware of porcelain or china; of turkeys") == ("*",)
    assert schedule.origins_named("products of China, Hong Kong and Macau") == ("CN", "HK", "MO")
    assert schedule.origins_named("Goods of Türkiye or the United Kingdom") == ("TR", "GB")


def test_field_changes_name_each_compared_field_that_differs() -> None:
    before = {"description": "Other", "general": "2.5%", "special": "Free", "units": "No."}
    after = {**before, "general": "2.5% + 25%", "footnotes": "See 9903.94.05."}
    assert schedule.field_changes(before, after) == [
        {"field": "general", "from": "2.5%", "to": "2.5% + 25%"},
        {"field": "footnotes", "from": "", "to": "See 9903.94.05."},
    ]
    assert schedule.field_changes(None, after) == []


def test_units_and_footnotes_text() -> None:
    assert schedule.units_text(["kg", " No. ", ""]) == "kg, No."
    assert schedule.units_text(None) == ""
    notes = [{"columns": ["general"], "value": "See  9903.88.15.", "type": "endnote"}, {"x": 1}]
    assert schedule.footnotes_text(notes) == "See 9903.88.15."


@given(st.lists(st.tuples(st.integers(0, 6), st.text(alphabet="ab :>", min_size=1, max_size=12))))
def test_a_path_always_ends_with_its_own_description(rows: list[tuple[int, str]]) -> None:
    path = schedule.DescriptionPath()
    separators = 0  # a description may itself contain " > " (hypothesis found ": > >")
    for indent, text in rows:
        result = path.push(indent, text)
        own = schedule.clean_description(text)
        separators += own.count(schedule.PATH_SEPARATOR.strip())
        if own:
            assert result.endswith(own)
        # At most one step per indent level at or above this row's, plus the separators
        # the descriptions carry themselves.
        assert len(result.split(schedule.PATH_SEPARATOR)) <= indent + 1 + separators
