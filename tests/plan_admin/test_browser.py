"""An administrator configures the integration in a real browser (Debian Chromium via Playwright).

The hub runs on pytest-django's live server; the identity provider and FHIR endpoint
are a sandbox payer on loopback, the SFTP destination a real OpenSSH sshd. Every
*Test* button reports success on the good settings and a clear failure on bad ones.
"""

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from hub.models import IdentityProvider, SftpDestination
from tests.conftest import Tenant
from tests.sandbox.harness import RunningSandbox, running_sandbox
from tests.support.every_payer import rows_of_every_payer
from tests.support.net import free_loopback_port
from tests.support.sshd import SftpServer


@pytest.fixture(scope="module")
def sandbox_payer() -> Iterator[RunningSandbox]:
    with running_sandbox("Identity Plan", "--members", "4") as sandbox:
        yield sandbox


@pytest.fixture
def admin_page(admin_browser: BrowserContext) -> Page:
    """A browser tab signed in as North's administrator, on the settings page."""
    page = admin_browser.new_page()
    page.goto("/p/north/admin/")
    return page


def _report(page: Page, section: str) -> str:
    return page.locator(f"#{section} .report").last.inner_text()


def _run(page: Page, button: str) -> None:
    """Click a *Test* (or fetch) button and wait for its answer to be on the page."""
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.get_by_role("button", name=button).click()
    page.wait_for_load_state()
    page.wait_for_function("() => !document.querySelector('.htmx-request')")


@pytest.mark.django_db(transaction=True)
def test_identity_provider_configured_and_tested_in_the_browser(
    admin_page: Page, sandbox_payer: RunningSandbox, north: Tenant
) -> None:
    page = admin_page
    idp = page.locator("#identity-provider")
    # Bad input first: refused with a message, nothing saved.
    idp.get_by_label("Issuer").fill("http://login.example-payer.com")
    idp.get_by_label("Client id").fill("hub")
    idp.get_by_role("button", name="Save identity provider").click()
    expect(page.locator("#identity-provider .usa-error-message")).to_contain_text(
        "must start with https://"
    )
    assert not rows_of_every_payer(IdentityProvider).exists()

    idp = page.locator("#identity-provider")
    idp.get_by_label("Issuer").fill(f"{sandbox_payer.base}/oidc")
    idp.get_by_label("Client id").fill("hub")
    idp.get_by_label("Client secret").fill("hub-demo-secret")
    idp.get_by_role("button", name="Save identity provider").click()
    expect(page.get_by_role("status").first).to_contain_text("Identity provider saved.")
    _run(page, "Test identity provider")
    report = _report(page, "identity-provider")
    assert "Test passed" in report
    assert "The issuer in the discovery document matches." in report

    unreachable = f"http://127.0.0.1:{free_loopback_port()}/oidc"
    page.locator("#identity-provider").get_by_label("Issuer").fill(unreachable)
    page.get_by_role("button", name="Save identity provider").click()
    _run(page, "Test identity provider")
    report = _report(page, "identity-provider")
    assert "Test failed" in report and f"Could not reach {unreachable}" in report
    assert IdentityProvider.objects.for_payer(north.payer).get().client_secret == "hub-demo-secret"


@pytest.mark.django_db(transaction=True)
def test_fhir_endpoint_tested_in_the_browser(
    admin_page: Page, sandbox_payer: RunningSandbox
) -> None:
    page = admin_page
    fhir = page.locator("#fhir-endpoint")
    fhir.get_by_label("FHIR base URL").fill(f"{sandbox_payer.base}/oidc")  # not a FHIR server
    # A USWDS checkbox is drawn by its label; the input itself sits off-screen.
    fhir.locator("label[for='fhir-endpoint-offers_backend_services']").click()
    expect(fhir.get_by_label("Offers payer-to-payer access")).not_to_be_checked()
    fhir.get_by_role("button", name="Save FHIR endpoint").click()
    _run(page, "Test FHIR endpoint")
    assert "Test failed" in _report(page, "fhir-endpoint")

    page.locator("#fhir-endpoint").get_by_label("FHIR base URL").fill(sandbox_payer.fhir)
    page.get_by_role("button", name="Save FHIR endpoint").click()
    _run(page, "Test FHIR endpoint")
    report = _report(page, "fhir-endpoint")
    assert "Test passed" in report, report
    assert "$member-match" in report


@pytest.mark.django_db(transaction=True)
def test_sftp_destination_host_key_fetched_pinned_and_tested(
    admin_page: Page, sftp_server: SftpServer, north: Tenant
) -> None:
    page = admin_page
    sftp = page.locator("#sftp-destination")
    sftp.locator("#sftp-destination-host").fill("127.0.0.1")
    sftp.locator("#sftp-destination-port").fill(str(sftp_server.port))
    _run(page, "Fetch the host key")
    fetched = _report(page, "sftp-host-key-result")
    assert "Test passed" in fetched and "SHA256:" in fetched
    sftp = page.locator("#sftp-destination")
    assert sftp.locator("#sftp-destination-host_key").input_value() == sftp_server.host_key_line

    sftp.locator("#sftp-destination-username").fill(sftp_server.username)
    sftp.locator("#sftp-destination-private_key").fill(sftp_server.client_key_text)
    sftp.get_by_role("button", name="Save SFTP destination").click()
    expect(page.get_by_role("status").first).to_contain_text("SFTP destination saved.")
    _run(page, "Test SFTP destination")
    report = _report(page, "sftp-destination")
    assert "Test passed" in report, report

    # Pin another server's key: the test must refuse the server that presents a different one.
    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    page.locator("#sftp-destination").locator("#sftp-destination-host_key").fill(other_key)
    page.get_by_role("button", name="Save SFTP destination").click()
    _run(page, "Test SFTP destination")
    report = _report(page, "sftp-destination")
    assert "Test failed" in report and "host key" in report.lower()
    assert SftpDestination.objects.for_payer(north.payer).get().host_key == other_key

    # An unreachable host: a port nothing listens on.
    page.locator("#sftp-destination").locator("#sftp-destination-port").fill(
        str(free_loopback_port())
    )
    _run(page, "Fetch the host key")
    assert "Test failed" in _report(page, "sftp-host-key-result")
