"""The member portal's pages (sign-in and the request flow arrive with the member-exchange issue)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from hub.models import Payer, Role
from hub.tenancy import tenant_view
from members import selectors


@tenant_view(Role.MEMBER)
def request_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    requests = selectors.member_requests(payer=payer, member=request.user)  # type: ignore[arg-type]
    return render(request, "members/request_list.html", {"payer": payer, "requests": requests})


@tenant_view(Role.MEMBER)
def request_detail(request: HttpRequest, payer: Payer, request_id: int) -> HttpResponse:
    exchange_request = selectors.member_request(
        payer=payer,
        member=request.user,  # type: ignore[arg-type]
        request_id=request_id,
    )
    return render(
        request,
        "members/request_detail.html",
        {
            "payer": payer,
            "exchange_request": exchange_request,
            "events": selectors.member_request_timeline(exchange_request=exchange_request),
        },
    )


@tenant_view(Role.MEMBER)
def consent_fhir(request: HttpRequest, payer: Payer, consent_id: int) -> JsonResponse:
    """Return the HRex Consent the member gave, as sent to the former payer."""
    consent = selectors.member_consent(
        payer=payer,
        member=request.user,  # type: ignore[arg-type]
        consent_id=consent_id,
    )
    return JsonResponse(consent.fhir_resource, content_type="application/fhir+json")
