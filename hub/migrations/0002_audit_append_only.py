"""Make the audit log append-only in the database itself (PostgreSQL only).

The model already refuses updates and deletes; this trigger refuses them for raw
SQL too, so history cannot be rewritten by anything short of a superuser's DDL.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CREATE = """
CREATE OR REPLACE FUNCTION hub_audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (%% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER hub_audit_event_append_only
    BEFORE UPDATE OR DELETE ON hub_auditevent
    FOR EACH ROW EXECUTE FUNCTION hub_audit_event_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS hub_audit_event_append_only ON hub_auditevent;
DROP FUNCTION IF EXISTS hub_audit_event_append_only();
"""


def create_trigger(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("hub", "0001_initial")]
    operations = [migrations.RunPython(create_trigger, drop_trigger)]
