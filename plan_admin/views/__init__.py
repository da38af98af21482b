"""Pages of the plan-admin portal under ``/p/<payer_slug>/admin/``.

Every view is wrapped in ``tenant_view(Role.PLAN_ADMIN)``: members and other payers'
administrators get a 404, whatever the method (STYLE.md #2, #9).
"""

from typing import cast

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from hub.models import User


def acting_admin(request: HttpRequest) -> User:
    """Return the signed-in administrator (``tenant_view`` has checked who it is)."""
    return cast(User, request.user)


def wants_fragment(request: HttpRequest) -> bool:
    """Return whether htmx asks for part of a page (not a boosted, whole-page request).

    Such a request gets only the fragment it swaps in; without JavaScript the same view
    answers with the whole page, so every action works either way.
    """
    details = getattr(request, "htmx", None)
    return isinstance(details, HtmxDetails) and bool(details) and not details.boosted
