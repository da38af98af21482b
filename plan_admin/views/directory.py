"""The directory of participating payers, and requests to onboard the missing ones."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from directory import selectors as directory_selectors
from directory import services as directory_services
from directory.forms import DirectorySearchForm, OnboardingRequestForm
from hub.audit import client_address
from hub.models import Payer, PlanType, Role
from hub.tenancy import tenant_view
from plan_admin import selectors
from plan_admin.views import acting_admin


def _directory_page(
    request: HttpRequest, payer: Payer, *, onboarding_form: OnboardingRequestForm, status: int = 200
) -> HttpResponse:
    search = DirectorySearchForm(request.GET)
    # A search that cannot run (a NUL byte, a state that is no state) shows the whole list.
    found = search.cleaned_data if search.is_valid() else {}
    query = found.get("q", "")
    state = found.get("state", "")
    plan_type = found.get("plan_type", "")
    return render(
        request,
        "plan_admin/directory.html",
        {
            "payer": payer,
            "entries": directory_selectors.directory_entries(
                payer=payer,
                query=query,
                state=state,
                plan_type=plan_type,
                delivered_at=selectors.deliveries_last_by_former_payer(payer=payer),
            ),
            "search": search,
            "query": request.GET.get("q", ""),
            "state": request.GET.get("state", ""),
            "plan_type": plan_type,
            "plan_types": PlanType.choices,
            "onboarding_form": onboarding_form,
            "onboarding_requests": directory_selectors.onboarding_requests_of(payer=payer),
        },
        status=400 if search.errors else status,
    )


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def directory(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _directory_page(request, payer, onboarding_form=OnboardingRequestForm())


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def onboarding_request_create(request: HttpRequest, payer: Payer) -> HttpResponse:
    form = OnboardingRequestForm(data=request.POST)
    if not form.is_valid():
        return _directory_page(request, payer, onboarding_form=form, status=400)
    directory_services.onboarding_request_create(
        payer=payer,
        requested_by=acting_admin(request),
        client_address=client_address(request),
        **{name: form.cleaned_data[name] for name in form._meta.fields or ()},
    )
    messages.success(
        request,
        f"Thank you — the hub's team will contact {form.cleaned_data['organization_name']}.",
    )
    return redirect("plan_admin:directory", payer_slug=payer.slug)
