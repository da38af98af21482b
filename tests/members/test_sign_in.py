"""Members and administrators sign in through their own payer's OpenID Connect provider.

The provider is a real sandbox payer process (tests/sandbox/harness.py); the hub talks to
it over HTTP through its one outbound client.
"""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from hub.models import AuditEvent, IdentityProvider, Role, User
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, UserFactory
from tests.sandbox.harness import RunningSandbox
from tests.support.net import free_loopback_port
from tests.support.sandbox_sign_in import sandbox_sign_in


def _connect(tenant: Tenant, new_payer_idp: RunningSandbox) -> IdentityProvider:
    return IdentityProvider.objects.create(
        payer=tenant.payer,
        issuer=f"{new_payer_idp.base}/oidc",
        client_id="hub",
        client_secret="hub-demo-secret",
        scopes="openid profile",
    )


def _sign_in(client: Client, slug: str, username: str) -> str:
    """Run the whole code flow; return where the hub sends the person at the end."""
    start = client.get(f"/p/{slug}/sign-in/")
    assert start.status_code == 302, start.content
    authorize = urlsplit(start["Location"])
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"] and query["state"]
    callback = urlsplit(sandbox_sign_in(start["Location"], username))
    finish = client.get(callback.path, dict(parse_qs(callback.query)))
    return str(finish.status_code) + " " + finish.get("Location", finish.content.decode())


