"""Empty the tables after a transactional test by DELETE rather than TRUNCATE.

pytest-django ends each ``transaction=True`` test (and each ``live_server`` one) with Django's
``flush``, which on PostgreSQL is one TRUNCATE of every table: new files for each of some
fifty tables and their indexes, a quarter of a second on a quiet machine and seconds on a
busy one, for tables that hold a few rows. DELETE leaves the same empty tables in
milliseconds; the foreign keys, which Django creates DEFERRABLE INITIALLY DEFERRED, are
checked once every table is empty. Sequences go on as before (``flush`` resets them only
when a test asks, and then TRUNCATE ... RESTART IDENTITY still does it). The audit log
refuses DELETE even from SQL (hub/migrations/0002_audit_append_only.py) and is truncated
on its own.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db.backends.postgresql.operations import DatabaseOperations

# Tables whose rows a trigger keeps from being deleted: TRUNCATE fires no row triggers.
APPEND_ONLY_TABLES = frozenset({"hub_auditevent"})


@contextmanager
def tables_emptied_by_delete() -> Iterator[None]:
    """While the block runs, have PostgreSQL's ``flush`` DELETE instead of TRUNCATE."""
    truncate = DatabaseOperations.sql_flush

    def sql_flush(
        self: DatabaseOperations,
        style: Any,
        tables: Sequence[str],
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if reset_sequences or not tables:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        append_only = [table for table in tables if table in APPEND_ONLY_TABLES]
        # Truncated first: TRUNCATE refuses a table with trigger events still pending.
        statements = truncate(self, style, append_only, allow_cascade=allow_cascade)
        statements.append("SET CONSTRAINTS ALL DEFERRED;")
        statements += [
            f"DELETE FROM {self.quote_name(table)};"  # noqa: S608 - Django's own tables, quoted
            for table in tables
            if table not in APPEND_ONLY_TABLES
        ]
        return statements

    DatabaseOperations.sql_flush = sql_flush
    try:
        yield
    finally:
        DatabaseOperations.sql_flush = truncate
