"""The shipped calendar brought current to December 2026 (facts of DOMAIN-2026.md).

Like ``test_shipped_calendar.py`` these tests read the calendar files with ``tomllib`` only;
they cover every file under ``config/calendar/`` (the 2025 rules, some edited by what
happened in 2026, and the actions of 2026). One test at the end runs the real loader.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
CALENDAR_DIR = CONFIG_DIR / "calendar"
US_2025 = CALENDAR_DIR / "us-2025.toml"
US_2026 = CALENDAR_DIR / "us-2026.toml"
NOTIFIER = CONFIG_DIR / "notifier.toml"

EDT = timezone(timedelta(hours=-4))
EST = timezone(timedelta(hours=-5))
EASTERN = ZoneInfo("America/New_York")
REVIEWED = date(2026, 12, 1)
REQUIRED = {"id", "title", "imposed_by", "origins", "hts", "rate", "effective", "basis"}
REQUIRED |= {"source", "status"}
OPTIONAL = {"ends", "notes"}

IEEPA_CUTOFF = datetime(2026, 2, 24, 0, 0, tzinfo=EST)  # EO 14389, CSMS # 67834313
SECTION_122_END = datetime(2026, 7, 24, 0, 1, tzinfo=EDT)
METALS_REBUILT = datetime(2026, 4, 6, 0, 1, tzinfo=EDT)  # Proclamation 11021

EU = {
    "EU", "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR",
    "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
}  # fmt: skip

# The 38 ids of the calendar before the 2026 update: each is a subscriber's promise.
IDS_2025 = {
    "us-cn-fentanyl-initial-10", "us-ieepa-ca-25", "us-ieepa-mx-25", "us-cn-fentanyl-20",
    "us-232-steel-25", "us-232-aluminum-25", "us-232-autos", "us-232-autos-jp",
    "us-ieepa-baseline", "us-ieepa-country-rates", "us-ieepa-jp-24", "us-cn-84",
    "us-ieepa-pause", "us-cn-125", "us-cn-de-minimis", "us-232-auto-parts",
    "us-232-auto-parts-jp", "us-cn-geneva", "us-232-metals-50", "us-232-metals-uk-25",
    "us-uk-autos-10", "us-232-copper", "us-ieepa-ca-35", "us-eu-autos-15", "us-ieepa-br-40",
    "us-ieepa-country-rates-aug", "us-ieepa-jp-15", "us-jp-deal", "us-ieepa-in-25",
    "us-de-minimis", "us-jp-autos-15", "us-pharma", "us-232-wood", "us-232-wood-step-up",
    "us-232-trucks", "us-232-buses", "us-cn-fentanyl-10", "us-122-surcharge",
}  # fmt: skip


def _files() -> list[Path]:
    return sorted(CALENDAR_DIR.glob("*.toml"))


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return [rule for path in _files() for rule in _load(path)["rule"]]


@pytest.fixture(scope="module")
def by_id(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["id"]: rule for rule in rules}


def _is_at(value: datetime, expected: datetime) -> bool:
    """Same instant *and* same written offset."""
    return value == expected and value.utcoffset() == expected.utcoffset()


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 1) -> datetime:
    """An Eastern wall time with the offset US daylight saving time gives it."""
    wall = datetime(year, month, day, hour, minute, tzinfo=EASTERN)
    return wall.astimezone(timezone(wall.utcoffset() or timedelta()))


# --- every file ------------------------------------------------------------------------


def test_the_calendar_is_split_by_year_and_the_config_loads_every_file() -> None:
    assert US_2025 in _files() and US_2026 in _files()
    with NOTIFIER.open("rb") as handle:
        assert tomllib.load(handle)["calendar"]["paths"] == ["calendar/*.toml"]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_each_file_starts_with_its_review_date(path: Path) -> None:
    raw = _load(path)
    assert set(raw) == {"reviewed", "rule"}
    assert raw["reviewed"] == REVIEWED
    text = path.read_text(encoding="utf-8")
    assert text.index("\nreviewed = 2026-12-01\n") < text.index("[[rule]]")


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_each_rule_has_a_comment_above_it(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.strip() == "[[rule]]":
            assert number > 0 and lines[number - 1].startswith("#"), f"{path.name}:{number + 1}"


def test_ids_are_unique_across_files_and_the_2025_ids_are_kept(
    rules: list[dict[str, Any]],
) -> None:
    ids = [rule["id"] for rule in rules]
    assert len(ids) == len(set(ids))
    for rule_id in ids:
        assert re.fullmatch(r"us-[a-z0-9]+(-[a-z0-9]+)*", rule_id), rule_id
    # No rule of the 2025 calendar was renamed or moved out of its file.
    assert {rule["id"] for rule in _load(US_2025)["rule"]} >= IDS_2025


def test_every_rule_is_well_formed(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        keys = set(rule)
        assert REQUIRED <= keys <= REQUIRED | OPTIONAL, (rule["id"], keys ^ REQUIRED)
        for key in ("title", "rate", "basis", "source"):
            assert isinstance(rule[key], str) and rule[key].strip(), (rule["id"], key)
        assert rule["imposed_by"] == "US"
        assert rule["status"] in {"scheduled", "paused", "revoked"}, rule["id"]
        assert re.fullmatch(r"https://[^\s]+", rule["source"]), rule["id"]
        if "federalregister.gov/d/" in rule["source"]:
            assert re.fullmatch(r"https://www\.federalregister\.gov/d/\d{4}-\d{5}", rule["source"])
        if "govdelivery.com" in rule["source"]:
            assert re.fullmatch(
                r"https://content\.govdelivery\.com/bulletins/gd/USDHSCBP-[0-9a-f]{7}",
                rule["source"],
            ), rule["id"]
        origins, hts = rule["origins"], rule["hts"]
        assert origins and len(origins) == len(set(origins)), rule["id"]
        assert "*" not in origins or origins == ["*"], rule["id"]
        assert all(c == "*" or re.fullmatch(r"[A-Z]{2}", c) for c in origins), rule["id"]
        assert hts and len(hts) == len(set(hts)), rule["id"]
        assert "*" not in hts or hts == ["*"], rule["id"]
        assert all(c == "*" or re.fullmatch(r"\d{2,10}", c) for c in hts), rule["id"]


def test_times_are_us_eastern_with_the_right_offset(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        for key in ("effective", "ends"):
            if key in rule:
                value = rule[key]
                assert isinstance(value, datetime) and value.utcoffset() is not None
                assert value.utcoffset() == value.astimezone(EASTERN).utcoffset(), (rule["id"], key)
        if "ends" in rule:
            assert rule["effective"] < rule["ends"], rule["id"]


def test_no_rate_rule_for_actions_that_imposed_no_tariff(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        rate = rule["rate"].lower()
        assert not re.search(r"\bnone\b|no tariff|never implemented|not in force", rate), rule["id"]
    ids = {rule["id"] for rule in rules}
    # Critical minerals (no tariff), the India 18% deal (never implemented), the Iran-trade
    # order (no country named), the excess-capacity 301 (no determination).
    for absent in (
        "us-232-critical-minerals",
        "us-in-deal-18",
        "us-ieepa-iran-trade",
        "us-301-excess-capacity",
    ):
        assert absent not in ids, absent


def test_uncertain_2026_items_are_marked_in_comments() -> None:
    text = US_2026.read_text(encoding="utf-8")
    for marker in ("(D)", "(?)", "grade B", "Grade B"):
        assert marker in text, marker
    # The two China deadlines of 2026-11-09/10: what happened is not known.
    for rule_id in ("us-cn-301-exclusions-end", "us-301-maritime-resume"):
        block = text[: text.index(f'id = "{rule_id}"')].rsplit("\n\n", 1)[-1]
        assert "(?)" in block or "(C" in block, rule_id


# --- what 2026 changed in the 2025 rules -----------------------------------------------


def test_india_russian_oil_duty_ended_on_february_7(by_id: dict[str, dict[str, Any]]) -> None:
    india = by_id["us-ieepa-in-25"]
    assert india["origins"] == ["IN"]
    assert _is_at(india["ends"], datetime(2026, 2, 7, 0, 1, tzinfo=EST))
    assert "14384" in india["basis"]
    assert f"USDHSCBP-{67702087:x}" in US_2025.read_text(encoding="utf-8")


def test_every_other_ieepa_duty_ends_at_the_confirmed_cutoff(
    rules: list[dict[str, Any]],
) -> None:
    ieepa = [
        rule
        for rule in rules
        if rule["basis"].startswith("IEEPA") and "de minimis" not in rule["title"]
    ]
    assert len(ieepa) >= 15
    for rule in ieepa:
        assert rule["ends"] <= IEEPA_CUTOFF, rule["id"]
        # Every IEEPA duty still running in 2026 stopped at the cutoff, except India's
        # Russian-oil duty, lifted on 2026-02-07.
        if rule["ends"].year == 2026 and rule["id"] != "us-ieepa-in-25":
            assert _is_at(rule["ends"], IEEPA_CUTOFF), rule["id"]
        # The end time is confirmed: no "(?)" next to it any more.
        assert "2026-02-24, ?" not in rule.get("notes", ""), rule["id"]
    text = US_2025.read_text(encoding="utf-8")
    assert "EO 14389" in text and "67834313" in text
    assert "(2026-02-24, ?)" not in text
    assert "2026-02-24T00:00:00-05:00 (?)" not in text


def test_section_122_confirmed_and_followed_by_section_301(
    by_id: dict[str, dict[str, Any]],
) -> None:
    surcharge = by_id["us-122-surcharge"]
    assert surcharge["rate"] == "+10%"
    assert "11012" in surcharge["basis"]
    assert _is_at(surcharge["ends"], SECTION_122_END)


def test_pharma_is_imposed_by_proclamation_11020(by_id: dict[str, dict[str, Any]]) -> None:
    pharma = by_id["us-pharma"]
    assert pharma["status"] == "scheduled"
    assert "11020" in pharma["basis"] and "2026-06956" in pharma["source"]
    assert pharma["origins"] == ["*"]
    assert {"3002", "3003", "3004"} <= set(pharma["hts"])
    assert pharma["rate"].startswith("100%")
    assert _is_at(pharma["effective"], at(2026, 7, 31))
    everyone = by_id["us-232-pharma-all"]
    assert _is_at(everyone["effective"], at(2026, 9, 29))
    assert everyone["hts"] == pharma["hts"] and everyone["rate"] == pharma["rate"]
    caps = by_id["us-232-pharma-caps-15"]
    assert set(caps["origins"]) == EU | {"JP", "KR", "CH", "LI"}
    assert caps["rate"].startswith("15% total")
    assert _is_at(caps["effective"], pharma["effective"])
    uk = by_id["us-232-pharma-uk"]
    assert uk["origins"] == ["GB"] and uk["rate"].startswith("+0%")
    assert _is_at(uk["effective"], pharma["effective"])


def test_metals_and_copper_replaced_on_april_6(by_id: dict[str, dict[str, Any]]) -> None:
    for old in ("us-232-metals-50", "us-232-metals-uk-25", "us-232-copper"):
        assert _is_at(by_id[old]["ends"], METALS_REBUILT), old
    rebuilt = by_id["us-232-metals-restructure"]
    assert _is_at(rebuilt["effective"], METALS_REBUILT)
    assert "ends" not in rebuilt
    assert rebuilt["origins"] == ["*"]
    assert {"72", "73", "74", "76"} <= set(rebuilt["hts"])
    assert "full value" in rebuilt["rate"]
    for tier in ("50%", "25%", "15%", "10%"):
        assert tier in rebuilt["rate"], tier
    assert "11021" in rebuilt["basis"] and "2026-06960" in rebuilt["source"]
    uk = by_id["us-232-metals-uk"]
    assert uk["origins"] == ["GB"] and uk["rate"].startswith("25%") and "15%" in uk["rate"]
    assert _is_at(uk["effective"], METALS_REBUILT)
    camx = by_id["us-232-metals-camx"]
    assert set(camx["origins"]) == {"CA", "MX"} and camx["rate"].startswith("25%")
    assert _is_at(camx["effective"], at(2026, 4, 23))


def test_metals_june_revision(by_id: dict[str, dict[str, Any]]) -> None:
    june = by_id["us-232-metals-june"]
    assert _is_at(june["effective"], at(2026, 6, 8))
    assert _is_at(june["ends"], at(2028, 1, 1))
    assert june["rate"].startswith("25%") and june["origins"] == ["*"]
    assert "11032" in june["basis"] and "2026-11314" in june["source"]
    caps = by_id["us-232-metals-june-caps-15"]
    partners = {"AR", "EC", "SV", "GT", "JP", "KR", "LI", "CH", "TW", "GB"}
    assert set(caps["origins"]) == partners | EU
    assert caps["rate"].startswith("15%")
    assert caps["effective"] == june["effective"] and caps["ends"] == june["ends"]


def test_de_minimis_rests_on_eo_14388_and_cbp_interim_rules(
    by_id: dict[str, dict[str, Any]],
) -> None:
    de_minimis = by_id["us-de-minimis"]
    assert "ends" not in de_minimis
    assert "14388" in de_minimis["basis"]
    assert "interim final rules" in de_minimis["basis"]
    assert "2026-06-24" in de_minimis["basis"]
    assert "?" not in de_minimis["notes"]
    assert "91 FR 37789" in de_minimis["notes"] and "91 FR 37801" in de_minimis["notes"]


def test_furniture_step_up_postponed_to_2027(by_id: dict[str, dict[str, Any]]) -> None:
    step_up = by_id["us-232-wood-step-up"]
    assert _is_at(step_up["effective"], datetime(2027, 1, 1, 0, 1, tzinfo=EST))
    assert "2025-12-31" in step_up["basis"]
    assert "?" not in step_up["notes"] and "2027-01-01" in step_up["notes"]
    assert "ends" not in by_id["us-232-wood"]  # the 25% stays through 2026


# --- the actions added ------------------------------------------------------------------

ADDED: list[tuple[str, datetime, str, set[str]]] = [
    # id, effective, rate starts with, origins
    ("us-301-cn-2026-steps", at(2026, 1, 1), "25%", {"CN"}),
    ("us-232-semis", at(2026, 1, 15), "25%", {"*"}),
    ("us-tw-232-15", at(2026, 5, 1), "15% all-in", {"TW"}),
    ("us-301-brazil", at(2026, 7, 22), "+25%", {"BR"}),
    ("us-201-quartz", at(2026, 8, 15), "25% in quota; 50% over quota", {"*"}),
    ("us-338-canada", at(2026, 8, 22), "+50%", {"CA"}),
    ("us-232-drones", at(2026, 9, 3), "100%", {"*"}),
    ("us-232-drones-uk", at(2026, 9, 3), "+10%", {"GB"}),
    ("us-232-drones-components", at(2027, 2, 9), "25%", {"*"}),
    ("us-338-canada-widened", at(2026, 9, 15), "+50%", {"CA"}),
    ("us-338-canada-bans", at(2026, 9, 29), "import prohibited", {"CA"}),
    ("us-cn-301-exclusions-end", at(2026, 11, 9, 23, 59), "Section 301 List 1-4A", {"CN"}),
    ("us-301-maritime-resume", at(2026, 11, 10), "+100%", {"CN"}),
    ("us-232-polysilicon", at(2026, 12, 4), "+15%", {"*"}),
    ("us-232-polysilicon-uk", at(2026, 12, 4), "+10%", {"GB"}),
    ("us-301-nicaragua-10", at(2027, 1, 1), "+10%", {"NI"}),
    ("us-301-nicaragua-15", at(2028, 1, 1), "+15%", {"NI"}),
    ("us-kr-autos-15", at(2025, 11, 1), "15% all-in", {"KR"}),
    ("us-kr-deal", at(2025, 11, 14), "15% all-in", {"KR"}),
    ("us-ch-li-deal", at(2025, 11, 14), "15% all-in", {"CH", "LI"}),
    ("us-ieepa-ag-exempt", at(2025, 11, 13), "reciprocal tariff 0%", {"*"}),
]


def _param_id(value: object) -> str:
    # Sorted: a set's order differs between processes, and xdist workers must agree on ids.
    if isinstance(value, set | frozenset):
        return "+".join(sorted(value))
    return str(value)


@pytest.mark.parametrize(("rule_id", "effective", "rate", "origins"), ADDED, ids=_param_id)
def test_added_action(
    by_id: dict[str, dict[str, Any]],
    rule_id: str,
    effective: datetime,
    rate: str,
    origins: set[str],
) -> None:
    rule = by_id[rule_id]
    assert _is_at(rule["effective"], effective), rule["effective"]
    assert rule["rate"].startswith(rate), rule["rate"]
    assert set(rule["origins"]) == origins
    assert rule["status"] == "scheduled"


def test_the_2025_deal_rules_sit_in_the_2025_file_and_end_with_ieepa() -> None:
    in_2025 = {rule["id"]: rule for rule in _load(US_2025)["rule"]}
    for rule_id in ("us-kr-deal", "us-ch-li-deal", "us-ieepa-ag-exempt"):
        assert _is_at(in_2025[rule_id]["ends"], IEEPA_CUTOFF), rule_id
    # The Korean cars are Section 232: not ended by the ruling.
    assert "ends" not in in_2025["us-kr-autos-15"]
    assert "8703" in in_2025["us-kr-autos-15"]["hts"]
    assert "2025-23316" in in_2025["us-ch-li-deal"]["source"]


def test_forced_labor_301_covers_60_economies_from_the_end_of_section_122(
    by_id: dict[str, dict[str, Any]],
) -> None:
    groups = {
        "us-301-forced-labor-10": ("+10%", 17),
        "us-301-forced-labor-10-total": ("10% total", 2),
        "us-301-forced-labor-12-5-total": ("12.5% total", 3),
        "us-301-forced-labor-12-5": ("+12.5%", 38),
    }
    economies: list[str] = []
    for rule_id, (rate, count) in groups.items():
        rule = by_id[rule_id]
        assert _is_at(rule["effective"], SECTION_122_END), rule_id
        assert _is_at(rule["effective"], by_id["us-122-surcharge"]["ends"]), rule_id
        assert rule["rate"].startswith(rate), rule_id
        assert "ends" not in rule and rule["hts"] == ["*"], rule_id
        assert "2026-15181" in rule["source"], rule_id
        # The EU counts as one economy; its members are listed for subscribers' filters.
        origins = [c for c in rule["origins"] if c not in EU - {"EU"}]
        assert len(origins) == count, (rule_id, len(origins))
        economies += origins
    assert len(economies) == len(set(economies)) == 60
    assert set(by_id["us-301-forced-labor-10-total"]["origins"]) == EU | {"TW"}
    assert set(by_id["us-301-forced-labor-12-5-total"]["origins"]) == {"JP", "KR", "CH"}
    assert {"CN", "HK", "BR", "NI", "VN"} <= set(by_id["us-301-forced-labor-12-5"]["origins"])
    assert {"CA", "MX", "IN", "GB"} <= set(by_id["us-301-forced-labor-10"]["origins"])
    assert "MO" not in economies


def test_brazil_301_stacks_with_the_forced_labor_301(by_id: dict[str, dict[str, Any]]) -> None:
    brazil = by_id["us-301-brazil"]
    assert "2026-14542" in brazil["source"] and brazil["hts"] == ["*"]
    assert "37.5%" in brazil["rate"]


def test_section_338_on_canada_and_its_bans(by_id: dict[str, dict[str, Any]]) -> None:
    duty, bans = by_id["us-338-canada"], by_id["us-338-canada-bans"]
    assert duty["basis"].startswith("Section 338") and bans["basis"].startswith("Section 338")
    assert "11056" in duty["basis"]  # the proclamation that moved it to 08-22
    assert f"USDHSCBP-{70050970:x}" == bans["source"].rsplit("/", 1)[-1]
    assert duty["effective"] < by_id["us-338-canada-widened"]["effective"] < bans["effective"]


def test_semiconductors_drones_and_polysilicon_are_section_232(
    by_id: dict[str, dict[str, Any]],
) -> None:
    assert "11002" in by_id["us-232-semis"]["basis"]
    assert "11055" in by_id["us-232-drones"]["basis"]
    assert by_id["us-232-drones"]["source"].endswith(f"USDHSCBP-{69738151:x}")
    caps = by_id["us-232-drones-caps-15"]
    assert set(caps["origins"]) == EU | {"JP", "LI", "KR", "CH", "TW"}
    poly = by_id["us-232-polysilicon"]
    assert {"280461", "381800", "854142", "854143"} == set(poly["hts"])
    assert "$21/kg" in poly["rate"]
    assert set(by_id["us-232-polysilicon-caps-15"]["origins"]) == EU | {
        "LI", "JP", "KR", "CH", "TW",
    }  # fmt: skip
    # Still ahead on the review date.
    assert poly["effective"].date() > REVIEWED


def test_solar_safeguard_ended_and_quartz_steps_down_each_august(
    by_id: dict[str, dict[str, Any]],
) -> None:
    solar = by_id["us-201-solar"]
    assert _is_at(solar["ends"], at(2026, 2, 7))
    assert {"854142", "854143"} == set(solar["hts"])
    assert "2026-05170" in solar["source"]
    chain = ["us-201-quartz", "us-201-quartz-2027", "us-201-quartz-2028", "us-201-quartz-2029"]
    rates = [("25%", "50%"), ("23%", "49%"), ("21%", "48%"), ("19%", "47%")]
    for rule_id, (in_quota, over_quota) in zip(chain, rates, strict=True):
        rate = by_id[rule_id]["rate"]
        assert rate == f"{in_quota} in quota; {over_quota} over quota", rule_id
        assert "11051" in by_id[rule_id]["basis"]
    for earlier, later in itertools.pairwise(chain):
        assert by_id[earlier]["ends"] == by_id[later]["effective"], (earlier, later)
    assert _is_at(by_id[chain[-1]]["ends"], at(2030, 8, 15))


def test_china_301_steps_and_the_november_deadlines(by_id: dict[str, dict[str, Any]]) -> None:
    steps = by_id["us-301-cn-2026-steps"]
    assert "2024-21217" in steps["source"]
    assert {"850760", "401512"} <= set(steps["hts"])
    for rate in ("25%", "50%", "100%"):
        assert rate in steps["rate"]
    exclusions = by_id["us-cn-301-exclusions-end"]
    assert _is_at(exclusions["effective"], datetime(2026, 11, 9, 23, 59, tzinfo=EST))
    assert "2025-21671" in exclusions["source"]
    maritime = by_id["us-301-maritime-resume"]
    assert {"871639", "842619"} <= set(maritime["hts"])
    assert maritime["effective"] > exclusions["effective"]


def test_nicaragua_steps_follow_each_other(by_id: dict[str, dict[str, Any]]) -> None:
    ten, fifteen = by_id["us-301-nicaragua-10"], by_id["us-301-nicaragua-15"]
    assert ten["ends"] == fifteen["effective"]
    assert "ends" not in fifteen
    assert "2025-22690" in ten["source"] and "2025-22690" in fifteen["source"]


def test_shipped_config_loads_both_files_with_the_real_loader(
    rules: list[dict[str, Any]],
) -> None:
    config = pytest.importorskip("notifier.config")
    loaded = config.load_config(NOTIFIER, environ={})
    assert sorted(rule.id for rule in loaded.rules) == sorted(rule["id"] for rule in rules)


def test_calendar_command_lists_the_2026_actions_in_order_with_their_sources(
    capsys: pytest.CaptureFixture[str], by_id: dict[str, dict[str, Any]]
) -> None:
    """Done when: ``calendar --from 2026-01-01 --days 400`` lists the 2026 actions above
    in order with their sources (the shipped config, as an analyst runs it)."""
    cli = pytest.importorskip("notifier.cli")
    code = cli.main(["calendar", "--from", "2026-01-01", "--days", "400", "-c", str(NOTIFIER)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    effective = [line.split()[4] for line in lines if line[22:].startswith("effective ")]
    in_order = [
        "us-301-cn-2026-steps", "us-232-semis", "us-122-surcharge",
        "us-232-metals-restructure", "us-232-metals-camx", "us-tw-232-15",
        "us-232-metals-june", "us-301-brazil", "us-301-forced-labor-10", "us-pharma",
        "us-201-quartz", "us-338-canada", "us-232-drones", "us-338-canada-widened",
        "us-232-pharma-all", "us-cn-301-exclusions-end", "us-301-maritime-resume",
        "us-232-polysilicon", "us-232-wood-step-up", "us-301-nicaragua-10",
    ]  # fmt: skip
    assert [rule_id for rule_id in effective if rule_id in in_order] == in_order
    expired = {line.split()[4] for line in lines if line[22:].startswith("expired ")}
    assert {"us-201-solar", "us-ieepa-in-25", "us-232-metals-50", "us-122-surcharge"} <= expired
    sources = dict(line.split() for line in lines[lines.index("sources:") + 1 :])
    for rule_id in [*in_order, *expired]:
        assert sources[rule_id] == by_id[rule_id]["source"], rule_id
