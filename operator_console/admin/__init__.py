"""The operator console's pages, registered on Django's admin site (mounted at /operator/).

Only active staff (hub operators) reach them: the admin site's own check, kept as it is, and
each page's permissions below. Every page that shows a payer's data records the look
(operator_console/admin/looks.py).
"""

from operator_console.admin import (
    audit_log,
    exchange_requests,
    onboarding,
    payers,
    radar,
    registrations,
    users,
)

__all__ = [
    "audit_log",
    "exchange_requests",
    "onboarding",
    "payers",
    "radar",
    "registrations",
    "users",
]
