"""People per payer, exchange requests as metadata, the audit log and its CSV, every look
audited; and nobody of a payer reaches the console."""

import csv
import io

import pytest
from django.db import IntegrityError, transaction
from django.test import Client

from hub.audit import audit_record
from hub.models import AuditEvent, Role, User
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, UserFactory
from tests.support.every_payer import rows_of_every_payer
from tests.support.sessions import signed_in

USERS = "/operator/hub/user/"
REQUESTS = "/operator/exchange/exchangerequest/"
AUDIT = "/operator/hub/auditevent/"


def test_people_are_listed_by_payer_and_role_deactivated_and_their_role_changed(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    page = console.get(USERS, {"payer__id__exact": north.payer.pk, "role__exact": "member"})
    text = page.content.decode()
    assert "nora-member" in text and "nora-admin" not in text and "sam-member" not in text
    # Listing North's people is a look at North's data, and at nobody else's.
    assert AuditEvent.objects.for_payer(north.payer).filter(action="operator.look").count() == 1
    assert not AuditEvent.objects.for_payer(south.payer).filter(action="operator.look").exists()

    member_session = signed_in(north.member)
    assert member_session.get("/p/north/me/").status_code == 200
    console.post(USERS, {"action": "deactivate", "_selected_action": [north.member.pk]})
    console.post(USERS, {"action": "make_plan_admin", "_selected_action": [south.member.pk]})
    north.member.refresh_from_db()
    south.member.refresh_from_db()
    assert not north.member.is_active
    assert south.member.role == Role.PLAN_ADMIN
    # The deactivated member's session ends on their next request.
    assert member_session.get("/p/north/me/").status_code == 302
    deactivated = AuditEvent.objects.for_payer(north.payer).get(action="user.deactivate")
    changed = AuditEvent.objects.for_payer(south.payer).get(action="user.role_change")
    assert deactivated.actor == olga and changed.actor == olga
    assert changed.changes == {"role": ["member", "plan_admin"]}
    # An operator has no role to change, and cannot lock themselves out.
    refused = console.post(
        USERS, {"action": "make_member", "_selected_action": [olga.pk]}, follow=True
    ).content.decode()
    assert "is a hub operator, not a person of a payer" in refused
    console.post(USERS, {"action": "deactivate", "_selected_action": [olga.pk]})
    olga.refresh_from_db()
    assert olga.is_active and olga.role == ""


def test_exchange_requests_are_metadata_only_and_every_look_is_audited(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    exchange_request = ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer),
        card_member_id="DH10001235",
        matched_patient_id="pat-secret-77",
        status="failed",
        reason_code="no_match",
        reason_message="The former plan found no member with these details.",
        resource_counts={"Patient": 1, "ExplanationOfBenefit": 12},
    )
    listing = console.get(REQUESTS).content.decode()
    detail = console.get(f"{REQUESTS}{exchange_request.pk}/change/").content.decode()
    for page in (listing, detail):
        assert "DH10001235" not in page and "pat-secret-77" not in page
        assert "nora-member" in page and "no_match" in page
    assert "13" in listing  # the records counted
    assert "The former plan found no member with these details." in detail
    for payer in (north.payer, south.payer):
        looks = AuditEvent.objects.for_payer(payer).filter(action="operator.look", actor=olga)
        assert looks.count() == 2  # the list and the detail
    assert console.post(f"{REQUESTS}{exchange_request.pk}/change/", {}).status_code == 403


def test_the_audit_log_filters_and_exports_csv(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    audit_record(action="payer.update", obj=north.payer, payer=north.payer, actor_label="=cmd()")
    audit_record(action="payer.update", obj=south.payer, payer=south.payer, actor=south.admin)
    audit_record(action="consent.revoke", obj=north.member, payer=north.payer, actor=north.member)

    filtered = console.get(
        AUDIT, {"payer__id__exact": north.payer.pk, "action": "payer.update"}
    ).content.decode()
    assert "=cmd()" in filtered and "sam-admin" not in filtered
    by_actor = console.get(AUDIT, {"actor": "sam-admin"}).content.decode()
    assert "sam-admin" in by_actor and "nora-member" not in by_actor
    today = north.payer.created_at.date().isoformat()
    dated = console.get(AUDIT, {"from": today, "to": today, "action": "consent.revoke"})
    assert "nora-member" in dated.content.decode()
    assert console.get(AUDIT, {"from": "2999-01-01"}).context["cl"].result_count == 0

    export = console.get(f"{AUDIT}export.csv", {"payer__id__exact": north.payer.pk})
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][:4] == ["occurred_at", "payer", "actor", "action"]
    assert {row[1] for row in rows[1:]} == {"north"}
    # A cell a spreadsheet would run as a formula is quoted as text.
    assert "'=cmd()" in [row[2] for row in rows[1:]]
    assert {row[3] for row in rows[1:]} >= {"payer.update", "consent.revoke", "operator.look"}
    assert (
        AuditEvent.objects.for_payer(north.payer)
        .filter(action="operator.export_audit_log", actor=olga)
        .exists()
    )

    bad = console.get(f"{AUDIT}export.csv", {"from": "31/12/2026"})
    assert bad.status_code == 400
    assert (
        "The from date '31/12/2026' is not a date: write it as YYYY-MM-DD." in bad.content.decode()
    )


@pytest.mark.parametrize(
    "path",
    [
        "/operator/",
        "/operator/hub/payer/",
        "/operator/hub/onboardingrequest/",
        f"{AUDIT}export.csv",
    ],
)
def test_a_plan_administrator_and_a_member_get_no_access(
    north: Tenant, south: Tenant, path: str
) -> None:
    for person in (north.admin, north.member, south.admin):
        response = signed_in(person).get(path)
        assert response.status_code == 302 and "/operator/login/" in response["Location"]
    # A person of a payer is never staff: the database refuses the flag.
    with pytest.raises(IntegrityError), transaction.atomic():
        UserFactory(username="mistake", payer=north.payer, is_staff=True)
    assert not rows_of_every_payer(AuditEvent).filter(action="operator.look").exists()
