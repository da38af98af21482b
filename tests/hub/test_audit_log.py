"""The audit log is append-only, in the model and in PostgreSQL itself."""

import pytest
from django.db import DatabaseError, connection, transaction

from hub.audit import audit_record
from hub.models import AuditEvent, AuditLogIsAppendOnly
from tests.conftest import Tenant


def test_audit_events_cannot_be_changed_or_deleted(north: Tenant) -> None:
    event = audit_record(
        action="payer.update", obj=north.payer, payer=north.payer, actor=north.admin
    )
    assert event.actor_label == "nora-admin"

    event.action = "payer.nothing"
    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.for_payer(north.payer).filter(pk=event.pk).update(action="rewritten")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.for_payer(north.payer).filter(pk=event.pk).delete()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE hub_auditevent SET action = 'rewritten'", "DELETE FROM hub_auditevent"],
)
def test_the_database_refuses_raw_rewrites(north: Tenant, statement: str) -> None:
    audit_record(action="payer.update", obj=north.payer, payer=north.payer)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.for_payer(north.payer).get().action == "payer.update"
