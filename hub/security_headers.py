"""Response headers that keep pages and PHI where they belong: the Content-Security-Policy and
``Cache-Control: no-store``.

Both middlewares sit after WhiteNoise, so the static files it answers get neither: they carry
no PHI, and their own long cache headers are what makes the portals fast.
"""

from collections.abc import Callable

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.http import HttpRequest, HttpResponse, HttpResponseBase

# Pages made by other projects that put styles in the page itself: Django admin (the operator
# console's change lists, and its own format_html cells) and the API's Swagger UI page.
# Styles only: scripts stay 'self' everywhere.
_INLINE_STYLES_ALLOWED = ("/operator/", "/api/v1/docs/")

# Public documents anyone may cache (view names with their namespace: "home" is the front page,
# not "members:home"): the front page, health, and what other systems fetch
# to talk to the hub (a payer's JWKS, the Consent endpoint's CapabilityStatement).
PUBLIC_VIEW_NAMES = frozenset({"home", "healthz", "payer-jwks", "consent-endpoint-metadata"})


class HubCSPMiddleware(CSPMiddleware):
    """django-csp's policy from settings, with inline styles allowed on the pages above."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if parts.update is None and request.path_info.startswith(_INLINE_STYLES_ALLOWED):
            parts.update = {"style-src": [UNSAFE_INLINE]}
        return parts


class NoStoreMiddleware:
    """Send ``Cache-Control: no-store`` with every response but the public documents.

    Member and plan-administrator pages, the API, the Consent endpoint and the operator
    console carry PHI or secrets; no browser, proxy or shared cache may keep a copy
    (RFC 9111 §5.2.2.5). Listing what is public rather than what is private means a new
    page is private until someone decides otherwise.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        if match is None or match.view_name not in PUBLIC_VIEW_NAMES:
            response["Cache-Control"] = "no-store"
        return response
