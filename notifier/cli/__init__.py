"""The command line: parses arguments, loads the config, runs a command and maps errors
to exit codes (0 ok, 1 runtime failure, 2 bad usage or invalid config, 3 a strict pass
that left work undone). The commands themselves live in notifier/cli/commands.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from notifier import __version__
from notifier.config import Config, load_config
from notifier.errors import ConfigError, NotifierError, StoreError
from notifier.resources import shipped_path

DESCRIPTION = """\
Tells importers, brokers and trade-compliance teams when a tariff that touches their
goods changes: polls official sources and a dated calendar of tariff rules, and sends
each change once, by email and signed webhook, to the subscribers it concerns.

Start with `tariff-notifier check`, then `once` (one pass, for cron) or `run` (the
daemon). `calendar --in-force --origin JP --hts 8708` shows what applies today.
"""

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("notifier")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on bad usage: keep that
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _common() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $NOTIFIER_CONFIG, else config/notifier.toml)",
    )
    common.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"]
    )
    common.add_argument("--log-format", default=argparse.SUPPRESS, choices=["text", "json"])
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="tariff-notifier",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tariff-notifier {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", parents=[common], help="the daemon, in the foreground")
    run.add_argument(
        "--health",
        metavar="HOST:PORT",
        help="serve /healthz, /metrics and unsubscribe links here instead of [notifier] "
        "health (port 0: any free port, logged and shown in /healthz)",
    )
    once = sub.add_parser("once", parents=[common], help="one pass, then exit")
    once.add_argument("--dry-run", action="store_true", help="print alerts; write and send nothing")
    once.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when the pass ran but some sources failed or deliveries are left to retry",
    )
    sub.add_parser("check", parents=[common], help="validate config, calendar and templates")
    cal = sub.add_parser("calendar", parents=[common], help="upcoming transitions")
    cal.add_argument("--from", dest="start", help="start date (YYYY-MM-DD; default: now)")
    cal.add_argument("--days", type=int, default=90, help="window length in days (default 90)")
    cal.add_argument("--json", action="store_true")
    cal.add_argument("--ics", type=Path, help="write an RFC 5545 calendar to this file")
    cal.add_argument(
        "--in-force", action="store_true", help="the rules in force (now, or --at), not transitions"
    )
    cal.add_argument("--at", help="with --in-force: a date (end of that day) or a datetime")
    cal.add_argument("--origin", help="with --in-force: an ISO country code, e.g. JP")
    cal.add_argument("--hts", help="with --in-force: an HTS code or prefix, e.g. 8708.29")
    cal.add_argument("--subscriber", help="with --in-force: that subscriber's filters")
    dl = sub.add_parser(
        "deliveries",
        parents=[common],
        help="the delivery log; `show ID`; `retry ID…|--all-dead`; `export`",
        description="The delivery log, newest first. Ids may be given by a unique prefix.",
    )
    dl.add_argument(
        "action",
        nargs="*",
        help="`show ID` (every attempt); `retry ID…` or `retry --all-dead` re-queues dead "
        "or failed deliveries (a gone endpoint's block is lifted); `export` writes the ledger",
    )
    dl.add_argument("--status", choices=["queued", "sent", "failed", "dead"])
    dl.add_argument("--subscriber", metavar="ID", help="only this subscriber's deliveries")
    dl.add_argument(
        "--event", metavar="TYPE|ID", help="an event type glob (tariff.rule.*) or an event id"
    )
    dl.add_argument("--since", metavar="DATE", help="created (export: attempted) from this date on")
    dl.add_argument(
        "--all-dead", action="store_true", help="with retry: every dead delivery (of --subscriber)"
    )
    dl.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="export format")
    dl.add_argument("--json", action="store_true")
    dl.add_argument("--limit", type=int, default=200)
    dg = sub.add_parser(
        "digests",
        parents=[common],
        help="what waits for each digest and when it goes; `send SUBSCRIBER_ID`",
    )
    dg.add_argument("action", nargs="*", help="`send SUBSCRIBER_ID` sends that digest now")
    dg.add_argument("--subscriber", metavar="ID", help="only this subscriber")
    dg.add_argument(
        "--preview", action="store_true", help="print each waiting digest as it would be sent"
    )
    dg.add_argument("--json", action="store_true")
    subs = sub.add_parser(
        "subscribers", parents=[common], help="`unblock SUBSCRIBER_ID`: lift a 410 Gone block"
    )
    subs.add_argument(
        "action",
        nargs="*",
        help="`unblock SUBSCRIBER_ID`: deliver to its gone endpoints again, re-queueing "
        "what was not sent meanwhile",
    )
    src = sub.add_parser(
        "sources",
        parents=[common],
        help="every source and its health; `release|discard SOURCE_ID` a held change",
    )
    src.add_argument("action", nargs="*", help="`release SOURCE_ID` or `discard SOURCE_ID`")
    src.add_argument("--json", action="store_true")
    test = sub.add_parser(
        "send-test",
        parents=[common],
        help="send a sample alert the subscriber's filters match, marked as a test",
    )
    test.add_argument("subscriber_id")
    sub.add_parser("demo", parents=[common], help="offline replay of the April-May 2025 story")
    sub.add_parser("migrate", parents=[common], help="create or upgrade the state schema")
    return parser


def config_path(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The config to load, and the state base when it is the one inside the package."""
    given = getattr(args, "config", None) or os.environ.get("NOTIFIER_CONFIG")
    if given:
        return Path(given), None
    local = Path("config/notifier.toml")
    if local.exists():
        return local, None
    # Installed from a wheel and run elsewhere: the shipped config, state in the cwd.
    return shipped_path("config") / "notifier.toml", Path.cwd()


def load(args: argparse.Namespace) -> Config:
    path, state_base = config_path(args)
    return load_config(path, state_base=state_base)


def setup_logging(args: argparse.Namespace) -> None:
    from notifier.logs import configure_logging

    configure_logging(
        level=getattr(args, "log_level", None) or os.environ.get("NOTIFIER_LOG_LEVEL", "info"),
        fmt=getattr(args, "log_format", None) or "text",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    try:
        return dispatch(args)
    except ConfigError as exc:
        print(f"tariff-notifier: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"tariff-notifier: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except NotifierError as exc:
        print(f"tariff-notifier: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:
        # `tariff-notifier calendar | head`: the reader left; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def dispatch(args: argparse.Namespace) -> int:
    from notifier.cli import commands

    if args.command == "demo":
        from notifier.cli.demo import run_demo

        return run_demo()
    config = load(args)
    handler = {
        "check": commands.check,
        "once": commands.once,
        "run": commands.run,
        "calendar": commands.calendar,
        "deliveries": commands.deliveries,
        "digests": commands.digests,
        "subscribers": commands.subscribers,
        "send-test": commands.send_test,
        "sources": commands.sources,
        "migrate": commands.migrate,
    }[args.command]
    return handler(config, args)
