"""Compliance and operations (CMS-0057-F), and the requests other payers made to us."""

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin import selectors
from plan_admin.charts import bar_chart

PERIODS = {"30": "the last 30 days", "90": "the last 90 days", "365": "the last year"}
DEFAULT_PERIOD = "90"


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def compliance(request: HttpRequest, payer: Payer) -> HttpResponse:
    period = request.GET.get("days", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    summary = selectors.compliance_summary(
        payer=payer, since=timezone.now() - timedelta(days=int(period))
    )
    charts = {
        "outcomes": bar_chart(
            "Requests by status", summary.outcomes, label_heading="Status"
        ),
        "failures": bar_chart(
            "Requests that ended without data, by reason", summary.failures_by_reason,
            label_heading="Reason",
        ),
        "deliveries": bar_chart(
            f"Deliveries per week (last {selectors.COMPLIANCE_WEEKS} weeks)",
            summary.deliveries_per_week, label_heading="Week starting", value_heading="Deliveries",
        ),
    }  # fmt: skip
    return render(
        request,
        "plan_admin/compliance.html",
        {
            "payer": payer,
            "summary": summary,
            "charts": charts,
            "period": period,
            "periods": PERIODS,
        },
    )


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def as_former_payer(request: HttpRequest, payer: Payer) -> HttpResponse:
    summary = selectors.former_payer_summary(payer=payer)
    charts = {
        "outcomes": bar_chart("Requests to us by status", summary.outcomes, label_heading="Status"),
        "requesters": bar_chart(
            "Requests to us by requesting payer", summary.by_requesting_payer,
            label_heading="Requesting payer",
        ),
    }  # fmt: skip
    return render(
        request,
        "plan_admin/as_former_payer.html",
        {"payer": payer, "summary": summary, "charts": charts},
    )
