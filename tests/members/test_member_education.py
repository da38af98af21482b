"""The member reads the plan's member-education text before consenting, and the opt-in and
the opt-out record its version (CMS-0057-F, 42 CFR 422.121(b)): the version the page
showed, even if a newer one was published since; never one the plan did not publish."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from exchange.education import HUB_DEFAULT_VERSION, member_education_text_publish
from exchange.models import (
    Consent,
    ConsentStatus,
    ExchangeRequest,
    ExchangeStatus,
    OptInMethod,
    OptInRecord,
)
from hub.models import AuditEvent, FhirEndpoint, Payer
from tests.conftest import Tenant
from tests.factories import PayerFactory
from tests.support.every_payer import rows_of_every_payer

NEW = "/p/north/me/requests/new/"
HIDDEN_VERSION = re.compile(r'<input type="hidden" name="education_version" value="([^"]*)">')


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _holder(payer: Payer) -> Payer:
    FhirEndpoint.objects.create(
        payer=payer, base_url="http://127.0.0.1:9/fhir", offers_backend_services=True
    )
    return payer


def _publish(tenant: Tenant, title: str, body: str) -> str:
    return member_education_text_publish(
        payer=tenant.payer, actor=tenant.admin, title=title, body=body
    ).version


def _consent(*payers: Payer, version: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"former": [p.pk for p in payers], "policy": "regular", "agree": "on"}
    if version is not None:
        data["education_version"] = version
    for payer in payers:
        data[f"p{payer.pk}-card_member_id"] = "DH10001235"
        data[f"p{payer.pk}-coverage_start"] = "2021-01-01"
        data[f"p{payer.pk}-coverage_end"] = "2025-06-30"
    return data


@pytest.fixture
def former(south: Tenant) -> Payer:
    return _holder(south.payer)


def test_the_member_reads_the_published_text_before_consenting_and_the_opt_in_records_it(
    north: Tenant, former: Payer
) -> None:
    _publish(
        north,
        "Your records, your choice",
        "Why it helps: fewer repeated tests.\n\nYou may withdraw at any time.",
    )
    client = _client(north.member)
    page = client.get(NEW, {"former": former.pk}).content.decode()
    # The text, then the consent checkbox: read before agreeing.
    told = page.index("Before you agree: Your records, your choice")
    assert page.index("<p>Why it helps: fewer repeated tests.</p>") > told
    assert page.index("<p>You may withdraw at any time.</p>") < page.index('name="agree"')
    assert HIDDEN_VERSION.findall(page) == ["1"]

    response = client.post(NEW, _consent(former, version="1"))

    assert response.status_code == 302
    exchange_request = ExchangeRequest.objects.for_payer(north.payer).get()
    opt_in = exchange_request.opt_in_record
    assert opt_in is not None
    assert (opt_in.method, opt_in.education_text_version, opt_in.attested_by) == (
        OptInMethod.PORTAL,
        "1",
        north.member.username,
    )
    assert (opt_in.member, opt_in.policy, opt_in.new_coverage_start) == (
        north.member,
        "regular",
        None,
    )
    assert timedelta(0) <= exchange_request.opted_in_at - opt_in.obtained_at < timedelta(seconds=5)
    audit = AuditEvent.objects.for_payer(north.payer).get(action="opt_in.create")
    assert (audit.actor, audit.changes["education_text_version"]) == (north.member, "1")
    assert audit.changes["requests"] == [exchange_request.pk]


def test_a_plan_that_published_nothing_shows_the_hub_s_default_and_records_it(
    north: Tenant, former: Payer
) -> None:
    client = _client(north.member)
    page = client.get(NEW, {"former": former.pk}).content.decode()
    assert "Before you agree: Bringing your health records to North Star Health" in page
    assert HIDDEN_VERSION.findall(page) == [HUB_DEFAULT_VERSION]
    assert client.post(NEW, _consent(former, version=HUB_DEFAULT_VERSION)).status_code == 302
    opt_in = OptInRecord.objects.for_payer(north.payer).get()
    assert opt_in.education_text_version == HUB_DEFAULT_VERSION


def test_a_text_published_while_the_member_read_the_older_one_records_the_older_one(
    north: Tenant, former: Payer
) -> None:
    _publish(north, "First words", "One.")
    client = _client(north.member)
    assert HIDDEN_VERSION.findall(client.get(NEW, {"former": former.pk}).content.decode()) == ["1"]
    _publish(north, "Second words", "Two.")  # published while the member reads
    assert client.post(NEW, _consent(former, version="1")).status_code == 302
    assert OptInRecord.objects.for_payer(north.payer).get().education_text_version == "1"


@pytest.mark.parametrize("version", ["7", "S-1", "", None])
def test_a_version_the_plan_never_published_is_refused_and_nothing_is_created(
    north: Tenant, south: Tenant, former: Payer, version: str | None
) -> None:
    _publish(north, "North's words", "One.")
    # South's own version is no more North's than an invented one.
    member_education_text_publish(
        payer=south.payer, actor=south.admin, title="S", body="S", version="S-1"
    )
    response = _client(north.member).post(NEW, _consent(former, version=version))
    assert response.status_code == 400
    page = response.content.decode()
    summary = page[page.index('id="error-summary"') :].split("</ul>")[0]
    assert "Read the explanation of your rights above, then tick the box again" in summary
    assert '<a href="#id_agree">' in summary
    # Shown again with the current text, whose version the next try carries.
    assert HIDDEN_VERSION.findall(page) == ["1"]
    for kind in (ExchangeRequest, Consent, OptInRecord):
        assert not rows_of_every_payer(kind).exists()


def test_another_payer_s_member_reads_its_own_plan_s_text(north: Tenant, south: Tenant) -> None:
    _publish(north, "North's words", "Only for North's members.")
    _holder(north.payer)
    page = (
        _client(south.member)
        .get("/p/south/me/requests/new/", {"former": north.payer.pk})
        .content.decode()
    )
    assert "North&#x27;s words" not in page and "Only for North" not in page
    assert HIDDEN_VERSION.findall(page) == [HUB_DEFAULT_VERSION]


def test_the_member_s_withdrawal_records_the_opt_out_with_the_version_current_then(
    north: Tenant, former: Payer
) -> None:
    _publish(north, "First words", "One.")
    client = _client(north.member)
    client.post(NEW, _consent(former, version="1"))
    exchange_request = ExchangeRequest.objects.for_payer(north.payer).get()
    _publish(north, "Second words", "Two.")

    response = client.post(f"/p/north/me/requests/{exchange_request.pk}/withdraw/")

    assert response.status_code == 302
    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.REVOKED
    opt_in = OptInRecord.objects.for_payer(north.payer).get()
    revoked_at = exchange_request.consent.revoked_at
    assert opt_in.withdrawn_at is not None and revoked_at is not None
    assert abs(opt_in.withdrawn_at - revoked_at) < timedelta(seconds=5)
    assert (opt_in.education_text_version, opt_in.withdrawal_education_text_version) == ("1", "2")
    withdrawal = AuditEvent.objects.for_payer(north.payer).get(action="consent.withdraw")
    assert (withdrawal.actor, withdrawal.changes) == (
        north.member,
        {"education_text_version": "2"},
    )


def test_an_opt_in_for_two_plans_is_withdrawn_once_both_consents_are(
    north: Tenant, former: Payer
) -> None:
    west = _holder(PayerFactory(slug="west", name="Western Mutual"))
    client = _client(north.member)
    client.post(NEW, _consent(former, west, version=HUB_DEFAULT_VERSION))
    first, second = ExchangeRequest.objects.for_payer(north.payer).order_by("pk")
    assert first.opt_in_record_id == second.opt_in_record_id is not None

    client.post(f"/p/north/me/requests/{first.pk}/withdraw/")
    opt_in = OptInRecord.objects.for_payer(north.payer).get()
    # The member still opts in for the other plan: the opt-out of one is in the audit log.
    assert (opt_in.withdrawn_at, opt_in.withdrawal_education_text_version) == (None, "")
    assert AuditEvent.objects.for_payer(north.payer).get(action="consent.withdraw").changes == {
        "education_text_version": HUB_DEFAULT_VERSION
    }

    client.post(f"/p/north/me/requests/{second.pk}/withdraw/")
    opt_in.refresh_from_db()
    assert opt_in.withdrawn_at is not None
    assert opt_in.withdrawal_education_text_version == HUB_DEFAULT_VERSION
    assert set(Consent.objects.for_payer(north.payer).values_list("status", flat=True)) == {
        ConsentStatus.INACTIVE
    }
