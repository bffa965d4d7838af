"""The feed tagger: origins, HTS headings, Chapter 99 lines, rates and dates that a text
mentions, from word lists in a gazetteer (``config/gazetteer.toml``); see tagger.py."""

from notifier.sources.tagging.gazetteer import Gazetteer, default_gazetteer_path, load_gazetteer
from notifier.sources.tagging.numbers import find_chapter99, find_hts_numbers
from notifier.sources.tagging.tagger import Tagger

__all__ = [
    "Gazetteer",
    "Tagger",
    "default_gazetteer_path",
    "find_chapter99",
    "find_hts_numbers",
    "load_gazetteer",
]