def test_a_member_signs_in_and_is_bound_to_payer_and_subject(
    north: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    patricia = next(
        m for m in new_payer_idp.member_list()["members"] if m["username"] == "patricia.person"
    )
    client = Client()
    assert _sign_in(client, "north", "patricia.person") == "302 /p/north/me/"
    member = User.objects.get(payer=north.payer, oidc_subject__isnull=False, last_name="Person")
    assert member.role == Role.MEMBER
    assert member.birth_date.isoformat() == patricia["birth_date"]
    assert member.plan_member_id == patricia["member_id"]
    assert client.get("/p/north/me/").status_code == 200
    assert (
        AuditEvent.objects.for_payer(north.payer)
        .filter(action="user.sign_in", object_id=str(member.pk))
        .exists()
    )
    # Signing in again finds the same person, not a second one.
    assert _sign_in(Client(), "north", "patricia.person") == "302 /p/north/me/"
    assert User.objects.filter(payer=north.payer, last_name="Person").count() == 1


def test_the_same_subject_at_another_payer_is_another_person(
    north: Tenant, south: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    _connect(south, new_payer_idp)
    _sign_in(Client(), "north", "patricia.person")
    _sign_in(Client(), "south", "patricia.person")
    people = User.objects.filter(last_name="Person").order_by("payer__slug")
    assert [p.payer.slug for p in people] == ["north", "south"]
    assert people[0].oidc_subject == people[1].oidc_subject


def test_an_administrator_claim_opens_the_admin_portal_not_the_member_pages(
    north: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    client = Client()
    assert _sign_in(client, "north", "admin") == "302 /p/north/admin/"
    assert User.objects.get(payer=north.payer, username__startswith="north-", role=Role.PLAN_ADMIN)
    assert client.get("/p/north/me/").status_code == 404


def test_a_forged_state_is_refused_with_a_page_that_says_so(
    north: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    client = Client()
    start = client.get("/p/north/sign-in/")
    callback = urlsplit(sandbox_sign_in(start["Location"], "patricia.person"))
    query = {k: v[0] for k, v in parse_qs(callback.query).items()}
    forged = client.get(callback.path, {**query, "state": "forged-state"})
    assert forged.status_code == 400
    assert b"not valid any more" in forged.content
    # The genuine answer still works once; replaying it does not.
    assert client.get(callback.path, query).status_code == 302
    assert Client().get(callback.path, query).status_code == 400


def test_an_unreachable_provider_gives_a_page_not_a_500(north: Tenant) -> None:
    IdentityProvider.objects.create(
        payer=north.payer, issuer=f"http://127.0.0.1:{free_loopback_port()}/oidc", client_id="hub"
    )
    response = Client().get("/p/north/sign-in/")
    assert response.status_code == 503
    assert b"could not be reached" in response.content


def test_a_payer_without_sign_in_says_so(north: Tenant) -> None:
    response = Client().get("/p/north/sign-in/")
    assert response.status_code == 503
    assert b"has not set up sign-in" in response.content


def test_a_misconfigured_client_secret_is_reported_not_crashed(
    north: Tenant, new_payer_idp: RunningSandbox
) -> None:
    provider = _connect(north, new_payer_idp)
    provider.client_secret = "wrong-secret"
    provider.save()
    outcome = _sign_in(Client(), "north", "patricia.person")
    assert outcome.startswith("503")
    assert "refused to complete the sign-in" in outcome


def test_sign_out_ends_the_session(north: Tenant, new_payer_idp: RunningSandbox) -> None:
    _connect(north, new_payer_idp)
    client = Client()
    _sign_in(client, "north", "patricia.person")
    response = client.post("/p/north/me/sign-out/")
    assert response.status_code == 302
    assert client.get("/p/north/me/").status_code == 302


def test_a_person_switched_off_loses_the_session_they_have(
    north: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    client = Client()
    _sign_in(client, "north", "patricia.person")
    assert client.get("/p/north/me/").status_code == 200
    User.objects.filter(payer=north.payer, last_name="Person").update(is_active=False)
    refused = client.get("/p/north/me/")
    assert refused.status_code == 302
    assert refused["Location"].startswith("/p/north/sign-in/")


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/p/north/me/requests/", "/p/north/me/requests/"),
        ("https://evil.example/p/north/me/", "/p/north/me/"),
        ("//evil.example/p/north/me/", "/p/north/me/"),
        ("/\\evil.example", "/p/north/me/"),
        ("javascript:alert(1)", "/p/north/me/"),
    ],
)
def test_after_sign_in_only_a_page_of_the_hub_is_followed(
    next_url: str, lands_on: str, north: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    client = Client()
    start = client.get("/p/north/sign-in/", {"next": next_url})
    callback = urlsplit(sandbox_sign_in(start["Location"], "patricia.person"))
    finish = client.get(callback.path, dict(parse_qs(callback.query)))
    assert (finish.status_code, finish["Location"]) == (302, lands_on)


def _member_id_of(new_payer_idp: RunningSandbox, username: str) -> str:
    """Return the member-id claim the identity provider sends for ``username``."""
    return str(
        next(m for m in new_payer_idp.member_list()["members"] if m["username"] == username)[
            "member_id"
        ]
    )


def _waiting_for_sign_in(tenant: Tenant, member_id: str, username: str) -> User:
    """A member a roster brought (exchange/bulk/services.py): no subject until they sign in."""
    return UserFactory(
        username=username,
        payer=tenant.payer,
        role=Role.MEMBER,
        oidc_subject="",
        plan_member_id=member_id,
    )


def test_a_member_a_roster_brought_is_theirs_at_the_first_sign_in(
    north: Tenant, south: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    patricia = _member_id_of(new_payer_idp, "patricia.person")
    waiting = _waiting_for_sign_in(north, patricia, "north-roster-patricia")
    request = ExchangeRequestFactory(
        consent=ConsentFactory(member=waiting, former_payer=south.payer)
    )
    client = Client()
    assert _sign_in(client, "north", "patricia.person") == "302 /p/north/me/"
    waiting.refresh_from_db()
    assert waiting.oidc_subject and waiting.last_name == "Person"
    assert User.objects.filter(payer=north.payer, plan_member_id=patricia).count() == 1
    audit = AuditEvent.objects.for_payer(north.payer).get(action="user.sign_in")
    assert (audit.actor, audit.changes["claimed_roster_member"]) == (waiting, True)
    # The requests the plan made for them are theirs to follow.
    page = client.get(f"/p/north/me/requests/{request.pk}/")
    assert page.status_code == 200
    assert "Southern Cross Health" in page.content.decode()
    # Later sign-ins find them by subject.
    assert _sign_in(Client(), "north", "patricia.person") == "302 /p/north/me/"
    assert User.objects.filter(payer=north.payer, plan_member_id=patricia).count() == 1


def test_no_member_is_claimed_unless_exactly_one_of_this_payer_has_the_member_id(
    north: Tenant, south: Tenant, new_payer_idp: RunningSandbox
) -> None:
    _connect(north, new_payer_idp)
    patricia = _member_id_of(new_payer_idp, "patricia.person")
    left_alone = [
        *(_waiting_for_sign_in(north, patricia, f"north-roster-{n}") for n in (1, 2)),
        _waiting_for_sign_in(south, patricia, "south-roster-patricia"),
        _waiting_for_sign_in(north, patricia + "0", "north-roster-other"),
    ]
    assert _sign_in(Client(), "north", "patricia.person") == "302 /p/north/me/"
    for someone in left_alone:
        someone.refresh_from_db()
        assert someone.oidc_subject == ""
    # Two waiting members with her id: the hub cannot tell which is her, so she is new.
    assert User.objects.get(payer=north.payer, username__startswith="north-", oidc_subject__gt="")
