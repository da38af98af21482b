"""A member's exchange, end to end, in a real browser (issue 5, "What it must show").

Real parts only: the hub served over HTTP, a real Celery worker process, two sandbox payer
processes (the new payer's identity provider, the former payer's FHIR server), a real
OpenSSH sshd receiving the delivery, and Debian's Chromium driven by Playwright. The test
then reads the delivered files from the sshd's folder and checks them against the former
payer's own data for that member, fetched independently by the test.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from exchange.education import HUB_DEFAULT_VERSION
from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.state_machine import ENDED
from tests.conftest import Tenant
from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox
from tests.support.browser import launched_chromium
from tests.support.celery_worker import running_worker, wait_for
from tests.support.exchange_setup import (
    NORTH_NPI,
    SHOWCASE_CARD,
    SHOWCASE_MEMBER,
    SOUTH_SANDBOX_ARGS,
    delivery_check,
    exchange_payers_configure,
    sandbox_everything,
    sandbox_member,
)
from tests.support.sshd import SftpServer

TODAY = dt.datetime.now(tz=dt.UTC).date()


@pytest.fixture(scope="module")
def sandboxes(live_server: Any) -> Iterator[tuple[RunningSandbox, RunningSandbox]]:
    """The new payer (North's identity provider) and the former payer (South's FHIR server)."""
    callback = f"{live_server.url}/oidc/callback/"
    with (
        running_sandbox(NEW, "--seed", SEED, "--members", "30", "--npi", NORTH_NPI,
                        "--redirect-uri", callback) as new,
        running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "30") as former,
    ):  # fmt: skip
        yield new, former


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    with launched_chromium() as browser:
        yield browser.new_page()


def _sign_in_at_sandbox(page: Page) -> None:
    page.fill("#username", SHOWCASE_MEMBER)
    page.fill("#password", "sandbox-demo")
    page.click("button[value=sign-in]")


def _refreshed(exchange_request: ExchangeRequest) -> ExchangeRequest:
    exchange_request.refresh_from_db()
    return exchange_request


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "payer_to_payer", [False, True], ids=["member-authorized", "payer-to-payer"]
)
def test_a_member_gets_their_records_delivered(
    payer_to_payer: bool,
    north: Tenant,
    south: Tenant,
    sandboxes: tuple[RunningSandbox, RunningSandbox],
    sftp_server: SftpServer,
    browser_page: Page,
    live_server: Any,
    settings: Any,
) -> None:
    new, former = sandboxes
    settings.HUB_PUBLIC_URL = live_server.url
    exchange_payers_configure(
        new=north,
        former=south,
        former_fhir_base=former.fhir,
        sftp_server=sftp_server,
        payer_to_payer=payer_to_payer,
        identity_provider=new,
    )
    page = browser_page
    page.context.clear_cookies()
    with running_worker(HUB_PUBLIC_URL=live_server.url):
        page.goto(f"{live_server.url}/p/north/sign-in/")
        _sign_in_at_sandbox(page)
        expect(
            page.get_by_role("heading", name="Bring your health records with you")
        ).to_be_visible()

        page.get_by_role("link", name="Get my records from a former plan").click()
        # USWDS draws checkboxes and radio buttons on their labels; the inputs sit off-screen.
        page.locator(f"label[for=former-{south.payer.pk}]").click()
        page.get_by_role("button", name="Continue with the plans I ticked").click()
        page.fill(f"#id_p{south.payer.pk}-card_member_id", SHOWCASE_CARD)
        page.fill(f"#id_p{south.payer.pk}-coverage_start", "2019-01-01")
        page.fill(
            f"#id_p{south.payer.pk}-coverage_end",
            (TODAY - dt.timedelta(days=30)).isoformat(),
        )
        page.get_by_text("Everything except sensitive information", exact=True).click()
        # The plan's member-education text is shown before the consent (CMS-0057-F).
        expect(page.locator("#member-education-text")).to_contain_text("It is your choice")
        page.locator("label[for=id_agree]").click()
        page.get_by_role("button", name="Agree and ask").click()
        expect(
            page.get_by_role("heading", name="Records from Southern Cross Health")
        ).to_be_visible()

        if not payer_to_payer:
            page.get_by_role("button", name="Sign in at Southern Cross Health").click()
            _sign_in_at_sandbox(page)
        exchange_request = ExchangeRequest.objects.for_payer(north.payer).get()
        assert exchange_request.opt_in_record is not None
        assert exchange_request.opt_in_record.education_text_version == HUB_DEFAULT_VERSION
        try:
            wait_for(
                lambda: _refreshed(exchange_request).status in ENDED | {ExchangeStatus.FAILED},
                timeout=240,
            )
        except TimeoutError:
            timeline = [e.message for e in exchange_request.events.all()]
            raise AssertionError(f"stuck in {exchange_request.status}: {timeline}") from None
        assert exchange_request.status == ExchangeStatus.DELIVERED, exchange_request.reason_message
        # The page follows by itself, without a reload.
        expect(page.locator("#status")).to_have_text("Delivered", timeout=10_000)
        expect(page.locator("#files")).to_contain_text("bundle.json")

    folder = sftp_server.incoming / "south" / str(exchange_request.pk)
    oracle = sandbox_everything(
        former, member=sandbox_member(former, SHOWCASE_MEMBER), recipient_npi=NORTH_NPI
    )
    delivery_check(folder, oracle, policy="regular")
    assert exchange_request.delivery.attempts.filter(succeeded=True).count() == 1
