"""``HttpPoster.post`` never raises, whatever the target: a URL aiohttp or yarl refuses
is a result for the delivery log."""

from __future__ import annotations

from notifier.delivery.channels.http import HttpPoster


async def test_a_target_that_cannot_be_posted_to_is_a_result_not_an_exception() -> None:
    poster = HttpPoster(timeout_s=2.0)
    await poster.open()
    try:
        results = [
            await poster.post(url, b"{}", {})
            for url in (
                "ftp://127.0.0.1/x",  # aiohttp refuses the scheme
                "http://127.0.0.1:99999/x",  # yarl refuses the port
                "http://[::1/x",  # and the host
                "/just/a/path",
            )
        ]
    finally:
        await poster.close()
    for result in results:
        assert (result.outcome, result.detail) == (
            "failed",
            "invalid webhook URL (http or https only)",
        ), result
        assert result.sha256 is not None  # the hash of what would have been sent
