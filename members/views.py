"""The member portal: find the former plan, consent, authorize, watch, withdraw.

Every page is under ``/p/<payer_slug>/me/`` and only for members of that payer
(hub.tenancy.tenant_view); every request is looked up through the member's own
selectors, so another member's request — or another payer's — is a 404.
"""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from directory.selectors import directory_payers_to_ask, onboarding_requests_by_member
from directory.services import onboarding_request_create
from exchange.education import member_education_text_current
from exchange.fhir.errors import FhirCallError
from exchange.match_limits import MemberMatchLimited
from exchange.models import ExchangeStatus
from exchange.services import (
    ExchangeRequestRefused,
    FormerCoverage,
    exchange_request_authorize,
    exchange_request_deny,
    exchange_request_withdraw,
    exchange_requests_create,
)
from exchange.smart.member_launch import (
    member_launch_begin,
)
from hub.audit import client_address
from hub.htmx_requests import wants_fragment
from hub.models import Payer, PlanType, Role, User
from hub.tenancy import tenant_view
from members import selectors
from members.forms import (
    ConsentForm,
    DirectorySearchForm,
    FormerCoverageForm,
    OnboardingRequestForm,
    form_errors,
)


def _member(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # tenant_view lets only a member of this payer through
        raise Http404("No such page.")
    return user


def _detail_url(payer: Payer, request_id: int) -> str:
    return reverse(
        "members:request-detail", kwargs={"payer_slug": payer.slug, "request_id": request_id}
    )


def _my_requests(request: HttpRequest, payer: Payer, template: str) -> HttpResponse:
    """Render the member's requests and the invitations they sent, for home and the list."""
    member = _member(request)
    return render(
        request,
        template,
        {
            "payer": payer,
            "requests": selectors.member_requests(payer=payer, member=member),
            "invitations": onboarding_requests_by_member(payer=payer, member=member),
        },
    )


@tenant_view(Role.MEMBER)
def home(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _my_requests(request, payer, "members/home.html")


@tenant_view(Role.MEMBER)
def request_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _my_requests(request, payer, "members/request_list.html")


@tenant_view(Role.MEMBER)
def directory(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Search the participating plans; tick one or more former plans to ask."""
    form = DirectorySearchForm(request.GET or None)
    search = form.cleaned_data if form.is_bound and form.is_valid() else {}
    payers = directory_payers_to_ask(
        payer=payer,
        name=search.get("q", ""),
        state=search.get("state", ""),
        plan_type=search.get("plan_type", ""),
    )
    kinds = dict(PlanType.choices)
    rows = [(p, [kinds.get(code, code) for code in p.plan_types]) for p in payers]
    return render(
        request,
        "members/directory.html",
        {"payer": payer, "form": form, "rows": rows, "search_errors": form_errors(form)},
        # A search the form refuses (a NUL byte, an over-long name) is the asker's error.
        status=400 if form.is_bound and form.errors else 200,
    )


@tenant_view(Role.MEMBER)
def request_new(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Describe each chosen former plan, choose what may be shared, and consent."""
    member = _member(request)
    chosen_ids = set(
        request.POST.getlist("former")
        if request.method == "POST"
        else request.GET.getlist("former")
    )
    # Compared as text: a ticked id is only ever one the directory itself offered.
    former_payers = [p for p in directory_payers_to_ask(payer=payer) if str(p.pk) in chosen_ids]
    if not former_payers:
        messages.error(request, "Choose at least one former plan from the directory first.")
        return HttpResponseRedirect(reverse("members:directory", kwargs={"payer_slug": payer.slug}))
    data = request.POST if request.method == "POST" else None
    coverage_forms = [
        (former, FormerCoverageForm(data, prefix=f"p{former.pk}", former_plan_name=former.name))
        for former in former_payers
    ]
    consent_form = ConsentForm(data, payer=payer)
    open_requests = selectors.member_open_requests_to(
        payer=payer, member=member, former_payers=former_payers
    )
    limited: MemberMatchLimited | None = None
    if (
        data is not None
        and consent_form.is_valid()
        and all(f.is_valid() for _, f in coverage_forms)
    ):
        if open_requests and not consent_form.cleaned_data["ask_again"]:
            # A second request to the same plan is allowed (new dates, a new card) but
            # never by accident: the member sees the open one and says so.
            consent_form.add_error(
                "ask_again",
                "You already have an open request to "
                + ", ".join(sorted({r.former_payer.name for r in open_requests}))
                + ". Open it from the list above, or tick the box to ask again anyway.",
            )
        else:
            try:
                created = exchange_requests_create(
                    member=member,
                    coverages=[
                        FormerCoverage(
                            former_payer=former,
                            card_member_id=form.cleaned_data["card_member_id"],
                            coverage_start=form.cleaned_data["coverage_start"],
                            coverage_end=form.cleaned_data["coverage_end"],
                        )
                        for former, form in coverage_forms
                    ],
                    policy=consent_form.cleaned_data["policy"],
                    education_text_version=consent_form.cleaned_data["education_text"].version,
                    client_address=client_address(request),
                )
            except MemberMatchLimited as exc:
                consent_form.add_error(None, str(exc))
                limited = exc
            except ExchangeRequestRefused as exc:
                consent_form.add_error(None, str(exc))
            else:
                if len(created) == 1:
                    return HttpResponseRedirect(_detail_url(payer, created[0].pk))
                messages.success(request, f"{len(created)} requests opened.")
                return HttpResponseRedirect(
                    reverse("members:request-list", kwargs={"payer_slug": payer.slug})
                )
    response = render(
        request,
        "members/request_new.html",
        {
            "payer": payer,
            "coverage_forms": coverage_forms,
            "consent_form": consent_form,
            "former_payers": former_payers,
            "open_requests": open_requests,
            # Shown before the consent, and its version sent back with it.
            "education": member_education_text_current(payer=payer),
            "errors": form_errors(*(f for _, f in coverage_forms), consent_form),
        },
        status=429 if limited else 400 if data is not None else 200,
    )
    if limited:
        # RFC 6585 §4; the page itself says when, in words.
        response["Retry-After"] = str(limited.retry_after_seconds)
    return response


@tenant_view(Role.MEMBER)
def request_detail(request: HttpRequest, payer: Payer, request_id: int) -> HttpResponse:
    """The request's page; asked by htmx (its polling), only the part that moves."""
    member = _member(request)
    version = selectors.member_request_version(payer=payer, member=member, request_id=request_id)
    if wants_fragment(request) and request.GET.get("version") == version:
        # The page's copy is current: no body, and htmx swaps nothing on a 204. The polls are
        # most of the hub's traffic (README, Benchmarks: "Load").
        return HttpResponse(status=204)
    exchange_request = selectors.member_request(payer=payer, member=member, request_id=request_id)
    progress = selectors.member_request_progress(exchange_request=exchange_request)
    context = {
        "payer": payer,
        "exchange_request": exchange_request,
        "progress": progress,
        "version": version,
        "can_withdraw": selectors.consent_can_be_withdrawn(exchange_request.consent),
    }
    if wants_fragment(request):
        # The poll says which status the page shows; only a change is announced.
        context["announce"] = request.GET.get("seen") != progress.status
        return render(request, "members/_request_live.html", context)
    return render(request, "members/request_detail.html", context)


@tenant_view(Role.MEMBER)
def request_progress(request: HttpRequest, payer: Payer, request_id: int) -> JsonResponse:
    """Return the request's progress as JSON, for scripts and for the tests."""
    exchange_request = selectors.member_request(
        payer=payer, member=_member(request), request_id=request_id
    )
    progress = selectors.member_request_progress(exchange_request=exchange_request)
    return JsonResponse(progress.as_json())


@require_POST
@tenant_view(Role.MEMBER)
def request_authorize(request: HttpRequest, payer: Payer, request_id: int) -> HttpResponse:
    """Send the member to sign in at the former plan (SMART standalone launch)."""
    exchange_request = selectors.member_request(
        payer=payer, member=_member(request), request_id=request_id
    )
    redirect_uri = request.build_absolute_uri(
        reverse("members:launch-callback", kwargs={"payer_slug": payer.slug})
    )
    try:
        authorize_url = member_launch_begin(
            exchange_request=exchange_request, redirect_uri=redirect_uri
        )
    except FhirCallError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(_detail_url(payer, exchange_request.pk))
    return HttpResponseRedirect(authorize_url)


@tenant_view(Role.MEMBER)
def launch_callback(request: HttpRequest, payer: Payer) -> HttpResponse:
    """The former plan sends the member back here with a code (or an error)."""
    redirect_uri = request.build_absolute_uri(
        reverse("members:launch-callback", kwargs={"payer_slug": payer.slug})
    )
    state = request.GET.get("state", "")
    try:
        if request.GET.get("error"):
            exchange_request = exchange_request_deny(
                payer=payer,
                member=_member(request),
                state=state,
                redirect_uri=redirect_uri,
                said=request.GET.get("error_description") or request.GET["error"],
            )
        else:
            exchange_request = exchange_request_authorize(
                payer=payer,
                member=_member(request),
                state=state,
                code=request.GET.get("code", ""),
                redirect_uri=redirect_uri,
            )
    except FhirCallError as exc:
        return render(
            request,
            "members/sign_in_problem.html",
            {"payer": payer, "reason": exc.message},
            status=400,
        )
    return HttpResponseRedirect(_detail_url(payer, exchange_request.pk))


@require_POST
@tenant_view(Role.MEMBER)
def request_withdraw(request: HttpRequest, payer: Payer, request_id: int) -> HttpResponse:
    exchange_request = selectors.member_request(
        payer=payer, member=_member(request), request_id=request_id
    )
    if not selectors.consent_can_be_withdrawn(exchange_request.consent):
        messages.info(request, "This consent has already ended; there is nothing to withdraw.")
        return HttpResponseRedirect(_detail_url(payer, exchange_request.pk))
    exchange_request_withdraw(
        actor=_member(request),
        exchange_request=exchange_request,
        client_address=client_address(request),
    )
    if exchange_request.status == ExchangeStatus.DELIVERED:
        messages.success(
            request,
            f"Your consent is withdrawn. The records already delivered stay with {payer.name}; "
            f"nothing more will be fetched from {exchange_request.former_payer.name}.",
        )
    else:
        messages.success(request, "Your consent is withdrawn. Nothing more will be fetched.")
    return HttpResponseRedirect(_detail_url(payer, exchange_request.pk))


@tenant_view(Role.MEMBER)
def consent_fhir(request: HttpRequest, payer: Payer, consent_id: int) -> JsonResponse:
    """Return the HRex Consent the member gave, as sent to the former payer."""
    consent = selectors.member_consent(payer=payer, member=_member(request), consent_id=consent_id)
    return JsonResponse(consent.fhir_resource, content_type="application/fhir+json")


@tenant_view(Role.MEMBER)
def invite_plan(request: HttpRequest, payer: Payer) -> HttpResponse:
    """ "My plan is not listed": ask the hub to bring it on board."""
    form = OnboardingRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        onboarding = onboarding_request_create(
            payer=payer,
            requested_by=_member(request),
            client_address=client_address(request),
            **{name: form.cleaned_data[name] for name in form._meta.fields or ()},
        )
        messages.success(
            request,
            f"Thank you. We will ask {onboarding.organization_name} to join; "
            f"{payer.name} can see your request.",
        )
        return HttpResponseRedirect(reverse("members:home", kwargs={"payer_slug": payer.slug}))
    return render(
        request,
        "members/invite_plan.html",
        {"payer": payer, "form": form, "errors": form_errors(form)},
        status=400 if form.errors else 200,
    )


def signed_out(request: HttpRequest, payer_slug: str) -> HttpResponse:
    return render(request, "members/signed_out.html", {"payer_slug": payer_slug})
