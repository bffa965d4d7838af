"""parse_feed and diff_entries: pure, no network.

Fixtures are written here in the spirit of the real feeds (DOMAIN.md): the Federal Register
RSS shape (usnationalarchives/federalregister-api-core ``index.rss.builder``: title, link,
``h(abstract)`` as description, so double-escaped, pubDate, guid = link, dc:creator,
category), an Atom 1.0 feed and an RSS 1.0 (RDF) feed.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.core.entries import diff_entries
from notifier.core.model import Entry
from notifier.errors import FetchError
from notifier.sources.rss import ParseResult, parse_feed

FR = "https://www.federalregister.gov/documents"


# h(abstract) in the builder, then XML escaping: "Japan's" arrives as "Japan&amp;#39;s".
DEFAULT_ABSTRACT = "Japan&amp;#39;s autos &amp;amp; parts: 25% under Section 232."


def fr_item(n: int, *, abstract: str = "", title: str = "") -> str:
    """One Federal Register RSS item; ``abstract`` is raw XML text (escape it yourself)."""
    url = f"{FR}/2025/04/{n % 28 + 1:02d}/2025-{5930 + n:05d}/adjusting-imports-{n}"
    return f"""
    <item>
      <title>{title or f"Adjusting Imports of Automobiles and Automobile Parts No. {n}"}</title>
      <link>{url}</link>
      <description>{abstract or DEFAULT_ABSTRACT}</description>
      <pubDate>Thu, 03 Apr 2025 00:00:00 -0400</pubDate>
      <guid>{url}</guid>
      <dc:creator>Executive Office of the President</dc:creator>
      <category>Imports</category>
      <category>Motor vehicles</category>
    </item>"""


def fr_rss(*items: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>Federal Register: Documents matching "tariff"</title>
    <link>https://www.federalregister.gov/</link>
    <pubDate>Thu, 03 Apr 2025 00:00:00 -0400</pubDate>
    <description>Documents matching "tariff"</description>{"".join(items)}
  </channel>
</rss>""".encode()


def rss(items: str, *, prolog: str = "") -> bytes:
    return (f'<?xml version="1.0"?>{prolog}<rss version="2.0"><channel><title>t</title>'
            f"{items}</channel></rss>").encode()  # fmt: skip


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <title>USTR Press Releases</title>
  <id>tag:ustr.example,2025:press</id>
  <updated>2025-09-04T20:30:00Z</updated>
  <entry>
    <title type="html">US &amp;amp; Japan sign &lt;em&gt;agreement&lt;/em&gt;</title>
    <id>tag:ustr.example,2025:press/us-japan</id>
    <link rel="alternate" type="text/html" href="https://ustr.example/press/us-japan"/>
    <link rel="enclosure" href="https://ustr.example/press/us-japan.pdf"/>
    <updated>2025-09-04T16:30:00-04:00</updated>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>A 15% all-in
      rate for Japanese autos.</p><p>Effective September 16.</p></div></content>
  </entry>
  <entry>
    <title>Steel tariffs doubled</title>
    <id>tag:ustr.example,2025:press/steel-50</id>
    <link href="https://ustr.example/press/steel-50"/>
    <published>2025-06-03T12:00:00Z</published>
    <updated>2025-06-04T12:00:00Z</updated>
    <summary>Steel and aluminum to 50%.</summary>
  </entry>
</feed>"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://trade.example/rss">
    <title>Trade notices</title><link>https://trade.example/</link><description>d</description>
    <items><rdf:Seq><rdf:li rdf:resource="https://trade.example/n/1"/></rdf:Seq></items>
  </channel>
  <item rdf:about="https://trade.example/n/1">
    <title>CSMS # 64913145: auto parts &amp; Section 232</title>
    <link>https://trade.example/n/1</link>
    <description>HTS 8708 parts, 25%.</description>
    <dc:date>2025-05-02T18:00:00-04:00</dc:date>
  </item>
