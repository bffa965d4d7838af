"""The shipped calendar and config: the first thing a compliance team reads.

These tests read the files with ``tomllib`` only, so they hold whatever the loader does;
one test at the end also runs the real loader over the shipped config.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
CALENDAR = CONFIG_DIR / "calendar" / "us-2025.toml"
NOTIFIER = CONFIG_DIR / "notifier.toml"

REQUIRED = {
    "id",
    "title",
    "imposed_by",
    "origins",
    "hts",
    "rate",
    "effective",
    "basis",
    "source",
    "status",
}
OPTIONAL = {"ends", "notes"}
EDT = timezone(timedelta(hours=-4))
EST = timezone(timedelta(hours=-5))
# CBP stopped collecting IEEPA duties at 12:00 a.m. EST on 2026-02-24 (CSMS # 67834313).
IEEPA_CUTOFF = datetime(2026, 2, 24, 0, 0, tzinfo=EST)
# Proclamation 11021 rebuilt the steel, aluminum and copper tariffs from this instant.
METALS_REBUILT = datetime(2026, 4, 6, 0, 1, tzinfo=EDT)


def _rules() -> list[dict[str, Any]]:
    with CALENDAR.open("rb") as handle:
        return tomllib.load(handle)["rule"]


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return _rules()


@pytest.fixture(scope="module")
def by_id(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["id"]: rule for rule in rules}


def _is_at(value: datetime, expected: datetime) -> bool:
    """Same instant *and* same written offset (aware equality alone ignores the offset)."""
    return value == expected and value.utcoffset() == expected.utcoffset()


def test_calendar_has_only_rule_tables() -> None:
    with CALENDAR.open("rb") as handle:
        raw = tomllib.load(handle)
    # Besides the rules, only the `reviewed` date (CONTRACT: calendar files).
    assert set(raw) == {"reviewed", "rule"}
    assert isinstance(raw["reviewed"], date) and not isinstance(raw["reviewed"], datetime)
    assert len(raw["rule"]) >= 20


def test_every_rule_has_the_required_keys_and_no_others(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        keys = set(rule)
        assert keys >= REQUIRED, (rule.get("id"), REQUIRED - keys)
        assert keys <= REQUIRED | OPTIONAL, (rule["id"], keys - REQUIRED - OPTIONAL)
        for key in ("id", "title", "imposed_by", "rate", "basis", "source", "status"):
            assert isinstance(rule[key], str) and rule[key].strip(), (rule["id"], key)
        assert rule["imposed_by"] == "US"


def test_every_datetime_is_a_toml_datetime_with_an_offset(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        for key in ("effective", "ends"):
            if key not in rule:
                continue
            value = rule[key]
            assert isinstance(value, datetime), (rule["id"], key)
            assert value.utcoffset() is not None, (rule["id"], key)
            # US Eastern time: EST or EDT, never UTC or a local guess.
            assert value.utcoffset() in (EDT.utcoffset(None), EST.utcoffset(None)), rule["id"]


def test_offsets_follow_us_daylight_saving_time(rules: list[dict[str, Any]]) -> None:
    from zoneinfo import ZoneInfo

    eastern = ZoneInfo("America/New_York")
    for rule in rules:
        for key in ("effective", "ends"):
            if key in rule:
                value = rule[key]
                assert value.utcoffset() == value.astimezone(eastern).utcoffset(), (rule["id"], key)


def test_ids_are_unique_stable_kebab_case(rules: list[dict[str, Any]]) -> None:
    ids = [rule["id"] for rule in rules]
    assert len(ids) == len(set(ids))
    for rule_id in ids:
        assert re.fullmatch(r"us-[a-z0-9]+(-[a-z0-9]+)*", rule_id), rule_id


def test_ends_comes_after_effective(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        if "ends" in rule:
            assert rule["effective"] < rule["ends"], rule["id"]


def test_origins_are_alpha2_codes_or_star(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        origins = rule["origins"]
        assert origins and isinstance(origins, list), rule["id"]
        assert len(origins) == len(set(origins)), rule["id"]
        if "*" in origins:
            assert origins == ["*"], rule["id"]
        for code in origins:
            assert code == "*" or re.fullmatch(r"[A-Z]{2}", code), (rule["id"], code)


def test_hts_are_digit_prefixes_or_star(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        hts = rule["hts"]
        assert hts and isinstance(hts, list), rule["id"]
        assert len(hts) == len(set(hts)), rule["id"]
        if "*" in hts:
            assert hts == ["*"], rule["id"]
        for code in hts:
            assert code == "*" or re.fullmatch(r"\d{2,10}", code), (rule["id"], code)


def test_status_values_and_the_pharma_tariff_no_longer_paused(
    rules: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    for rule in rules:
        assert rule["status"] in {"scheduled", "paused", "revoked"}, rule["id"]
    # The 2025 announcement was paused; Proclamation 11020 (2026-04-02) imposed the tariff.
    pharma = by_id["us-pharma"]
    assert pharma["status"] == "scheduled"
    assert "11020" in pharma["basis"]
    assert {"3002", "3003", "3004"} <= set(pharma["hts"])


def test_sources_are_https_links_to_known_publishers(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        source = rule["source"]
        assert re.fullmatch(r"https://[^\s]+", source), rule["id"]
        if "federalregister.gov/d/" in source:
            assert re.fullmatch(r"https://www\.federalregister\.gov/d/\d{4}-\d{5}", source)
        if "govdelivery.com" in source:
            # A CSMS bulletin's web id is its CSMS number in hexadecimal.
            assert re.fullmatch(
                r"https://content\.govdelivery\.com/bulletins/gd/USDHSCBP-[0-9a-f]{7}", source
            ), rule["id"]


def test_csms_links_encode_the_csms_numbers_named_in_comments() -> None:
    text = CALENDAR.read_text(encoding="utf-8")
    # The auto parts guidance CSMS # 64913145 and the Section 122 guidance # 67844987.
    assert f"USDHSCBP-{64913145:x}" in text
    assert f"USDHSCBP-{67844987:x}" in text


def test_every_rule_has_a_comment_above_it() -> None:
    lines = CALENDAR.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.strip() == "[[rule]]":
            assert number > 0 and lines[number - 1].startswith("#"), f"line {number + 1}"


def test_steel_went_to_25_percent_on_march_12(by_id: dict[str, dict[str, Any]]) -> None:
    steel = by_id["us-232-steel-25"]
    assert _is_at(steel["effective"], datetime(2025, 3, 12, 0, 1, tzinfo=EDT))
    assert steel["rate"] == "25%"
    assert steel["origins"] == ["*"]
    assert {"72", "73"} <= set(steel["hts"])
    assert "2025-02833" in steel["source"]
    assert _is_at(by_id["us-232-aluminum-25"]["effective"], steel["effective"])


def test_steel_and_aluminum_doubled_on_june_4(by_id: dict[str, dict[str, Any]]) -> None:
    metals = by_id["us-232-metals-50"]
    june_4 = datetime(2025, 6, 4, 0, 1, tzinfo=EDT)
    assert _is_at(metals["effective"], june_4)
    assert metals["rate"].startswith("50%")
    assert {"72", "73", "76"} <= set(metals["hts"])
    # The 25% rules end when the 50% rule starts; the UK keeps 25%.
    assert _is_at(by_id["us-232-steel-25"]["ends"], june_4)
    assert _is_at(by_id["us-232-aluminum-25"]["ends"], june_4)
    uk = by_id["us-232-metals-uk-25"]
    assert uk["origins"] == ["GB"] and uk["rate"] == "25%"
    assert _is_at(uk["effective"], june_4)


def test_autos_on_april_3_and_parts_on_may_3(by_id: dict[str, dict[str, Any]]) -> None:
    autos = by_id["us-232-autos"]
    parts = by_id["us-232-auto-parts"]
    assert _is_at(autos["effective"], datetime(2025, 4, 3, 0, 1, tzinfo=EDT))
    assert _is_at(parts["effective"], datetime(2025, 5, 3, 0, 1, tzinfo=EDT))
    assert "8703" in autos["hts"] and "8708" in parts["hts"]
    assert autos["rate"] == parts["rate"] == "25%"


def test_japan_autos_end_when_the_japan_rate_replaces_them(
    by_id: dict[str, dict[str, Any]],
) -> None:
    replacement = by_id["us-jp-autos-15"]
    assert replacement["origins"] == ["JP"]
    assert _is_at(replacement["effective"], datetime(2025, 9, 16, 0, 1, tzinfo=EDT))
    for rule_id, general_id in (
        ("us-232-autos-jp", "us-232-autos"),
        ("us-232-auto-parts-jp", "us-232-auto-parts"),
    ):
        variant, general = by_id[rule_id], by_id[general_id]
        assert variant["origins"] == ["JP"]
        assert variant["hts"] == general["hts"]
        assert _is_at(variant["effective"], general["effective"])
        assert _is_at(variant["ends"], replacement["effective"])
        assert set(variant["hts"]) <= set(replacement["hts"])


def test_reciprocal_baseline_on_april_5(by_id: dict[str, dict[str, Any]]) -> None:
    baseline = by_id["us-ieepa-baseline"]
    assert _is_at(baseline["effective"], datetime(2025, 4, 5, 0, 1, tzinfo=EDT))
    assert baseline["rate"] == "+10%"
    assert baseline["origins"] == ["*"] and baseline["hts"] == ["*"]


def test_country_rates_lasted_one_day_then_paused(by_id: dict[str, dict[str, Any]]) -> None:
    april_9 = datetime(2025, 4, 9, 0, 1, tzinfo=EDT)
    april_10 = datetime(2025, 4, 10, 0, 1, tzinfo=EDT)
    for rule_id in ("us-ieepa-country-rates", "us-ieepa-jp-24", "us-cn-84"):
        assert _is_at(by_id[rule_id]["effective"], april_9), rule_id
        assert _is_at(by_id[rule_id]["ends"], april_10), rule_id
    pause = by_id["us-ieepa-pause"]
    assert _is_at(pause["effective"], april_10)
    assert "CN" not in pause["origins"] and "JP" in pause["origins"]
    assert "JP" not in by_id["us-ieepa-country-rates"]["origins"]
    assert by_id["us-ieepa-jp-24"]["rate"] == "+24%"


def test_the_japan_deal_is_15_percent_for_japan(by_id: dict[str, dict[str, Any]]) -> None:
    deal = by_id["us-jp-deal"]
    assert deal["origins"] == ["JP"]
    assert deal["rate"].startswith("15%")
    assert "14345" in deal["basis"]
    # Retroactive to the EO 14326 start, ended by the IEEPA ruling.
    assert _is_at(deal["effective"], datetime(2025, 8, 7, 0, 1, tzinfo=EDT))
    assert _is_at(deal["ends"], IEEPA_CUTOFF)
    assert "2025-17389" in deal["source"]


def test_every_ieepa_duty_ends_with_the_supreme_court_ruling(
    rules: list[dict[str, Any]],
) -> None:
    ieepa_duties = [
        rule
        for rule in rules
        if rule["basis"].startswith("IEEPA") and "de minimis" not in rule["title"]
    ]
    assert len(ieepa_duties) >= 10
    for rule in ieepa_duties:
        assert "ends" in rule, rule["id"]
        assert rule["ends"] <= IEEPA_CUTOFF, rule["id"]
    # Section 232 actions are not touched by the ruling; the only later ends are the metals
    # rules that Proclamation 11021 replaced on 2026-04-06.
    rebuilt = {"us-232-metals-50", "us-232-metals-uk-25", "us-232-copper"}
    for rule in rules:
        if rule["basis"].startswith("Section 232") and rule["id"] != "us-232-autos-jp":
            if rule["id"] in rebuilt:
                assert _is_at(rule["ends"], METALS_REBUILT), rule["id"]
            else:
                assert rule.get("ends") is None or rule["ends"] < IEEPA_CUTOFF, rule["id"]


def test_section_122_surcharge_follows_for_150_days(by_id: dict[str, dict[str, Any]]) -> None:
    surcharge = by_id["us-122-surcharge"]
    assert _is_at(surcharge["effective"], datetime(2026, 2, 24, 0, 1, tzinfo=EST))
    assert _is_at(surcharge["ends"], datetime(2026, 7, 24, 0, 1, tzinfo=EDT))
    assert surcharge["rate"].startswith("+10%")
    assert surcharge["effective"] > IEEPA_CUTOFF
    # 150 calendar days in Eastern wall time (the instant difference loses the DST hour).
    assert (surcharge["ends"].date() - surcharge["effective"].date()).days == 150


def test_china_rates_follow_each_other_without_gaps(by_id: dict[str, dict[str, Any]]) -> None:
    chain = ["us-cn-84", "us-cn-125", "us-cn-geneva"]
    for earlier, later in itertools.pairwise(chain):
        assert by_id[earlier]["ends"] == by_id[later]["effective"], (earlier, later)
    fentanyl = ["us-cn-fentanyl-initial-10", "us-cn-fentanyl-20", "us-cn-fentanyl-10"]
    for earlier, later in itertools.pairwise(fentanyl):
        assert by_id[earlier]["ends"] == by_id[later]["effective"], (earlier, later)
    assert _is_at(by_id["us-cn-fentanyl-10"]["effective"], datetime(2025, 11, 10, 0, 1, tzinfo=EST))


# --- the shipped notifier.toml ---------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_config() -> dict[str, Any]:
    with NOTIFIER.open("rb") as handle:
        return tomllib.load(handle)


def test_shipped_config_writes_to_a_maildir_and_sqlite(shipped_config: dict[str, Any]) -> None:
    assert "smtp" not in shipped_config  # no [smtp]: emails go to the Maildir under state/
    notifier = shipped_config["notifier"]
    assert notifier["state"] == "sqlite:///state/notifier.db"
    assert notifier["timezone"] == "America/New_York"
    assert notifier["health"] == "127.0.0.1:8787"
    assert shipped_config["calendar"] == {"paths": ["calendar/*.toml"], "remind": ["7d", "1d"]}


def test_shipped_config_needs_no_environment_variables() -> None:
    for line in NOTIFIER.read_text(encoding="utf-8").splitlines():
        if "${" in line:
            assert line.lstrip().startswith("#"), line


def test_shipped_feeds_are_polite_https_feeds(shipped_config: dict[str, Any]) -> None:
    feeds = shipped_config["feed"]
    ids = [feed["id"] for feed in feeds]
    assert len(ids) == len(set(ids))
    kinds = {feed.get("kind", "rss") for feed in feeds}
    # The official structured sources (issue 11): FR API, Public Inspection, CSMS, HTS.
    assert {"federal-register", "federal-register-inspection", "csms", "hts"} <= kinds
    polite = {"federal-register": {"15m", "30m"}, "hts": {"1d"}}
    for feed in feeds:
        assert feed["url"].startswith("https://"), feed["id"]
        assert "[" not in feed["url"] and "]" not in feed["url"], feed["id"]
        allowed = polite.get(feed.get("kind", "rss"), {"15m", "30m", "45m", "1h"})
        assert feed["every"] in allowed, feed["id"]


def test_shipped_subscriber_sends_everything_to_the_local_inbox(
    shipped_config: dict[str, Any],
) -> None:
    subscriber, operator = shipped_config["subscriber"]
    assert subscriber["id"] == "local-inbox"
    assert subscriber["email"] == ["you@example.com"]
    assert subscriber["events"] == ["tariff.*", "feed.entry.*", "hts.line.*"]
    assert operator["events"] == ["source.*"]


def test_shipped_config_loads_with_the_real_loader() -> None:
    config = pytest.importorskip("notifier.config")
    loaded = config.load_config(NOTIFIER, environ={})
    # The shipped config loads every calendar file (us-2025.toml, us-2026.toml, ...).
    files = sorted((CONFIG_DIR / "calendar").glob("*.toml"))
    assert CALENDAR in files
    count = sum(len(tomllib.loads(f.read_text(encoding="utf-8"))["rule"]) for f in files)
    assert len(loaded.rules) == count
    assert [s.id for s in loaded.subscribers] == ["local-inbox", "operator"]
