"""Pages of the plan-admin portal under ``/p/<payer_slug>/admin/``.

Every view is wrapped in ``tenant_view(Role.PLAN_ADMIN)``: members and other payers'
administrators get a 404, whatever the method (STYLE.md #2, #9).
"""

from collections.abc import Callable
from typing import cast

from django.contrib import messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django_htmx.http import HttpResponseClientRedirect

from hub.htmx_requests import wants_fragment
from hub.models import User


def acting_admin(request: HttpRequest) -> User:
    """Return the signed-in administrator (``tenant_view`` has checked who it is)."""
    return cast(User, request.user)


def action_run(
    request: HttpRequest,
    act: Callable[[], object],
    *,
    refused: type[Exception],
    done: str,
    then: str,
) -> HttpResponseRedirect | HttpResponseClientRedirect:
    """Run one administrator action (a service call), queue its message — ``done``, or the
    service's reason for a ``refused`` — and send the administrator back to ``then``.

    htmx showed the progress while the action ran; a full load of the page then shows the
    new state, the message and its (re)initialized dialogs.
    """
    try:
        act()
    except refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    if wants_fragment(request):
        return HttpResponseClientRedirect(then)
    return redirect(then)
