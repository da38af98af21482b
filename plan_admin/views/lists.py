"""What every filtered list of the portal shares: the filter, the page, the CSV export.

A list (the requests, a cohort's members) reads its query string through a filter form;
the page and its CSV export select their rows through ``rows_filtered``, so they always
show the same rows. With htmx a change of filter asks for the results only
(``plan_admin/_filtered_results.html``), and each field comes back out of band with its
error, or none.
"""

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from hub.csv_stream import csv_stream_response
from hub.htmx_requests import wants_fragment

_M = TypeVar("_M", bound=Model)
_Filters = TypeVar("_Filters", covariant=True)


class FilterForm(Protocol[_Filters]):
    """A list's filter form: a Django form whose ``filters()`` says what it selects."""

    @property
    def errors(self) -> Any: ...

    @property
    def is_bound(self) -> bool: ...

    def is_valid(self) -> bool: ...

    def filters(self) -> _Filters: ...


def rows_filtered(
    filter_form: FilterForm[_Filters],
    select: Callable[[_Filters], QuerySet[_M]],
    nothing: QuerySet[_M],
) -> QuerySet[_M]:
    """Return the rows ``filter_form`` selects: ``nothing`` when it is invalid.

    A filter the administrator mistyped must not quietly widen into "everything".
    """
    if filter_form.is_bound and not filter_form.is_valid():
        return nothing
    return select(filter_form.filters())


def list_page_context(
    request: HttpRequest, *, filter_form: FilterForm[Any], rows: QuerySet[Any], per_page: int
) -> dict[str, Any]:
    """Return the context of ``plan_admin/_filtered_results.html``: the page of ``rows``
    the query string asks for, and the query string of its CSV link."""
    page = Paginator(rows, per_page).get_page(request.GET.get("page"))
    # The CSV link carries the list's filter, without the page number.
    export_query = request.GET.copy()
    export_query.pop("page", None)
    return {
        "filter_form": filter_form,
        "filter_valid": not filter_form.errors,
        "export_query": export_query,
        "page": page,
        # htmx swaps the results and, out of band, each filter field with its error (or none).
        "refresh_fields": wants_fragment(request),
    }


def list_status(filter_form: FilterForm[Any]) -> int:
    return 400 if filter_form.errors else 200


def csv_download(
    filter_form: FilterForm[Any], rows: Callable[[], Iterable[Iterable[object]]], *, name: str
) -> HttpResponse | StreamingHttpResponse:
    """Stream ``rows()`` as the CSV file ``<name>-<time>.csv``, so 100,000 rows never sit in
    memory at once; refuse with a sentence when the filter is not valid."""
    if filter_form.errors:
        return HttpResponse(
            "The filter is not valid, so nothing was exported: correct it on the list.",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    return csv_stream_response(rows=rows(), name=name)
