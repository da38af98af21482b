"""The operator console's admin site: two factors, short sessions, no way in from a payer's session.

django-otp's OTPAdminSite admits only a session verified by a second factor; on top of it:
- the person must be an operator (active staff of no payer, ``is_operator``): a member's
  or plan administrator's session is sent to the console's sign-in page like a stranger's;
- a session lasts OPERATOR_SESSION_IDLE_MINUTES without a console page, then signs in again;
- failed sign-ins are counted and locked out by django-axes (operator_console/lockout.py).
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_otp.admin import OTPAdminSite

from hub.models import User
from operator_console.forms import OperatorSignInForm


def is_operator(request: HttpRequest) -> bool:
    """Return whether the signed-in person is a hub operator: active staff with no payer."""
    user = request.user
    return isinstance(user, User) and user.is_active and user.is_staff and user.payer_id is None


class OperatorConsoleSite(OTPAdminSite):
    site_header = "Hub operator console"
    site_title = "Hub operator console"
    index_title = "Payers, onboarding, people, requests, the audit log and the compatibility radar"
    login_form = OperatorSignInForm
    login_template = "operator_console/sign_in.html"

    def __init__(self, name: str = "admin") -> None:
        # Named "admin", Django's default: the console's URLs keep the "admin:" namespace.
        super().__init__(name)

    def has_permission(self, request: HttpRequest) -> bool:
        return is_operator(request) and super().has_permission(request)

    def admin_view(self, view: Callable[..., Any], cacheable: bool = False) -> Callable[..., Any]:
        checked = super().admin_view(view, cacheable)

        def idle_timed(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response: HttpResponse = checked(request, *args, **kwargs)
            if self.has_permission(request):
                # Each console page starts the idle clock again; a session left alone ends.
                # Written at most once a minute: not a session UPDATE on every page.
                idle = timedelta(minutes=settings.OPERATOR_SESSION_IDLE_MINUTES)
                now = timezone.now()
                remaining = request.session.get_expiry_date() - now
                if not idle - timedelta(minutes=1) <= remaining <= idle:
                    request.session.set_expiry(now + idle)
            return response

        return idle_timed
