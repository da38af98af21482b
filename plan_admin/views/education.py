"""The *Member education* page: the plain-language text members read before they opt in.

CMS-0057-F has the new payer explain payer-to-payer exchange to its members — its
benefits, their right to opt in and to withdraw, and how — at or before the opt-in request
(42 CFR 422.121(b)). The administrator sees the text members are shown now and every
earlier version, previews a new one and publishes it; a published version never changes
(exchange/education.py).
"""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from exchange.education import (
    EducationText,
    EducationTextRefused,
    member_education_text_current,
    member_education_text_publish,
    member_education_texts_list,
)
from hub.audit import client_address
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin.forms import MemberEducationForm
from plan_admin.views import acting_admin


def _page(
    request: HttpRequest,
    payer: Payer,
    *,
    form: MemberEducationForm | None = None,
    preview: EducationText | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "plan_admin/member_education.html",
        {
            "payer": payer,
            "current": member_education_text_current(payer=payer),
            "versions": member_education_texts_list(payer=payer),
            "form": form or MemberEducationForm(auto_id="education-%s"),
            "preview": preview,
        },
        status=status,
    )


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def member_education_page(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _page(request, payer)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def member_education_publish(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Publish the new version, or with ``preview`` show it as members would read it."""
    form = MemberEducationForm(data=request.POST, auto_id="education-%s")
    if not form.is_valid():
        return _page(request, payer, form=form, status=400)
    data = form.cleaned_data
    if "preview" in request.POST:
        preview = EducationText(
            version=data["version"].strip() or "(numbered when published)",
            title=data["title"].strip(),
            body=data["body"].strip(),
            published_at=None,
            published_by="",
        )
        return _page(request, payer, form=form, preview=preview)
    try:
        text = member_education_text_publish(
            payer=payer,
            actor=acting_admin(request),
            title=data["title"],
            body=data["body"],
            version=data["version"],
            client_address=client_address(request),
        )
    except EducationTextRefused as exc:
        form.add_error(exc.field, str(exc))
        return _page(request, payer, form=form, status=400)
    messages.success(request, f"Version {text.version} is published; members see it from now on.")
    return HttpResponseRedirect(
        reverse("plan_admin:member-education", kwargs={"payer_slug": payer.slug})
    )
