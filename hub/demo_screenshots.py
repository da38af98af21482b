"""Take the README's screenshots from the running demo: `python -m hub.demo_screenshots`.

Start the demo first (`make demo`, another terminal). Signs in as the demo member and the
demo plan administrator through North's sandbox identity provider, like a person would,
opens the main pages in Debian's Chromium (Playwright) and writes one PNG per page into
hub/docs/screenshots/ (1280 px wide). The member's request is made once, through the
form, if the member has none yet; running it again reuses it.

Talks to the demo only over HTTP: no Django, so it can never touch the demo's data directly.
"""

import argparse
import contextlib
import datetime as dt
import re
import struct
import sys
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from hub.headless_chromium import chromium_launch

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "hub" / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 860}
# The demo's people (hub/demo.py prints them; sandbox/README.md "Accounts").
PAYER = "north"
MEMBER = "patricia.person"
ADMIN = "admin"
SANDBOX_PASSWORD = "sandbox-demo"  # noqa: S105 (every sandbox account's published password)
FORMER_PLAN = "Southern Cross Health"
CARD_NUMBER = "DH10001235"
DELIVERY_WAIT_MS = 120_000
REQUEST_PAGE = re.compile(rf"/p/{PAYER}/me/requests/\d+/")


def _demo_is_up(hub: str) -> bool:
    try:
        with urllib.request.urlopen(f"{hub}/healthz", timeout=3) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _sign_in(page: Page, hub: str, username: str) -> None:
    """Sign in at North's sandbox identity provider, the way the person would."""
    page.goto(f"{hub}/p/{PAYER}/sign-in/")
    page.fill("#username", username)
    page.fill("#password", SANDBOX_PASSWORD)
    page.click("button[value=sign-in]")
    page.wait_for_url(f"{hub}/p/{PAYER}/**")


def _optimized(png: bytes) -> bytes:
    """Return ``png`` with its image data recompressed at zlib's best level.

    Chromium favours speed when it encodes; the pixels are unchanged, only smaller.
    """
    signature, rest = png[:8], png[8:]
    chunks: list[tuple[bytes, bytes]] = []
    while rest:
        (length,) = struct.unpack(">I", rest[:4])
        kind, data = rest[4:8], rest[8 : 8 + length]
        chunks.append((kind, data))
        rest = rest[12 + length :]
    image = zlib.compress(zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT")), 9)
    out = [signature]
    for kind, data in chunks:
        if kind == b"IDAT":
            if image:
                data, image = image, b""
            else:
                continue
        crc = zlib.crc32(kind + data)
        out.append(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc))
    return b"".join(out)


class Camera:
    """Write one screenshot per page into the output folder and say what it wrote."""

    def __init__(self, output: Path) -> None:
        self.output = output
        output.mkdir(parents=True, exist_ok=True)

    def shoot(self, page: Page, name: str) -> None:
        page.wait_for_load_state("load")
        # Let htmx and USWDS finish what they do on load.
        page.wait_for_timeout(500)
        path = self.output / f"{name}.png"
        path.write_bytes(_optimized(page.screenshot()))
        print(f"  {path.relative_to(ROOT)}  ({path.stat().st_size // 1024} KB)")


def _member_pages(browser: Browser, hub: str, camera: Camera) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    _sign_in(page, hub, MEMBER)
    camera.shoot(page, "member-home")
    page.goto(f"{hub}/p/{PAYER}/me/plans/")
    camera.shoot(page, "member-directory")
    page.goto(f"{hub}/p/{PAYER}/me/")
    page.get_by_role("link", name="Get my records from a former plan").click()
    # USWDS draws checkboxes and radio buttons on their labels; the inputs sit off-screen.
    page.locator("label", has_text=FORMER_PLAN).first.click()
    page.get_by_role("button", name="Continue with the plans I ticked").click()
    camera.shoot(page, "member-request-form")

    page.goto(f"{hub}/p/{PAYER}/me/requests/")
    links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.pathname)")
    requests = [link for link in links if REQUEST_PAGE.fullmatch(link)]
    if requests:
        page.goto(f"{hub}{requests[0]}")
    else:
        _request_records(page, hub)
        expect(page.get_by_role("heading", name=f"Records from {FORMER_PLAN}")).to_be_visible()
    # A delivered request shows the whole story: counts, what stayed behind, the timeline.
    # The page follows the request by itself; a slow machine gets the picture as it is.
    with contextlib.suppress(AssertionError):
        expect(page.locator("#status")).to_have_text("Delivered", timeout=DELIVERY_WAIT_MS)
    camera.shoot(page, "member-request")
    context.close()


def _request_records(page: Page, hub: str) -> None:
    """Ask North's demo member's former plan for their records, through the form."""
    page.goto(f"{hub}/p/{PAYER}/me/")
    page.get_by_role("link", name="Get my records from a former plan").click()
    # USWDS draws checkboxes and radio buttons on their labels; the inputs sit off-screen.
    page.locator("label", has_text=FORMER_PLAN).first.click()
    page.get_by_role("button", name="Continue with the plans I ticked").click()
    page.locator("input[id$='-card_member_id']").fill(CARD_NUMBER)
    page.locator("input[id$='-coverage_start']").fill("2019-01-01")
    ended = dt.datetime.now(tz=dt.UTC).date() - dt.timedelta(days=30)
    page.locator("input[id$='-coverage_end']").fill(ended.isoformat())
    page.get_by_text("Everything except sensitive information", exact=True).click()
    page.locator("label[for=id_agree]").click()
    page.get_by_role("button", name="Agree and ask").click()


def _admin_pages(browser: Browser, hub: str, camera: Camera) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    _sign_in(page, hub, ADMIN)
    for path, name in [
        ("admin/", "admin-settings"),
        ("admin/requests/", "admin-requests"),
        ("admin/compliance/", "admin-compliance"),
    ]:
        page.goto(f"{hub}/p/{PAYER}/{path}")
        camera.shoot(page, name)
    context.close()


def _front_page(browser: Browser, hub: str, camera: Camera) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(f"{hub}/")
    camera.shoot(page, "front-page")
    context.close()


SHOTS: list[Callable[[Browser, str, Camera], None]] = [_front_page, _member_pages, _admin_pages]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.demo_screenshots", description=__doc__)
    parser.add_argument("--hub", default="http://127.0.0.1:8000", help="the running demo")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where the PNGs go")
    args = parser.parse_args(argv)
    hub = args.hub.rstrip("/")
    if not _demo_is_up(hub):
        print(
            f"The demo is not running at {hub}. Start it in another terminal with `make demo`, "
            "wait for “The payer-to-payer hub is running.”, then run this again.",
            file=sys.stderr,
        )
        return 2
    camera = Camera(args.output.resolve())
    print(f"Screenshots of {hub}:")
    with sync_playwright() as playwright:
        browser = chromium_launch(playwright)
        try:
            for shots in SHOTS:
                shots(browser, hub, camera)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
