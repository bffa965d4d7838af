"""The event loop: uvloop where it is installed, the standard library's otherwise.

uvloop (``pip install tariff-notifier[fast]``) runs the same asyncio programs on libuv;
measured here it sends ~15% more webhooks per second through aiohttp for the same CPU
(PITFALLS.md). Nothing in tariff-notifier depends on it: without it, or with
``TARIFF_NOTIFIER_LOOP=asyncio`` in the environment, the stdlib loop runs everything.

    from notifier.runtime.loop import run
    exit_code = run(main())          # instead of asyncio.run(main())

    loop = new_event_loop()          # where a loop is made by hand
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["LOOP_ENV", "loop_kind", "new_event_loop", "run"]

T = TypeVar("T")

#: Set to ``asyncio`` to use the stdlib loop even where uvloop is installed.
LOOP_ENV = "TARIFF_NOTIFIER_LOOP"

LoopKind = Literal["uvloop", "asyncio"]


def loop_kind() -> LoopKind:
    """Which loop :func:`new_event_loop` makes: ``uvloop`` if importable and not turned
    off through :data:`LOOP_ENV`, else ``asyncio``."""
    if os.environ.get(LOOP_ENV, "").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind :func:`loop_kind` names."""
    if loop_kind() == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a loop from :func:`new_event_loop` (same semantics:
    a new loop, async generators and the default executor shut down at the end)."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
