"""``python bench/launch.py ARGS``: ``tariff-notifier ARGS`` on the loop that
``notifier.runtime.loop`` picks (uvloop where installed; ``TARIFF_NOTIFIER_LOOP=asyncio``
for the stdlib loop), whether or not the CLI already asks that module for its loop."""

from __future__ import annotations

import asyncio


def main() -> int:
    from notifier.cli import main as cli_main
    from notifier.runtime.loop import loop_kind

    if loop_kind() == "uvloop":
        import uvloop

        # asyncio.run() (Python 3.11) makes its loop through the policy.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return cli_main()


# The guard matters: spawned parse workers import this file again as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
