"""Onboarding a payer, in Chromium, end to end (issue 14's must-show).

Olga, an operator, signs in with her password and her authenticator's code, approves the
invitation a member of North sent for Prairie Health, and issues Prairie's first
administrator link. Prairie's administrator opens it in another browser, saves and tests an
identity provider (a sandbox payer's, then a certified one: panva's oidc-provider), signs
in through the certified one and lands in Prairie's plan administration; the link is dead
afterwards. An operator without the code does not get in, and the new administrator's
session cannot open the console.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from hub.models import FirstAdministratorLink, IdentityProvider, Payer, Role, User
from tests.conftest import Tenant
from tests.factories import OnboardingRequestFactory
from tests.sandbox.harness import NEW, SEED, RunningSandbox, running_sandbox
from tests.support.browser import launched_chromium
from tests.support.openid_provider import OpenIdProviderProcess, running_openid_provider
from tests.support.sessions import operator_code_now

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "olga's long operator passphrase"
SECRET = "prairie-hub-client-secret"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def sandbox_idp() -> Iterator[RunningSandbox]:
    with running_sandbox(NEW, "--seed", SEED, "--members", "3") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def certified_idp(live_server: Any) -> Iterator[OpenIdProviderProcess]:
    with running_openid_provider() as provider:
        provider.configure(
            clients=[
                {
                    "client_id": "prairie-hub",
                    "client_secret": SECRET,
                    "redirect_uris": [f"{live_server.url}/oidc/callback/"],
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            accounts={
                "pat": {"given_name": "Pat", "family_name": "Prairie", "hub_role": "plan_admin"}
            },
        )
        yield provider


def _operator_signs_in(page: Page, olga: User, *, code: str) -> None:
    page.goto("/operator/login/?next=/operator/")
    page.get_by_label("Username").fill(olga.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Sign in").click()


def _identity_provider(page: Page, issuer: str, client_id: str, secret: str, scopes: str) -> None:
    form = page.locator("#identity-provider")
    form.get_by_label("Issuer").fill(issuer)
    form.get_by_label("Client id").fill(client_id)
    form.get_by_label("Client secret").fill(secret)
    form.get_by_label("Scopes").fill(scopes)
    form.get_by_role("button", name="Save identity provider").click()
    expect(page.get_by_text("Identity provider saved.")).to_be_visible()
    page.get_by_role("button", name="Test identity provider").click()
    expect(page.locator("#identity-provider-result")).to_contain_text("Test passed")


def test_an_operator_onboards_a_payer_whose_first_administrator_sets_up_sign_in(
    browser: Browser,
    live_server: Any,
    settings: Any,
    north: Tenant,
    olga: User,
    sandbox_idp: RunningSandbox,
    certified_idp: OpenIdProviderProcess,
) -> None:
    settings.HUB_PUBLIC_URL = live_server.url
    olga.set_password(PASSWORD)
    olga.save()
    OnboardingRequestFactory(requested_by=north.member, organization_name="Prairie Health")
    desk = browser.new_context(base_url=live_server.url).new_page()

    # Without the code, the console stays shut.
    _operator_signs_in(desk, olga, code="")
    expect(desk.get_by_role("heading", name="Operator console sign-in")).to_be_visible()
    # With it, Olga approves the member's invitation and issues the link.
    _operator_signs_in(desk, olga, code=operator_code_now(olga))
    desk.get_by_role("link", name="Onboarding requests").first.click()
    desk.get_by_role("link", name="Prairie Health").click()
    desk.get_by_role("link", name="Approve…").click()
    desk.get_by_role("button", name="Approve: Prairie Health").click()
    expect(desk.get_by_text("Approved: Prairie Health is")).to_be_visible()
    prairie = Payer.objects.get(name="Prairie Health")
    desk.goto(f"/operator/hub/payer/{prairie.pk}/change/")
    desk.get_by_role("link", name="Issue a first administrator link…").click()
    desk.get_by_role("button", name="Issue the link").click()
    link = desk.locator("#first-admin-url").input_value()
    assert link.startswith(f"{live_server.url}/p/{prairie.slug}/welcome/")

    # Prairie's first administrator, in a browser of their own.
    first = browser.new_context().new_page()
    first.goto(link)
    expect(first.get_by_role("heading", level=1)).to_have_text("Set up sign-in for Prairie Health")
    expect(first.get_by_text(f"{live_server.url}/oidc/callback/")).to_be_visible()
    _identity_provider(
        first, f"{sandbox_idp.base}/oidc", "hub", "hub-demo-secret", "openid profile"
    )
    _identity_provider(first, certified_idp.base + "/", "prairie-hub", SECRET, "openid hub")
    first.get_by_role("button", name="Sign in through your identity provider").click()
    first.locator("input[name=login]").fill("pat")
    first.locator("input[name=password]").fill("any password")
    first.locator("button[type=submit]").click()
    first.locator("button[type=submit]").click()  # the provider's consent: Continue

    expect(first.get_by_text("You are Prairie Health's first plan administrator")).to_be_visible()
    assert first.url == f"{live_server.url}/p/{prairie.slug}/admin/"
    assert User.objects.get(payer=prairie, role=Role.PLAN_ADMIN).last_name == "Prairie"
    assert IdentityProvider.objects.for_payer(prairie).get().client_id == "prairie-hub"
    assert FirstAdministratorLink.objects.for_payer(prairie).get().used_at is not None
    # The link is dead; the administrator's session does not open the console.
    first.goto(link)
    expect(first.get_by_role("heading", level=1)).to_have_text("This link does not work")
    expect(first.get_by_role("alert")).to_contain_text("works only once")
    first.goto(f"{live_server.url}/operator/")
    expect(first.get_by_role("alert")).to_contain_text("only for the hub's own staff")
