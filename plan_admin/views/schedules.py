"""The *Recurring pulls* page: each member's schedule with each former or concurrent payer
(exchange/schedules.py), its pause and resume, and the payer's refresh and run-off days."""

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from exchange import schedules
from exchange.models import PullSchedule
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin.forms import PullSettingsForm, ScheduleFilterForm
from plan_admin.schedule_selectors import pull_schedules_csv_rows, pull_schedules_filtered
from plan_admin.views import acting_admin, action_run
from plan_admin.views.lists import csv_download, list_page_context, list_status, rows_filtered

SCHEDULES_PER_PAGE = 50


def _list_url(payer: Payer) -> str:
    return reverse("plan_admin:schedule-list", kwargs={"payer_slug": payer.slug})


def _filtered(
    request: HttpRequest, payer: Payer
) -> tuple[ScheduleFilterForm, QuerySet[PullSchedule]]:
    filter_form = ScheduleFilterForm(data=request.GET or None, payer=payer)
    rows = rows_filtered(
        filter_form,
        lambda filters: pull_schedules_filtered(payer=payer, filters=filters),
        PullSchedule.objects.for_payer(payer).none(),
    )
    return filter_form, rows


def _page(
    request: HttpRequest, payer: Payer, *, settings_form: PullSettingsForm | None = None
) -> HttpResponse:
    filter_form, rows = _filtered(request, payer)
    context = {
        "payer": payer,
        "settings_form": settings_form or PullSettingsForm(instance=payer, auto_id="pulls-%s"),
        **list_page_context(
            request, filter_form=filter_form, rows=rows, per_page=SCHEDULES_PER_PAGE
        ),
    }
    template = (
        "plan_admin/_schedule_results.html"
        if context["refresh_fields"]
        else "plan_admin/schedule_list.html"
    )
    status = 400 if settings_form is not None else list_status(filter_form)
    return render(request, template, context, status=status)


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def schedule_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _page(request, payer)


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def schedule_export(request: HttpRequest, payer: Payer) -> HttpResponse | StreamingHttpResponse:
    """Stream the filtered list as CSV."""
    filter_form, rows = _filtered(request, payer)
    return csv_download(
        filter_form,
        lambda: pull_schedules_csv_rows(queryset=rows),
        name=f"recurring-pulls-{payer.slug}",
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def schedule_action(
    request: HttpRequest, payer: Payer, schedule_id: int, action: str
) -> HttpResponse | HttpResponseRedirect | HttpResponseClientRedirect:
    """Pause or resume one schedule."""
    act = {"pause": schedules.pull_schedule_pause, "resume": schedules.pull_schedule_resume}
    if action not in act:
        return HttpResponse(status=404)
    done = {
        "pause": "Paused: no pull starts until you resume it.",
        "resume": "Resumed: a pull that fell due meanwhile starts within minutes.",
    }
    return action_run(
        request,
        lambda: act[action](payer=payer, schedule_id=schedule_id, actor=acting_admin(request)),
        refused=schedules.PullScheduleActionRefused,
        done=done[action],
        then=_list_url(payer),
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def pull_settings_save(
    request: HttpRequest, payer: Payer
) -> HttpResponse | HttpResponseRedirect | HttpResponseClientRedirect:
    form = PullSettingsForm(data=request.POST, instance=Payer.objects.get(pk=payer.pk))
    if not form.is_valid():
        return _page(request, payer, settings_form=form)
    return action_run(
        request,
        lambda: schedules.pull_settings_update(
            payer=payer,
            concurrent_refresh_days=form.cleaned_data["concurrent_refresh_days"],
            run_off_days=form.cleaned_data["run_off_days"],
            actor=acting_admin(request),
        ),
        refused=ValidationError,
        done="Saved. Each schedule follows the new days from its next pull on.",
        then=_list_url(payer),
    )
