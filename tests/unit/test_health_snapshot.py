"""/healthz and /metrics answer from a snapshot of the store refreshed at most once per
``STATUS_TTL_S``: 50 probes a second cost the store one read a second, never one each
(issue 12: each probe used to run two store queries on the delivery loop)."""

from __future__ import annotations

import asyncio
from typing import Any

from notifier.runtime import health
from notifier.runtime.health import HealthService
from notifier.runtime.metrics import Metrics


async def test_concurrent_probes_share_one_store_read_per_period() -> None:
    reads = 0

    async def read() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0)  # a real read yields to the loop
        return {"up": True, "reads": reads}

    async def status() -> dict[str, Any]:
        return {}

    async def unsubscribe(_sub: str, _token: str) -> str | None:
        return None

    service = HealthService(metrics=Metrics(), status=status, unsubscribe=unsubscribe)
    answers = await asyncio.gather(*(service.snapshot(read) for _ in range(200)))
    assert reads == 1
    assert all(answer == {"up": True, "reads": 1} for answer in answers)
    # A copy each: a caller adding keys does not change what the others see.
    answers[0]["extra"] = True
    assert "extra" not in await service.snapshot(read)
    assert reads == 1


async def test_the_snapshot_is_read_again_after_its_period(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    reads = 0

    async def read() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"n": reads}

    async def status() -> dict[str, Any]:
        return {}

    async def unsubscribe(_sub: str, _token: str) -> str | None:
        return None

    service = HealthService(metrics=Metrics(), status=status, unsubscribe=unsubscribe)
    assert (await service.snapshot(read))["n"] == 1
    clock[0] += health.STATUS_TTL_S / 2
    assert (await service.snapshot(read))["n"] == 1
    clock[0] += health.STATUS_TTL_S
    assert (await service.snapshot(read))["n"] == 2
