"""A new payer's first plan administrator sets up sign-in with a one-time link (issue 14 item 2).

The operator issues the link in the console; the person who opens it saves and tests the
payer's identity provider (a real sandbox payer's, over HTTP) and signs in through it. The
link then is dead, and only sign-in through the provider opens the portal. An expired,
replaced, reused or mistyped link, or a sign-in that is not an administrator's, says why.
"""

import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from hub.models import (
    AuditEvent,
    FirstAdministratorLink,
    IdentityProvider,
    Payer,
    PayerStatus,
    Role,
    User,
)
from plan_admin.forms import IdentityProviderForm
from tests.conftest import Tenant
from tests.factories import PayerFactory
from tests.sandbox.harness import RunningSandbox
from tests.support.sandbox_sign_in import sandbox_sign_in
from tests.support.sessions import signed_in


@pytest.fixture
def prairie(db: None) -> Payer:
    """Prairie Health: just approved, no identity provider, nobody who can sign in."""
    return PayerFactory(slug="prairie", name="Prairie Health", status=PayerStatus.ONBOARDING)


def _issue(console: Client, payer: Payer) -> str:
    page = console.post(f"/operator/hub/payer/{payer.pk}/first-admin-link/")
    assert page.status_code == 200, page.content
    match = re.search(r'value="(http://[^"]+/welcome/[^"]+/)"', page.content.decode())
    assert match is not None
    return urlsplit(unescape(match.group(1))).path


def _provider_form(new_payer_idp: RunningSandbox, **changes: str) -> dict[str, str]:
    defaults = {
        name: field.initial if not callable(field.initial) else field.initial()
        for name, field in IdentityProviderForm().fields.items()
    }
    return {
        **{name: str(value) for name, value in defaults.items() if value is not None},
        "issuer": f"{new_payer_idp.base}/oidc",
        "client_id": "hub",
        "client_secret": "hub-demo-secret",
        **changes,
    }


def _sign_in_through(client: Client, link: str, username: str) -> str:
    """Press *Sign in*, sign in at the sandbox, come back; return where the hub sends us."""
    start = client.post(f"{link}sign-in/")
    assert start.status_code == 302
    authorize = client.get(start["Location"])
    assert authorize.status_code == 302, authorize.content
    callback = urlsplit(sandbox_sign_in(authorize["Location"], username))
    back = client.get(callback.path, dict(parse_qs(callback.query)))
    assert back.status_code == 302, back.content
    done = client.get(back["Location"])
    return str(done.status_code) + " " + done.get("Location", "")


def test_the_first_administrator_sets_up_sign_in_and_the_link_dies(
    console: Client, prairie: Payer, new_payer_idp: RunningSandbox
) -> None:
    link = _issue(console, prairie)
    person = Client()

    page = person.get(link).content.decode()
    assert "http://127.0.0.1:8000/oidc/callback/" in page  # what to register at the provider
    saved = person.post(link, _provider_form(new_payer_idp))
    assert saved.status_code == 302, saved.content
    provider = IdentityProvider.objects.for_payer(prairie).get()
    assert provider.issuer == f"{new_payer_idp.base}/oidc"
    report = person.post(f"{link}test/").content.decode()
    assert "Test passed" in report, report

    assert _sign_in_through(person, link, "admin") == "302 /p/prairie/admin/"

    administrator = User.objects.get(payer=prairie, role=Role.PLAN_ADMIN)
    assert person.get("/p/prairie/admin/").status_code == 200
    used = FirstAdministratorLink.objects.for_payer(prairie).get()
    assert used.used_by == administrator
    dead = Client().get(link)
    assert dead.status_code == 410
    assert "works only once. Sign in at /p/prairie/sign-in/" in unescape(dead.content.decode())
    assert Client().post(link, _provider_form(new_payer_idp, client_id="evil")).status_code == 410
    actions = set(AuditEvent.objects.for_payer(prairie).values_list("action", "actor_label"))
    assert ("identityprovider.create", "first administrator's link") in actions
    assert ("payer.first_admin_link_issued", "olga-operator") in actions
    assert ("payer.first_admin_signed_in", administrator.username) in actions
    # Now that it has an administrator, no further link is issued.
    again = console.post(f"/operator/hub/payer/{prairie.pk}/first-admin-link/")
    assert again.status_code == 400
    assert "already has 1 active plan administrator(s)" in again.content.decode()


def test_a_member_signing_in_through_the_link_does_not_use_it_up(
    console: Client, prairie: Payer, new_payer_idp: RunningSandbox
) -> None:
    link = _issue(console, prairie)
    person = Client()
    person.post(link, _provider_form(new_payer_idp))

    assert _sign_in_through(person, link, "patricia.person") == f"302 {link}"

    page = unescape(person.get(link).content.decode())
    assert "did not say you are a plan administrator: its claim 'hub_role'" in page
    assert "This link still works." in page
    assert person.get("/p/prairie/admin/").status_code == 302  # signed out again
    assert FirstAdministratorLink.objects.for_payer(prairie).get().used_at is None


def test_an_expired_a_replaced_and_a_mistyped_link_each_say_what_to_do(
    console: Client, prairie: Payer, north: Tenant
) -> None:
    first = _issue(console, prairie)
    second = _issue(console, prairie)

    replaced = Client().get(first)
    assert replaced.status_code == 410 and b"A newer link replaced this one" in replaced.content
    FirstAdministratorLink.objects.for_payer(prairie).filter(replaced_at__isnull=True).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    expired = Client().get(second)
    assert expired.status_code == 410 and b"This link expired on" in expired.content
    mistyped = Client().get(second[:-3] + "xx/")
    assert mistyped.status_code == 404 and b"not a valid invitation" in mistyped.content
    # A link is its payer's only: North's address with Prairie's token is no link at all.
    assert Client().get(second.replace("/p/prairie/", "/p/north/")).status_code == 404
    # A suspended payer gets no link.
    prairie.status = PayerStatus.SUSPENDED
    prairie.save()
    refused = console.post(f"/operator/hub/payer/{prairie.pk}/first-admin-link/")
    assert refused.status_code == 400 and b"lift the suspension" in refused.content


def test_only_an_operator_issues_a_link(north: Tenant, prairie: Payer) -> None:

    for person in (north.admin, north.member):
        answer = signed_in(person).post(f"/operator/hub/payer/{prairie.pk}/first-admin-link/")
        assert answer.status_code == 302 and answer["Location"].startswith("/operator/login/")
    assert not FirstAdministratorLink.objects.for_payer(prairie).exists()
