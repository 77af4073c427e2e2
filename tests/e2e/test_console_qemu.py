"""The browser console against a real QEMU guest: Chromium opens the console page, noVNC connects
through the panel's WebSocket proxy to the guest's VNC, and the canvas shows the guest's screen.

The guest (tests/support/guest_image.py) prints its CORRAL-* markers to the serial port and to
tty0. Once the serial log says it is ready, the test waits (with a deadline) until the noVNC canvas
matches QEMU's own screenshot of the same screen (libvirt's virDomainScreenshot), which must have
text on it. The guest is built with a VNC password, so the proxy's VNC Authentication is done
against real QEMU; the browser never sees that password. A screenshot is saved to
/tmp/shots/console.png.

Skipped only when no libvirt daemon can be started here (the reason is printed).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import transaction
from corral.drivers.base import InstanceSpec
from corral.kit.clock import utcnow
from corral.models.servers import Server
from corral.models.users import User
from corral.servers import tasks
from corral.servers.service import ServerOrder, ServerSetup, servers
from corral.servers.tasks import instance_name
from tests.e2e.conftest import NewPage, PageProblems, serving
from tests.factories.users import DEFAULT_PASSWORD
from tests.integration.test_fleet_qemu import (  # noqa: F401 (fixtures used by name)
    ACTOR,
    Panel,
    guest_files,
    libvirt_uri,
    panel,
    pool,
    serial_markers,
)
from tests.support.jobs import run_job

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots")  # noqa: S108 (where the team looks at screenshots)
SCREEN_DEADLINE_S = 60.0
VNC_PASSWORD = "Vnc-pw7"
HOSTNAME = "console-one.example.net"
# A VGA text screen is mostly black; lit text pixels and a near-exact match are both required.
MIN_LIT_PIXELS = 2000
MIN_MATCH = 0.995
CHANNEL_TOLERANCE = 40


@pytest.fixture
def live_server(panel: Panel, settings: Settings) -> Iterator[str]:  # noqa: F811
    """The panel on the QEMU fixture's database (its own worker runs in the test's loop)."""
    url: URL = panel.factory.kw["bind"].url
    with serving(settings, url) as base:
        yield base


def _screenshot(conn: Any, name: str) -> dict[str, Any]:
    """QEMU's own view of the guest's screen: a PNG (current QEMU) or raw RGB from a PPM (older)."""
    domain = conn.lookupByName(name)
    stream = conn.newStream(0)
    domain.screenshot(stream, 0, 0)
    data = bytearray()
    while chunk := stream.recv(1 << 18):
        data.extend(chunk)
    stream.finish()
    ppm = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", bytes(data[:64]))
    if ppm is not None:
        width, height = int(ppm[1]), int(ppm[2])
        raw = bytes(data[ppm.end() : ppm.end() + width * height * 3])
        return {"kind": "rgb", "width": width, "height": height, "data": base64.b64encode(raw).decode()}
    assert data.startswith(b"\x89PNG"), f"unexpected screenshot format: {bytes(data[:16])!r}"
    return {"kind": "png", "data": base64.b64encode(data).decode()}


# Compares the noVNC canvas with QEMU's screenshot in the page (the browser decodes the PNG).
# Returns null until noVNC has a canvas, else the share of matching pixels and how many pixels of
# QEMU's screen are lit (text on a black VGA console).
_COMPARE = """
async ({ shot, tolerance }) => {
  const canvas = document.querySelector("[data-console-screen] canvas");
  if (!canvas || canvas.width === 0) return null;
  const bytes = Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
  let reference, width, height, step;
  if (shot.kind === "png") {
    const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    [width, height, step] = [bitmap.width, bitmap.height, 4];
    const scratch = new OffscreenCanvas(width, height).getContext("2d");
    scratch.drawImage(bitmap, 0, 0);
    reference = scratch.getImageData(0, 0, width, height).data;
  } else {
    [width, height, step, reference] = [shot.width, shot.height, 3, bytes];
  }
  const size = { width, height, canvas: [canvas.width, canvas.height] };
  if (canvas.width !== width || canvas.height !== height) return { match: 0, lit: 0, ...size };
  const shown = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  let same = 0;
  let lit = 0;
  for (let p = 0; p < width * height; p++) {
    const [r, s] = [p * step, p * 4];
    if (reference[r] + reference[r + 1] + reference[r + 2] > 150) lit++;
    if ([0, 1, 2].every((c) => Math.abs(reference[r + c] - shown[s + c]) <= tolerance)) same++;
  }
  return { match: same / (width * height), lit, ...size };
}
"""


@pytest.fixture
def vnc_password(monkeypatch: pytest.MonkeyPatch) -> str:
    """Build guests with a VNC password, as a node configured with one would (the worker runs in
    this process, so the provisioning job sees the patched spec)."""
    original = tasks.build_spec

    async def with_password(*args: Any, **kwargs: Any) -> InstanceSpec:
        return dataclasses.replace(await original(*args, **kwargs), vnc_password=VNC_PASSWORD)

    monkeypatch.setattr(tasks, "build_spec", with_password)
    return VNC_PASSWORD


async def _sign_in(page: Page, email: str) -> None:
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))


async def test_the_console_shows_the_guests_screen(
    vnc_password: str,
    panel: Panel,  # noqa: F811
    live_server: str,
    new_page: NewPage,
    page_problems: PageProblems,
) -> None:
    async with transaction(panel.factory) as session:
        order = ServerOrder(
            user_id=panel.user_id,
            location_id=panel.location_id,
            name="console",
            vcpus=1,
            memory_mib=256,
            disk_gib=1,
        )
        server_id = (await servers.reserve(session, ACTOR, order)).id
        owner = await session.get(User, panel.user_id)
        assert owner is not None
        email = owner.email
    setup = ServerSetup(
        template_id=panel.template_id, hostname=HOSTNAME, ssh_keys=["ssh-ed25519 AAAAC3Nz e2e"]
    )
    await run_job(
        panel.factory, lambda session: servers.setup(session, ACTOR, server_id, setup), deadline_s=180
    )
    name = instance_name(server_id)
    await serial_markers(panel.logs / f"{name}-serial0.log", hostname=HOSTNAME)

    page = await new_page()
    await _sign_in(page, email)
    await page.goto(f"/servers/{server_id}/console")
    await expect(page.locator("[data-console-status]")).to_have_text("Connected", timeout=30_000)

    deadline = time.monotonic() + SCREEN_DEADLINE_S
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shot = await asyncio.to_thread(_screenshot, panel.conn, name)
        seen = await page.evaluate(_COMPARE, {"shot": shot, "tolerance": CHANNEL_TOLERANCE}) or {}
        if seen.get("match", 0) >= MIN_MATCH and seen.get("lit", 0) >= MIN_LIT_PIXELS:
            break
        await asyncio.sleep(0.5)
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "console.png"), full_page=True)
    assert seen.get("lit", 0) >= MIN_LIT_PIXELS, f"QEMU's screen has almost no text: {seen}"
    assert seen.get("match", 0) >= MIN_MATCH, f"the noVNC canvas does not match QEMU's screen: {seen}"
    # The page never carried the VNC password.
    assert vnc_password not in await page.content()

    # Suspended: the console page refuses with a clear 409 and issues no ticket.
    async with transaction(panel.factory) as session:
        server = await session.get(Server, server_id)
        assert server is not None
        server.suspended_at = utcnow()
    page_problems.allow(rf"409.*/servers/{server_id}/console\b")  # the request and its console line
    response = await page.goto(f"/servers/{server_id}/console")
    assert response is not None
    assert response.status == 409
    await expect(page.get_by_text("This server is suspended, so its console is closed.")).to_be_visible()
    await page.screenshot(path=str(SHOTS / "console_refused.png"), full_page=True)
