"""Member standalone launch at a running sandbox payer, driving its sign-in form over HTTP."""

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.db import connection

from exchange.fhir.errors import FhirPermanentError
from exchange.models import AuthorizationMode, ExchangeRequest, MemberLaunch
from exchange.smart.access import access_token_for
from exchange.smart.member_launch import (
    LaunchStateInvalid,
    member_launch_begin,
    member_launch_complete,
)
from tests.conftest import Tenant
from tests.exchange.holders import former_payer_of, member_request, ordinary_member
from tests.factories import UserFactory
from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox
from tests.support.sandbox_sign_in import sandbox_sign_in

CALLBACK = "http://127.0.0.1:8000/p/north/me/authorizations/callback"


@pytest.fixture(scope="module")
def short_token_holder() -> Iterator[RunningSandbox]:
    """A holder whose access tokens end after two seconds."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "10", "--peer", NEW, "--faults", "token-ttl=2s"
    ) as sandbox:
        yield sandbox


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def launch_request(
    holder: RunningSandbox, tenant: Tenant
) -> tuple[ExchangeRequest, dict[str, Any]]:
    member = ordinary_member(holder, 2)
    request = member_request(
        tenant=tenant,
        former_payer=former_payer_of(holder),
        member=member,
        mode=AuthorizationMode.MEMBER_AUTHORIZED,
    )
    return request, member


def signed_in(holder: RunningSandbox, tenant: Tenant) -> tuple[ExchangeRequest, dict[str, Any]]:
    """Run the whole launch; return the completed request and the sandbox member."""
    request, member = launch_request(holder, tenant)
    authorize_url = member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)
    callback = query(sandbox_sign_in(authorize_url, member["username"]))
    completed = member_launch_complete(
        payer=tenant.payer,
        member=tenant.member,
        state=callback["state"],
        code=callback["code"],
        redirect_uri=CALLBACK,
    )
    return completed, member


def raw_column(column: str, launch_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM exchange_memberlaunch WHERE id = %s", [launch_id])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_the_authorize_url_asks_for_pkce_s256_state_and_aud(
    holder: RunningSandbox, north: Tenant
) -> None:
    request, _ = launch_request(holder, north)

    url = member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)

    assert url.startswith(f"{holder.base}/auth/authorize?")
    params = query(url)
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert params["aud"] == holder.fhir
    assert params["redirect_uri"] == CALLBACK
    assert set(params["scope"].split()) >= {"launch/patient", "offline_access", "patient/*.rs"}
    launch = MemberLaunch.objects.for_payer(north.payer).get(exchange_request=request)
    # Server-side: the state only as a digest, the verifier encrypted.
    assert launch.state_digest != params["state"]
    assert params["state"] not in raw_column("state_digest", launch.pk)
    assert launch.code_verifier not in raw_column("code_verifier", launch.pk)


def test_a_member_who_signs_in_completes_the_launch(holder: RunningSandbox, north: Tenant) -> None:
    completed, member = signed_in(holder, north)

    assert completed.matched_patient_id == member["patient_id"]
    launch = MemberLaunch.objects.for_payer(north.payer).get(exchange_request=completed)
    assert launch.completed_at is not None
    assert launch.refresh_token
    assert launch.access_token not in raw_column("access_token", launch.pk)
    assert launch.refresh_token not in raw_column("refresh_token", launch.pk)
    token = access_token_for(completed)
    assert token == launch.access_token
    answer = httpx.get(
        f"{holder.fhir}/Patient/{member['patient_id']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200
    assert answer.json()["id"] == member["patient_id"]


def test_a_forged_state_is_refused_and_changes_nothing(
    holder: RunningSandbox, north: Tenant
) -> None:
    request, _ = launch_request(holder, north)
    member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)

    with pytest.raises(LaunchStateInvalid) as refused:
        member_launch_complete(
            payer=north.payer,
            member=north.member,
            state="forged-state",
            code="any",
            redirect_uri=CALLBACK,
        )

    assert refused.value.code == "state_unknown"
    assert "does not belong to any authorization the hub started" in refused.value.message
    assert not request.member_launches.filter(completed_at__isnull=False).exists()
    request.refresh_from_db()
    assert request.matched_patient_id == ""


def test_a_replayed_callback_is_refused(holder: RunningSandbox, north: Tenant) -> None:
    request, member = launch_request(holder, north)
    authorize_url = member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)
    callback = query(sandbox_sign_in(authorize_url, member["username"]))
    member_launch_complete(
        payer=north.payer,
        member=north.member,
        state=callback["state"],
        code=callback["code"],
        redirect_uri=CALLBACK,
    )

    with pytest.raises(LaunchStateInvalid) as refused:
        member_launch_complete(
            payer=north.payer,
            member=north.member,
            state=callback["state"],
            code=callback["code"],
            redirect_uri=CALLBACK,
        )
    assert refused.value.code == "state_used"


def test_another_payers_state_is_unknown_to_this_payer(
    holder: RunningSandbox, north: Tenant, south: Tenant
) -> None:
    request, member = launch_request(holder, north)
    authorize_url = member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)
    callback = query(sandbox_sign_in(authorize_url, member["username"]))

    with pytest.raises(LaunchStateInvalid) as refused:
        member_launch_complete(
            payer=south.payer,
            member=south.member,
            state=callback["state"],
            code=callback["code"],
            redirect_uri=CALLBACK,
        )
    assert refused.value.code == "state_unknown"


def test_another_members_callback_is_refused(holder: RunningSandbox, north: Tenant) -> None:
    request, member = launch_request(holder, north)
    authorize_url = member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)
    callback = query(sandbox_sign_in(authorize_url, member["username"]))
    neighbour = UserFactory(username="nadia", payer=north.payer)

    with pytest.raises(LaunchStateInvalid) as refused:
        member_launch_complete(
            payer=north.payer,
            member=neighbour,
            state=callback["state"],
            code=callback["code"],
            redirect_uri=CALLBACK,
        )
    assert refused.value.code == "state_unknown"
    request.refresh_from_db()
    assert request.matched_patient_id == ""


def test_an_ended_member_token_is_refreshed_with_the_refresh_token(
    short_token_holder: RunningSandbox, north: Tenant
) -> None:
    completed, member = signed_in(short_token_holder, north)
    first = access_token_for(completed)
    first_refresh = completed.member_launches.get().refresh_token

    time.sleep(2.5)
    renewed = access_token_for(completed)

    assert renewed != first
    # The sandbox rotates refresh tokens; the hub keeps the new one.
    assert completed.member_launches.get().refresh_token != first_refresh
    answer = httpx.get(
        f"{short_token_holder.fhir}/Patient/{member['patient_id']}",
        headers={"Authorization": f"Bearer {renewed}"},
    )
    assert answer.status_code == 200


def test_no_token_before_the_member_signed_in(holder: RunningSandbox, north: Tenant) -> None:
    request, _ = launch_request(holder, north)
    with pytest.raises(FhirPermanentError) as refused:
        access_token_for(request)
    assert refused.value.code == "not_authorized"
    assert "You have not signed in at Former Health Plan" in refused.value.message
