"""Which requests htmx makes for part of a page, for every portal (django-htmx's request.htmx)."""

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


def wants_fragment(request: HttpRequest) -> bool:
    """Return whether htmx asks for part of a page (not a boosted, whole-page request).

    Such a request gets only the fragment it swaps in; without JavaScript the same view
    answers with the whole page, so every action works either way.
    """
    details = getattr(request, "htmx", None)
    return isinstance(details, HtmxDetails) and bool(details) and not details.boosted


def fragment_target(request: HttpRequest) -> str:
    """Return the id of the element htmx will swap the answer into ("" for a whole page), so
    a page that htmx asks for in several parts answers with the part asked for."""
    if not wants_fragment(request):
        return ""
    details: HtmxDetails = getattr(request, "htmx")  # noqa: B009  # set by the middleware
    return details.target or ""
