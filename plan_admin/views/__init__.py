"""Pages of the plan-admin portal under ``/p/<payer_slug>/admin/``.

Every view is wrapped in ``tenant_view(Role.PLAN_ADMIN)``: members and other payers'
administrators get a 404, whatever the method (STYLE.md #2, #9).
"""

from typing import cast

from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django_htmx.http import HttpResponseClientRedirect

from hub.htmx_requests import wants_fragment
from hub.models import User


def acting_admin(request: HttpRequest) -> User:
    """Return the signed-in administrator (``tenant_view`` has checked who it is)."""
    return cast(User, request.user)


def action_done(
    request: HttpRequest, url: str
) -> HttpResponseRedirect | HttpResponseClientRedirect:
    """Send the administrator back to ``url`` after an action, its message queued.

    htmx showed the progress while the action ran; a full load of the page then shows the
    new state, the message and its (re)initialized dialogs.
    """
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)
