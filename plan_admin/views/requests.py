"""The payer's exchange requests: list, filter, export, detail, retry and cancel."""

from functools import partial

from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from exchange import services as lifecycle
from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.selectors import exchange_request_record_counts
from exchange.state_machine import ENDED
from hub.audit import client_address
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin import selectors
from plan_admin.forms import RequestFilterForm
from plan_admin.timeline import admin_timeline
from plan_admin.views import acting_admin, action_run
from plan_admin.views.lists import csv_download, list_page_context, list_status, rows_filtered

REQUESTS_PER_PAGE = 50


def _filtered(
    request: HttpRequest, payer: Payer
) -> tuple[RequestFilterForm, QuerySet[ExchangeRequest]]:
    """Return the filter form and the requests it selects (none when it is invalid): the
    list and its CSV export both read this, so they always show the same rows."""
    filter_form = RequestFilterForm(data=request.GET or None, payer=payer)
    requests = rows_filtered(
        filter_form,
        lambda filters: selectors.exchange_requests_filtered(payer=payer, filters=filters),
        ExchangeRequest.objects.for_payer(payer).none(),
    )
    return filter_form, requests


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def request_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    filter_form, requests = _filtered(request, payer)
    context = {
        "payer": payer,
        **list_page_context(
            request, filter_form=filter_form, rows=requests, per_page=REQUESTS_PER_PAGE
        ),
    }
    # The filters ask with htmx for the results only; a full page answers everything else.
    template = (
        "plan_admin/_request_results.html"
        if context["refresh_fields"]
        else "plan_admin/request_list.html"
    )
    return render(request, template, context, status=list_status(filter_form))


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def request_export(request: HttpRequest, payer: Payer) -> HttpResponse | StreamingHttpResponse:
    """Stream the filtered list as CSV."""
    filter_form, requests = _filtered(request, payer)
    return csv_download(
        filter_form,
        lambda: selectors.exchange_requests_csv_rows(queryset=requests),
        name=f"requests-{payer.slug}",
    )


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def request_detail(request: HttpRequest, payer: Payer, request_id: int) -> HttpResponse:
    exchange_request = selectors.exchange_request_for_admin(payer=payer, request_id=request_id)
    delivery = selectors.exchange_request_delivery(payer=payer, exchange_request=exchange_request)
    events = selectors.exchange_request_timeline(payer=payer, exchange_request=exchange_request)
    manifest = delivery.manifest if delivery else {}
    # Once packaged, what the package holds — the counts the member's page and the manifest
    # show (exchange.selectors) — beside what arrived from the former payer.
    packaged = (
        exchange_request_record_counts(exchange_request=exchange_request, manifest=manifest)
        if manifest
        else {}
    )
    retrieved = exchange_request.resource_counts
    return render(
        request,
        "plan_admin/request_detail.html",
        {
            "payer": payer,
            "exchange_request": exchange_request,
            "resource_rows": [
                (kind, retrieved.get(kind), packaged.get(kind))
                for kind in sorted(set(retrieved) | set(packaged))
            ],
            "resource_totals": (
                sum(retrieved.values()),
                sum(packaged.values()) if packaged else None,
            ),
            "timeline": admin_timeline(events, exchange_request),
            # A roster's member: its line of the cohort (the reverse one-to-one, joined above).
            "cohort_member": getattr(exchange_request, "cohort_member", None),
            "delivery": delivery,
            "files": (delivery.manifest.get("files") or []) if delivery else [],
            "can_retry": exchange_request.status == ExchangeStatus.FAILED,
            "can_cancel": exchange_request.status not in ENDED,
            "overdue": exchange_request.status not in ENDED
            and exchange_request.due_by < timezone.now(),
            # From opt-in to now, or to the end the request reached.
            "elapsed": (
                exchange_request.status_changed_at
                if exchange_request.status in ENDED
                else timezone.now()
            )
            - exchange_request.opted_in_at,
        },
    )


# The administrator's actions on one request: the service that does it, what to say after.
_REQUEST_ACTIONS = {
    "retry": (
        lifecycle.exchange_request_retry,
        "The request starts over; the engine picks it up now.",
    ),
    "cancel": (lifecycle.exchange_request_cancel, "The request is cancelled."),
}


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def request_action(
    request: HttpRequest, payer: Payer, request_id: int, action: str
) -> HttpResponseRedirect | HttpResponseClientRedirect:
    """Retry or cancel one of the payer's requests; a refusal is shown on its page."""
    if action not in _REQUEST_ACTIONS:
        raise Http404("No such action.")
    service, done = _REQUEST_ACTIONS[action]
    act = partial(
        service, payer=payer, request_id=request_id, actor=acting_admin(request),
        client_address=client_address(request),
    )  # fmt: skip
    detail = reverse(
        "plan_admin:request-detail", kwargs={"payer_slug": payer.slug, "request_id": request_id}
    )
    return action_run(
        request, act, refused=lifecycle.ExchangeRequestActionRefused, done=done, then=detail
    )
