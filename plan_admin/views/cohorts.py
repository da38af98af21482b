"""The payer's cohorts: list, roster upload, detail with live progress, members and their CSV,
cancel, and a failed chunk's retry (exchange/bulk/services.py)."""

from functools import partial
from pathlib import Path
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from exchange.bulk import roster as roster_reader
from exchange.bulk import services as cohort_services
from exchange.models import Cohort, CohortMember, CohortStatus
from hub.audit import client_address
from hub.htmx_requests import fragment_target
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin import cohort_selectors as selectors
from plan_admin.forms import ROSTER_MAX_BYTES, CohortMemberFilterForm, RosterUploadForm
from plan_admin.views import acting_admin, action_run
from plan_admin.views.lists import csv_download, list_page_context, list_status, rows_filtered

# The example the roster reader's documentation names, next to it.
ROSTER_EXAMPLE = Path(roster_reader.__file__).with_name("roster_example.csv")
COHORTS_PER_PAGE = 50
MEMBERS_PER_PAGE = 50
# The id of the part of the cohort page its polling asks for (templates/plan_admin/
# _cohort_live.html); htmx names it in HX-Target.
LIVE_PART = "cohort-live"


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def cohort_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    page = Paginator(selectors.cohorts_for_admin(payer=payer), COHORTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(request, "plan_admin/cohort_list.html", {"payer": payer, "page": page})


def _members_filtered(
    request: HttpRequest, payer: Payer, cohort: Cohort
) -> tuple[CohortMemberFilterForm, QuerySet[CohortMember]]:
    """Return the member filter and the members it selects: the page and its CSV alike."""
    filter_form = CohortMemberFilterForm(data=request.GET or None)
    members = rows_filtered(
        filter_form,
        lambda filters: selectors.cohort_members_filtered(
            payer=payer, cohort=cohort, filters=filters
        ),
        CohortMember.objects.for_payer(payer).none(),
    )
    return filter_form, members


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def cohort_detail(request: HttpRequest, payer: Payer, cohort_id: int) -> HttpResponse:
    """The cohort's page. htmx asks for one part of it: the progress (its polling, every
    3 s while the cohort runs) or the members (a change of filter)."""
    cohort = selectors.cohort_for_admin(payer=payer, cohort_id=cohort_id)
    progress = selectors.cohort_progress(cohort)
    context: dict[str, Any] = {"payer": payer, "cohort": cohort, "progress": progress}
    target = fragment_target(request)
    if target == LIVE_PART:
        # The poll says which status the page shows; only a change is announced.
        context["announce"] = request.GET.get("seen") != progress.status
        return render(request, "plan_admin/_cohort_live.html", context)
    filter_form, members = _members_filtered(request, payer, cohort)
    context |= list_page_context(
        request, filter_form=filter_form, rows=members, per_page=MEMBERS_PER_PAGE
    )
    # What was sent to find them, for the members the former payer did not find (PHI: only
    # here, on the payer's own page).
    context["member_rows"] = [(member, selectors.member_sent(member)) for member in context["page"]]
    if target:
        template = "plan_admin/_cohort_members.html"
    else:
        template = "plan_admin/cohort_detail.html"
        context["jobs"] = selectors.cohort_jobs(payer=payer, cohort=cohort)
        context["can_cancel"] = not progress.settled
        # A failed chunk can run again unless the whole cohort was cancelled.
        context["can_retry"] = cohort.status != CohortStatus.CANCELLED
    return render(request, template, context, status=list_status(filter_form))


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def cohort_members_export(
    request: HttpRequest, payer: Payer, cohort_id: int
) -> HttpResponse | StreamingHttpResponse:
    """Stream the cohort's members, filtered as on its page, as CSV."""
    cohort = selectors.cohort_for_admin(payer=payer, cohort_id=cohort_id)
    filter_form, members = _members_filtered(request, payer, cohort)
    return csv_download(
        filter_form,
        lambda: selectors.cohort_members_csv_rows(queryset=members),
        name=f"cohort-{cohort.pk}-members-{payer.slug}",
    )


def _upload_page(
    request: HttpRequest, payer: Payer, form: RosterUploadForm, *, status: int = 200, **extra: Any
) -> HttpResponse:
    context = {
        "payer": payer,
        "form": form,
        "columns": roster_reader.CSV_COLUMN_HELP.items(),
        "max_megabytes": ROSTER_MAX_BYTES // (1024 * 1024),
        **extra,
    }
    return render(request, "plan_admin/cohort_upload.html", context, status=status)


@tenant_view(Role.PLAN_ADMIN)
@require_http_methods(["GET", "POST"])
def cohort_upload(request: HttpRequest, payer: Payer) -> HttpResponse:
    """The roster upload: read whole, then a cohort per former payer, or every problem shown
    and nothing created. The name typed is kept; a browser never keeps a chosen file."""
    if request.method != "POST":
        return _upload_page(request, payer, RosterUploadForm())
    form = RosterUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _upload_page(request, payer, form, status=400)
    upload = form.cleaned_data["roster"]
    filename = upload.name or ""
    try:
        roster = roster_reader.roster_read(
            data=upload.read(), filename=filename, new_payer=payer, now=timezone.now()
        )
        created = cohort_services.cohorts_create(
            new_payer=payer, created_by=acting_admin(request), roster=roster,
            name=form.cleaned_data["name"], roster_name=filename,
            client_address=client_address(request),
        )  # fmt: skip
    except roster_reader.RosterRefused as exc:
        return _upload_page(
            request, payer, form, status=400, problems=exc.problems, roster_name=filename
        )
    except cohort_services.CohortRefused as exc:
        return _upload_page(request, payer, form, status=400, refusal=str(exc))
    members = sum(cohort.member_count for cohort in created)
    if len(created) == 1:
        messages.success(
            request, f"The cohort is created with {members:,} member{pluralize(members)}; "
            "the hub starts asking the former payer now.",
        )  # fmt: skip
        return redirect("plan_admin:cohort-detail", payer_slug=payer.slug, cohort_id=created[0].pk)
    messages.success(
        request, f"{len(created)} cohorts are created, one per former payer, with {members:,} "
        "members in all; the hub starts asking the former payers now.",
    )  # fmt: skip
    return redirect("plan_admin:cohort-list", payer_slug=payer.slug)


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def roster_example(request: HttpRequest, payer: Payer) -> FileResponse:
    """The documented example roster (exchange/bulk/roster_example.csv), as a download."""
    return FileResponse(
        ROSTER_EXAMPLE.open("rb"),
        as_attachment=True,
        filename=ROSTER_EXAMPLE.name,
        content_type="text/csv; charset=utf-8",
    )


def _detail(payer: Payer, cohort_id: int) -> str:
    return reverse(
        "plan_admin:cohort-detail", kwargs={"payer_slug": payer.slug, "cohort_id": cohort_id}
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def cohort_cancel(request: HttpRequest, payer: Payer, cohort_id: int) -> HttpResponseBase:
    """Cancel the whole cohort; a refusal is shown on its page."""
    act = partial(
        cohort_services.cohort_cancel, payer=payer, cohort_id=cohort_id,
        actor=acting_admin(request), client_address=client_address(request),
    )  # fmt: skip
    return action_run(
        request, act, refused=cohort_services.CohortActionRefused,
        done="The cohort is cancelled; members still on their way are too.",
        then=_detail(payer, cohort_id),
    )  # fmt: skip


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def cohort_chunk_retry(
    request: HttpRequest, payer: Payer, cohort_id: int, job_id: int
) -> HttpResponseBase:
    """Run a failed job's chunk again from its match; a refusal is shown on the cohort's page."""
    act = partial(
        cohort_services.cohort_chunk_retry, payer=payer, cohort_id=cohort_id, job_id=job_id,
        actor=acting_admin(request), client_address=client_address(request),
    )  # fmt: skip
    return action_run(
        request, act, refused=cohort_services.CohortActionRefused,
        done="The chunk starts over; its failed members are matched again.",
        then=_detail(payer, cohort_id),
    )  # fmt: skip
