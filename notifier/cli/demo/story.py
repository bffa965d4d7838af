"""The story the demo replays: news articles, the sample subscribers, the instants visited.

The articles are written for this demo in the style of the wire services and agencies
named; their facts follow the shipped calendar, their links point at the real Federal
Register or CBP documents where there is one and at ``news.example`` otherwise. The
official documents (Federal Register, Public Inspection, CSMS, the HTS) are in
:mod:`notifier.cli.demo.official`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.core.calendar import all_transitions
from notifier.core.model import Rule

EASTERN = ZoneInfo("America/New_York")
# The silent baseline: the morning the proclamation on cars and parts (10908, signed
# March 26) goes on public inspection, the day before its publication and before the 25%
# on cars applies (April 3). Every source's first poll is here; what appears later alerts.
START = datetime(2025, 4, 2, 12, 0, tzinfo=EASTERN)
END = datetime(2025, 9, 30, 23, 59, tzinfo=EASTERN)
REMIND = ("7d", "1d")


@dataclass(frozen=True, slots=True)
class Article:
    guid: str
    published: datetime
    source: str
    title: str
    summary: str
    link: str


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


STORY: tuple[Article, ...] = (
    Article(
        "upi-2025-04-09-pause",
        at("2025-04-09T14:20:00-04:00"),
        "UPI",
        "Trump pauses higher 'reciprocal' tariffs for 90 days, keeps 10% baseline",
        "President Donald Trump on Wednesday paused for 90 days the country-specific rates "
        "that took effect hours earlier, leaving a 10% baseline duty on most imports. "
        "The rate on Chinese goods was raised to 125%.",
        "https://news.example/upi/2025/04/09/reciprocal-tariff-pause",
    ),
    Article(
        "upi-2025-04-17-japan-talks",
        at("2025-04-17T09:12:00-04:00"),
        "UPI",
        "Japan, U.S. begin tariff talks as 25% duties on cars bite",
        "Japan's chief negotiator Ryosei Akazawa met President Donald Trump in Washington "
        "for the first round of talks on U.S. tariffs. Japanese steel and aluminum have paid "
        "25% since March 12 and Japanese cars 25% since April 3; a 25% tariff on auto parts "
        "starts May 3. Most other Japanese goods pay the 10% baseline while the 24% rate "
        "announced for Japan on April 2 is paused for 90 days.",
        "https://news.example/upi/2025/04/17/japan-us-tariff-talks",
    ),
    Article(
        "reuters-2025-05-03-auto-parts",
        at("2025-05-03T07:15:00-04:00"),
        "Reuters",
        "U.S. 25% tariff on imported auto parts takes effect; Japanese suppliers brace",
        "A 25% Section 232 tariff on imported auto parts, including engines, transmissions "
        "and electrical components, applies to goods entered from 12:01 a.m. EDT on "
        "Saturday, CBP said in a CSMS message to importers. USMCA-compliant parts stay "
        "duty-free for now. Japanese auto parts makers already face the 25% tariff on "
        "finished cars.",
        "https://content.govdelivery.com/bulletins/gd/USDHSCBP-3de7ef9",
    ),
    Article(
        "reuters-2025-05-12-geneva",
        at("2025-05-12T06:40:00-04:00"),
        "Reuters",
        "U.S. and China agree to cut tariffs for 90 days after Geneva talks",
        "The United States will lower its extra duty on Chinese goods from 125% to 10% "
        "from May 14 for 90 days; the 20% fentanyl tariff stays.",
        "https://news.example/reuters/2025/05/12/us-china-geneva",
    ),
    Article(
        "upi-2025-05-30-steel-50",
        at("2025-05-30T19:05:00-04:00"),
        "UPI",
        "Trump says steel tariff will double to 50% at rally near Pittsburgh",
        "Speaking at U.S. Steel's Irvin Works after backing its partnership with Japan's "
        "Nippon Steel, President Trump said the tariff on imported steel would rise from "
        "25% to 50%. A proclamation sets June 4 as the start date for steel and aluminum.",
        "https://news.example/upi/2025/05/30/steel-tariff-50",
    ),
    Article(
        "reuters-2025-07-22-japan-deal",
        at("2025-07-22T21:05:00-04:00"),
        "Reuters",
        "Trump announces trade deal with Japan: 15% tariff",
        "President Trump said the United States reached a deal with Japan under which "
        "Japanese goods, cars included, will face a 15% tariff instead of the 25% "
        "threatened for August 1, and Japan will invest $550 billion in the U.S. Tokyo said "
        "the 15% on cars includes the existing 2.5% duty.",
        "https://news.example/reuters/2025/07/22/trump-japan-trade-deal",
    ),
    Article(
        "wh-2025-09-04-japan-eo",
        at("2025-09-04T19:30:00-04:00"),
        "The White House",
        "Executive order implements U.S.-Japan agreement",
        "The President signed an executive order implementing the agreement with Japan: "
        "goods of Japan pay 15% in all (most-favored-nation duty plus the reciprocal "
        "tariff), retroactive to August 7, and Japanese cars and auto parts 15% in all "
        "once Commerce publishes the tariff changes. Civil aircraft are exempt.",
        "https://www.federalregister.gov/d/2025-17389",
    ),
    Article(
        "fr-2025-09-16-japan-autos",
        at("2025-09-16T08:45:00-04:00"),
        "Federal Register",
        "Japanese autos and auto parts: 15% tariff now in effect",
        "Commerce notice implementing the U.S.-Japan agreement: passenger vehicles, light "
        "trucks and auto parts of Japan entered from 12:01 a.m. EDT on September 16, 2025 "
        "pay 15% including the MFN duty instead of 25% plus MFN (HTS 9903.94.40-.43).",
        "https://www.federalregister.gov/d/2025-17908",
    ),
)


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    about: str  # one line for the printout
    filters: str  # TOML lines of its [[subscriber]] table besides id and email
    email: tuple[str, ...] = ()
    hook_path: str | None = None  # where its webhook posts, on the demo's receiver

    def toml(self) -> str:
        email = f"email = {json.dumps(list(self.email))}\n" if self.email else ""
        return f'\n[[subscriber]]\nid = "{self.id}"\n{email}{self.filters}\n'


ERP_HOOK = "/hooks/erp"
BROKER_HOOK = "/hooks/broker"


def subscribers(*, hook_base: str, secrets: dict[str, str]) -> tuple[Subscriber, ...]:
    """The sample subscribers; ``secrets`` maps each webhook path to its ``whsec_`` key.

    ``customs-broker`` is there for the official documents: a Section 232 proclamation,
    its Public Inspection filing and CBP's guidance apply to every origin and name no
    country, so ``jp-auto-importer`` (origins JP and HTS) never hears of them (its origins
    filter needs an entry that names Japan); HTS lines name no country either, but they
    carry ``origins = ["*"]``, which every origins filter accepts. The broker's entry
    system watches heading 8708 from any origin, on a webhook.
    """
    erp, broker = hook_base + ERP_HOOK, hook_base + BROKER_HOOK
    return (
        Subscriber(
            "jp-auto-importer",
            "email; origins JP, HTS 8703 (cars) and 8708 (auto parts)",
            'origins = ["JP"]\nhts = ["8703", "8708"]',
            email=("imports@jp-autoparts.example",),
        ),
        Subscriber(
            "steel-buyer",
            "email; origins JP, HTS 72 and 73 (steel)",
            'origins = ["JP"]\nhts = ["72", "73"]',
            email=("purchasing@steel-buyer.example",),
        ),
        Subscriber(
            "erp",
            "Standard Webhooks; events tariff.*, origins JP",
            f'webhook = "{erp}"\nsecret = "{secrets[ERP_HOOK]}"\n'
            'events = ["tariff.*"]\norigins = ["JP"]',
            hook_path=ERP_HOOK,
        ),
        Subscriber(
            "news-watcher",
            'email; events feed.entry.*, keyword "japan"',
            'events = ["feed.entry.*"]\nkeywords = ["japan"]',
            email=("desk@news-watcher.example",),
        ),
        Subscriber(
            "customs-broker",
            "Standard Webhooks; events feed.entry.* and hts.line.*, HTS 8708, any origin",
            f'webhook = "{broker}"\nsecret = "{secrets[BROKER_HOOK]}"\n'
            'events = ["feed.entry.*", "hts.line.*"]\nhts = ["8708"]',
            hook_path=BROKER_HOOK,
        ),
    )


# --- the simulated clock and the instants it visits ------------------------------------


@dataclass
class SimClock:
    """The notifier's clock, also read by the local peers to stamp what they receive."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def concerns_japan(rule: Rule) -> bool:
    """Every demo subscriber of calendar events filters on Japan: only these rules can
    reach one."""
    return "JP" in rule.origins or "*" in rule.origins


def story_instants(
    rules: Iterable[Rule],
    *,
    remind: Iterable[timedelta],
    articles: Iterable[Article],
    start: datetime,
    end: datetime,
    zone: ZoneInfo | None = None,
    also: Iterable[datetime] = (),
) -> list[datetime]:
    """The baseline, each article's time, each transition of a rule touching Japan and
    the ``also`` instants (when an official document appears).

    Stepping exactly onto a transition's instant is what makes its alert on time
    (``late: false``); other rules' transitions in between fire late but reach no
    demo subscriber, all of whom filter on Japan.
    """
    marks = {start}
    marks.update(a.published for a in articles if start < a.published <= end)
    marks.update(moment for moment in also if start < moment <= end)
    marks.update(
        tr.at
        for tr in all_transitions([r for r in rules if concerns_japan(r)], remind=remind, zone=zone)
        if start < tr.at <= end
    )
    return sorted(marks)