</rdf:RDF>"""


# --- formats --------------------------------------------------------------------------------


def test_federal_register_rss_items_become_plain_text_entries() -> None:
    result = parse_feed(fr_rss(fr_item(1), fr_item(2)), content_type="application/rss+xml")

    assert result.warning is None
    first, second = result.entries
    assert first.key == first.link == f"{FR}/2025/04/02/2025-05931/adjusting-imports-1"
    assert first.title == "Adjusting Imports of Automobiles and Automobile Parts No. 1"
    # &amp;#39; in the XML is &#39; after XML parsing: decoded to a plain apostrophe.
    assert first.summary == "Japan's autos & parts: 25% under Section 232."
    assert first.published == "2025-04-03T04:00:00Z"
    assert second.key != first.key


def test_atom_entries_take_id_alternate_link_and_xhtml_content() -> None:
    first, second = parse_feed(ATOM, content_type="application/atom+xml").entries

    assert first.key == "tag:ustr.example,2025:press/us-japan"
    assert first.link == "https://ustr.example/press/us-japan"
    assert first.title == "US & Japan sign agreement"
    assert first.summary == "A 15% all-in rate for Japanese autos. Effective September 16."
    assert first.published == "2025-09-04T20:30:00Z"  # updated, when there is no published
    assert second.published == "2025-06-03T12:00:00Z"  # published wins over updated
    assert second.summary == "Steel and aluminum to 50%."


def test_rss10_rdf_items_are_keyed_by_rdf_about() -> None:
    (entry,) = parse_feed(RDF, content_type="application/rdf+xml").entries

    assert entry.key == "https://trade.example/n/1"
    assert entry.title == "CSMS # 64913145: auto parts & Section 232"
    assert entry.summary == "HTS 8708 parts, 25%."
    assert entry.published == "2025-05-02T22:00:00Z"


def test_declared_legacy_encoding_is_decoded() -> None:
    body = (
        '<?xml version="1.0" encoding="windows-1252"?><rss version="2.0"><channel><title>t'
        "</title><item><title>Tarifa \u2013 M\u00e9xico</title><guid>m</guid></item>"
        "</channel></rss>"
    ).encode("windows-1252")

    (entry,) = parse_feed(body, content_type="text/xml").entries

    assert entry.title == "Tarifa \u2013 M\u00e9xico"


# --- keys and links ------------------------------------------------------------------------


def test_key_falls_back_to_link_then_to_a_stable_hash_of_title_and_date() -> None:
    body = rss(
        "<item><title>A</title><link>https://x.example/a</link></item>"
        "<item><title>B</title><pubDate>Thu, 03 Apr 2025 00:00:00 GMT</pubDate></item>"
        "<item><title>C</title><pubDate>Thu, 03 Apr 2025 00:00:00 GMT</pubDate></item>"
    )

    a, b, c = parse_feed(body).entries

    assert a.key == "https://x.example/a"
    assert b.key.startswith("sha256:") and c.key.startswith("sha256:")
    assert b.key != c.key
    assert parse_feed(body).entries[1].key == b.key  # stable across polls


def test_relative_link_resolves_against_base_url_but_guid_stays_as_written() -> None:
    body = rss("<item><title>x</title><guid>doc-17</guid><link>/d/2025-17</link></item>")

    (entry,) = parse_feed(body, base_url="https://www.federalregister.gov/api/v1/x.rss").entries

    assert entry.key == "doc-17"  # so a feed that moves keeps its keys
    assert entry.link == "https://www.federalregister.gov/d/2025-17"


@pytest.mark.parametrize(
    "link",
    ["javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "/relative-no-base"],
)
def test_non_http_links_are_dropped_but_still_key_the_entry(link: str) -> None:
    (entry,) = parse_feed(rss(f"<item><title>x</title><link>{link}</link></item>")).entries

    assert entry.link == ""
    assert entry.key.startswith(link[:4])  # feedparser may normalize it ("file://etc/…")


def test_overlong_guid_is_replaced_by_its_hash() -> None:
    guid = "g" * 5000
    (entry,) = parse_feed(rss(f"<item><title>x</title><guid>{guid}</guid></item>")).entries

    assert entry.key.startswith("sha256:") and len(entry.key) == 71


# --- text ------------------------------------------------------------------------------------


def test_markup_in_title_and_summary_is_reduced_to_text_and_scripts_dropped() -> None:
    # Decision: tags are stripped everywhere and script/style bodies dropped, even from a
    # title; what is left is plain text that templates escape when they render it.
    body = rss(
        "<item><guid>s</guid><title>Tariffs &lt;script&gt;alert(1)&lt;/script&gt;</title>"
        "<description>&lt;p&gt;Steel&lt;/p&gt;&lt;p&gt;50%&lt;style&gt;p{}&lt;/style&gt;"
        "&lt;script&gt;steal()&lt;/script&gt;&lt;/p&gt;&lt;!-- note --&gt;\x1b[31m"
        "</description></item>"
    )

    (entry,) = parse_feed(body).entries

    assert entry.title == "Tariffs"
    assert entry.summary == "Steel 50% [31m"  # the ESC control character is gone


def test_escaped_markup_inside_html_is_stripped_too() -> None:
    # &amp;lt;b&amp;gt; -> &lt;b&gt; (XML) -> <b> (first unescape) -> stripped.
    body = fr_item(3, abstract="&amp;lt;b&amp;gt;Section 232&amp;lt;/b&amp;gt; &amp;amp; more")

    (entry,) = parse_feed(fr_rss(body)).entries

    assert entry.summary == "Section 232 & more"


def test_summary_and_title_are_truncated_with_an_ellipsis() -> None:
    body = fr_item(4, abstract="word " * 1000, title="T" * 900)

    (entry,) = parse_feed(fr_rss(body), summary_max_chars=100).entries

    assert len(entry.summary) <= 100 and entry.summary.endswith("word…")
    assert len(entry.title) == 500 and entry.title.endswith("…")


def test_whitespace_only_change_keeps_the_content_hash_and_text_change_does_not() -> None:
    base = parse_feed(fr_rss(fr_item(5, abstract="Steel at 25%."))).entries[0]
    spaced = parse_feed(fr_rss(fr_item(5, abstract="\n  Steel   at\t25%.  "))).entries[0]
    changed = parse_feed(fr_rss(fr_item(5, abstract="Steel at 50%."))).entries[0]

    assert spaced.content_hash == base.content_hash
    assert changed.content_hash != base.content_hash
    assert diff_entries({base.key: base.content_hash}, [spaced]) == []
    assert diff_entries({base.key: base.content_hash}, [changed]) == [("updated", changed)]


def test_content_hash_does_not_depend_on_summary_max_chars() -> None:
    body = fr_rss(fr_item(6, abstract="word " * 1000))

    assert (
        parse_feed(body, summary_max_chars=50).entries[0].content_hash
        == parse_feed(body, summary_max_chars=3000).entries[0].content_hash
    )


def test_missing_or_unparsable_date_gives_none() -> None:
    body = rss(
        "<item><guid>a</guid><title>a</title></item>"
        "<item><guid>b</guid><title>b</title><pubDate>soon, maybe</pubDate></item>"
    )

    assert [e.published for e in parse_feed(body).entries] == [None, None]


# --- broken and hostile input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        os.urandom(4096),
        b"",
        b"<html><head><title>Login</title></head><body><p>Sign in</p></body></html>",
        b'{"results": []}',
    ],
    ids=["random-bytes", "empty", "html-page", "json"],
)
def test_what_is_not_a_feed_raises_fetch_error(body: bytes) -> None:
    with pytest.raises(FetchError, match=r"^not a feed: \S"):
        parse_feed(body, content_type="text/html")


def test_well_formed_feed_without_entries_is_an_empty_result() -> None:
    # The feed's own <title> comes along: alerts of a [[feed]] without `title` use it.
    assert parse_feed(rss("")) == ParseResult(entries=(), warning=None, title="t")


def test_not_well_formed_feed_with_entries_returns_them_with_a_warning() -> None:
    body = rss("<item><guid>a</guid><title>Steel &amp; co</title></item><item><guid>b</guid>")

    result = parse_feed(body)

    assert [e.key for e in result.entries][:1] == ["a"]
    assert result.entries[0].title == "Steel & co"
    assert result.warning is not None and result.warning.startswith("feed is not well-formed")
    assert "\n" not in result.warning


def test_entries_past_max_entries_are_dropped_with_a_warning() -> None:
    body = fr_rss(*(fr_item(n) for n in range(30)))

    result = parse_feed(body, max_entries=10)

    assert len(result.entries) == 10
    assert result.entries[0].key == parse_feed(body).entries[0].key
    assert result.warning == "30 entries, only the first 10 kept"


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE rss [<!ENTITY e SYSTEM "{uri}">]>',
        '<!DOCTYPE rss [<!ENTITY % e SYSTEM "{uri}"> %e;]>',
        '<!DOCTYPE rss SYSTEM "{uri}">',
    ],
    ids=["general-entity", "parameter-entity", "external-dtd"],
)
def test_external_entities_are_never_resolved(prolog: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = rss(
        "<item><guid>x</guid><title>a &e; b</title><description>&e;</description></item>",
        prolog=prolog.format(uri=secret.as_uri()),
    )
    passwd = rss(
        "<item><guid>x</guid><title>&e;</title></item>",
        prolog='<!DOCTYPE rss [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    )

    for payload, leak in ((body, "TOP-SECRET-MARKER"), (passwd, "root:")):
        try:
            result: object = parse_feed(payload)
        except FetchError as exc:
            result = exc
        assert leak not in repr(result)


def billion_laughs(*, padding: int = 0) -> bytes:
    """&lol9; expands to 10^9 "lol"s. All on one line: feedparser's own filter removes
    ``<!ENTITY`` only at a line start. ``padding`` raises expat's amplification allowance
    (100x the input): with 1 MB of it, bare feedparser took 26 s and 730 MB here."""
    levels = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    return rss(
        f"<!-- {'p' * padding} --><item><guid>x</guid><title>&lol9;</title></item>",
        prolog=f'<!DOCTYPE rss [<!ENTITY lol0 "lol">{levels}]>',
    )


@pytest.mark.parametrize("padding", [0, 2**20], ids=["small", "padded-1MB"])
def test_billion_laughs_parses_fast_without_blowing_up_memory(padding: int) -> None:
    body = billion_laughs(padding=padding)

    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = parse_feed(body)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert elapsed < 2
    assert peak < 10 * len(body) + 2**20
    assert [e.title for e in result.entries] == ["&lol9;"]  # the reference is left as text
    assert result.warning is not None and "DTD entity declarations ignored" in result.warning


def test_nested_declarations_through_a_parameter_entity_are_ignored_too() -> None:
    body = rss(
        "<item><guid>x</guid><title>&lol;</title></item>",
        prolog="<!DOCTYPE rss [<!ENTITY % p \"<!ENTITY lol 'lol'>\"> %p;]>",
    )

    assert [e.title for e in parse_feed(body).entries] == ["&lol;"]


def test_entity_declarations_in_a_utf16_feed_are_refused() -> None:
    body = billion_laughs().decode().encode("utf-16")

    with pytest.raises(FetchError, match=r"^not a feed: DTD entity declarations"):
        parse_feed(body)


def test_entity_declaration_text_in_content_is_not_a_dtd() -> None:
    body = rss("<item><guid>x</guid><title><![CDATA[How <!ENTITY x> works]]></title></item>")

    result = parse_feed(body)

    assert result.warning is None
    assert result.entries[0].title == "How works"  # "<!ENTITY x>" looks like markup


def test_parse_runs_in_a_process_pool() -> None:
    # The caller parses off the event loop; inputs, outputs and errors must pickle.
    body = fr_rss(fr_item(1))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        result = pool.submit(parse_feed, body, content_type="application/rss+xml").result(60)
        with pytest.raises(FetchError, match="not a feed"):
            pool.submit(parse_feed, b"\x00garbage").result(60)

    assert result == parse_feed(body, content_type="application/rss+xml")
    assert pickle.loads(pickle.dumps(result)) == result


# --- diff_entries -----------------------------------------------------------------------------


def make_entry(key: str, content_hash: str) -> Entry:
    return Entry(key=key, title=key, link="", published=None, summary="", content_hash=content_hash)


def test_duplicate_keys_in_one_feed_keep_the_first() -> None:
    first, again = make_entry("k", "h1"), make_entry("k", "h2")

    assert diff_entries({}, [first, again]) == [("new", first)]
    assert diff_entries({"k": "h2"}, [first, again]) == [("updated", first)]
    assert diff_entries({"k": "h1"}, [first, again]) == []


keys = st.sampled_from("abcdefgh")
hashes = st.sampled_from(["h1", "h2", "h3"])
entry_lists = st.lists(st.builds(make_entry, keys, hashes), max_size=12)
seen_maps = st.dictionaries(keys, hashes, max_size=8)


@given(seen=seen_maps, entries=entry_lists)
def test_diff_partitions_first_occurrences_into_new_updated_unchanged(
    seen: dict[str, str], entries: list[Entry]
) -> None:
    firsts = [e for i, e in enumerate(entries) if e.key not in {x.key for x in entries[:i]}]

    expected = [
        ("new" if e.key not in seen else "updated", e)
        for e in firsts
        if seen.get(e.key) != e.content_hash
    ]

    assert diff_entries(seen, entries) == expected


@given(seen=seen_maps, entries=entry_lists)
def test_diff_is_idempotent_once_its_result_is_stored(
    seen: dict[str, str], entries: list[Entry]
) -> None:
    result = diff_entries(seen, entries)
    stored = {**seen, **{e.key: e.content_hash for _, e in result}}

    assert diff_entries(stored, entries) == []
    assert diff_entries(seen, entries) == result  # pure: same input, same answer
    assert len({e.key for _, e in result}) == len(result)
