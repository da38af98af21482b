"""Reads across every payer, for tests that prove something happened nowhere (or everywhere)."""

from typing import Any

from django.db.models import Model, QuerySet


def rows_of_every_payer(model: type[Model]) -> QuerySet[Any]:
    """Return all rows of a tenant-owned ``model`` (or the audit log), whoever owns them."""
    manager: Any = model._default_manager
    return manager.across_payers(reason="a test proves what no payer, or every payer, holds")
