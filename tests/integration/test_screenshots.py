"""Every event type's HTML email, rendered in headless Chromium and saved under docs/.

The screenshots are the review copy of what subscribers see (docs/screenshots/*.png). This
test photographs every page afresh and checks that each one shows something: a broken
template or a blank page fails here before anyone opens an inbox. It writes into a
temporary folder, so a test run leaves the checkout clean; with
``NOTIFIER_UPDATE_SCREENSHOTS=1`` it writes docs/screenshots/ instead (commit the result).
"""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from notifier.core.model import EVENT_TYPES
from notifier.delivery.render import Renderer
from tests.samples import every_sample_event

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = (800, 1300)
MOBILE = (390, 1700)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


def _screenshot(html: Path, png: Path, *, size: tuple[int, int], profile: Path) -> None:
    # Flags keep Chromium offline and quiet: no first-run, sync, updates or QUIC probes.
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={png}",
        html.as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=90)


def _png_rows(png: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the filtered scanlines of an 8-bit RGB(A) PNG, stdlib only."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), "expected 8-bit RGB or RGBA"
    stride = 1 + width * (3 if colour == 2 else 4)
    raw = zlib.decompress(idat)
    return width, height, [raw[i * stride : (i + 1) * stride] for i in range(height)]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Render every sample (and a digest of all of them) and photograph each one."""
    work = tmp_path_factory.mktemp("screens")
    renderer = Renderer(override_dir=None, timezone=ZoneInfo("America/New_York"))
    unsubscribe = "https://alerts.example.com/unsubscribe/compliance-team/tok_4f9a2c"
    pages: dict[str, str] = {}
    events = every_sample_event()
    for event in events:
        email = renderer.render_email(
            event, subscriber_id="compliance-team", unsubscribe_url=unsubscribe
        )
        pages[event.type] = email.html
    digest = renderer.render_digest(
        events[:5] + events[6:7],
        subscriber_id="compliance-team",
        unsubscribe_url=unsubscribe,
        period="daily 08:00",
    )
    pages["digest"] = digest.html
    update = os.environ.get("NOTIFIER_UPDATE_SCREENSHOTS") == "1"
    folder = SCREENSHOTS if update else work / "png"
    jobs = [(name, DESKTOP, folder / f"{name}.png") for name in pages]
    jobs.append(("tariff.rule.changed", MOBILE, folder / "mobile-tariff.rule.changed.png"))
    folder.mkdir(parents=True, exist_ok=True)

    def shoot(job: tuple[str, tuple[int, int], Path]) -> None:
        name, size, png = job
        html = work / f"{name}.html"
        html.write_text(pages[name], encoding="utf-8")
        png.unlink(missing_ok=True)
        _screenshot(html, png, size=size, profile=work / f"profile-{png.stem}")

    # Two at a time: one Chromium per core on the 2-core machines we run on.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(shoot, jobs))
    return {png.stem: png for _, _, png in jobs}


def test_every_event_type_and_the_digest_have_a_screenshot(screenshots: dict[str, Path]) -> None:
    assert set(screenshots) >= {*EVENT_TYPES, "digest"}
    for png in screenshots.values():
        assert png.is_file(), png
        assert png.stat().st_size > 20_000, f"{png.name} is suspiciously small"
        # The review copy in docs/ has every page too (regenerated with the variable above).
        assert (SCREENSHOTS / png.name).is_file(), f"docs/screenshots/{png.name} is missing"


def test_screenshots_have_the_requested_size_and_are_not_blank(
    screenshots: dict[str, Path],
) -> None:
    for name, png in screenshots.items():
        width, height, rows = _png_rows(png)
        expected = MOBILE if name.startswith("mobile-") else DESKTOP
        assert (width, height) == expected, name
        # A blank page compresses to a handful of distinct scanlines; text makes hundreds.
        assert len(set(rows)) > 150, f"{png.name} looks blank"
