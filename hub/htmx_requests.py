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
