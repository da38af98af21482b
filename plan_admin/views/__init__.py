"""Pages of the plan-admin portal under ``/p/<payer_slug>/admin/``.

Every view is wrapped in ``tenant_view(Role.PLAN_ADMIN)``: members and other payers'
administrators get a 404, whatever the method (STYLE.md #2, #9).
"""

from typing import cast

from django.http import HttpRequest

from hub.models import User


def acting_admin(request: HttpRequest) -> User:
    """Return the signed-in administrator (``tenant_view`` has checked who it is)."""
    return cast(User, request.user)
