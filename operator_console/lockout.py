"""The console's lockout: django-axes counts failed sign-ins there, and only there.

A person guessing an operator's password or code is stopped after AXES_FAILURE_LIMIT tries
per username or per client address, for AXES_COOLOFF_TIME, and told when to try again.
Members and plan administrators never sign in with a password at the hub (their payer's
identity provider does that), so their failed OpenID Connect callbacks are not counted here.
"""

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class ConsoleSignInAttempts(AxesDatabaseHandler):
    """axes's database handler, recording failures at the console's sign-in page only."""

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        if request is None or not self.is_admin_request(request):
            return
        super().user_login_failed(sender, credentials, request, **kwargs)


def locked_out_page(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """Return a 429 page saying the sign-in is locked and when to try again (Retry-After)."""
    cool_off = get_cool_off(request)
    minutes = int(cool_off.total_seconds() // 60) if cool_off else 0
    response = render(
        request,
        "operator_console/locked_out.html",
        {"minutes": minutes},
        status=429,
    )
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
