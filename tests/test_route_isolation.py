"""Every route of the hub, walked with North's ids and slug, keeps North's data to North
(STYLE.md #2, #9; ARCHITECTURE.md "Security model").

The routes come from the root URLconf itself, so a route added later is walked too. Its
path parameters are filled with North's objects — one of each tenant-owned kind — and
every route is asked (GET and POST, no CSRF token) by South's plan administrator and
member (on North's URLs and on their own, with North's ids), by North's member (the
plan-admin and API routes), and by someone signed out. No answer may be a 5xx or carry
North's private data; on North's URLs only the few public routes below may answer 2xx,
and a redirect must lead to a sign-in page. Nothing of North's may change.
"""

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.db.models import Model
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from exchange.models import (
    BulkJob,
    Cohort,
    Consent,
    ConsentSubscription,
    ExchangeRequest,
    ExchangeStatus,
    HolderRegistration,
    MatchOutcome,
    OptInRecord,
    PullSchedule,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookSecret,
)
from exchange.repository.models import RepositoryKey
from hub.audit import audit_record
from hub.models import AuditEvent, ClientCertificate, TenantOwned, User
from tests.conftest import Tenant
from tests.factories import (
    BulkJobFactory,
    ClientCertificateFactory,
    CohortFactory,
    CohortMemberFactory,
    ConsentNotificationFactory,
    ConsentSubscriptionFactory,
    DeliveryAttemptFactory,
    DeliveryFactory,
    EndpointProbeFactory,
    ExchangeEventFactory,
    ExchangeRequestFactory,
    FhirEndpointFactory,
    FirstAdministratorLinkFactory,
    HolderRegistrationFactory,
    IdempotencyKeyFactory,
    IdentityProviderFactory,
    MemberAuthorizationLinkFactory,
    MemberEducationTextFactory,
    MemberLaunchFactory,
    OnboardingRequestFactory,
    OptInRecordFactory,
    PullScheduleFactory,
    RepositoryFileFactory,
    RepositoryKeyFactory,
    SftpDestinationFactory,
    SigningKeyFactory,
    WebhookAttemptFactory,
    WebhookSecretFactory,
)
from tests.support.http_stub import HttpStub, http_stub

# Routes anyone may be answered on, North's slug or not: they hold no payer's private data.
PUBLIC_ROUTES = {
    "home": "the landing page names the participating payers",
    "healthz": "the health check",
    "payer-jwks": "a payer's public signing keys, which former payers fetch",
    "sign-in": "starts signing in at the payer's identity provider",
    "members:sign-out": "ends the caller's own session, then shows the signed-out page",
    "members:signed-out": "the page after signing out",
    "consent-endpoint-metadata": "a FHIR CapabilityStatement is open (FHIR R4 §2.15)",
    "api:schema": "the payer-system API's OpenAPI document describes it, no payer's data",
    "api:docs": "the page that shows the OpenAPI document",
}
SKIPPED_NAMESPACES = {
    # The hub operators' Django admin: staff only, and it sees every payer by design.
    # test_the_operator_console_turns_away_every_persona checks that it keeps these out.
    "admin": "the operator console",
}
# Answers that refuse without telling anything: bad request, sign in, forbidden, not found,
# method not allowed. A redirect must lead to a sign-in page.
REFUSALS = {400, 401, 403, 404, 405}
SIGN_IN_PAGES = ("/sign-in/", "/operator/login/")
SETTINGS_PARTS = ["fhir-endpoint", "identity-provider", "client-jwks", "delivery-mode",
                  "sftp-destination"]  # fmt: skip
REQUEST_ACTIONS = ["retry", "cancel"]
SCHEDULE_ACTIONS = ["pause", "resume"]
# In North's private data only: none of it is on a public page.
MARKER = "northwind"


@dataclass(frozen=True)
class Route:
    name: str
    params: tuple[str, ...]
    view: Callable[..., Any]


def _param_names(pattern: Any) -> tuple[str, ...]:
    converters = getattr(pattern, "converters", None)
    return tuple(converters) if converters else tuple(pattern.regex.groupindex)


def _routes(
    resolver: URLResolver, namespace: str = "", params: tuple[str, ...] = ()
) -> Iterator[Route]:
    """Yield every named route below ``resolver`` with all of its path parameters."""
    for entry in resolver.url_patterns:
        names = params + _param_names(entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.namespace in SKIPPED_NAMESPACES:
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _routes(entry, inner, names)
        else:
            assert isinstance(entry, URLPattern)
            assert entry.name, f"name the route {entry.pattern} so it can be walked"
            yield Route(name=f"{namespace}{entry.name}", params=names, view=entry.callback)


@dataclass
class NorthsData:
    tenant: Tenant
    exchange_request: ExchangeRequest
    rows: dict[type[Model], Model]

    def state(self) -> tuple[object, ...]:
        """Return what an outsider's request must not change."""
        payer = self.tenant.payer
        payer.refresh_from_db()
        return (
            ExchangeRequest.objects.for_payer(payer).values_list("status", "reason_code").get(),
            Consent.objects.for_payer(payer).values_list("status", flat=True).get(),
            RepositoryKey.objects.for_payer(payer).values_list("revoked_at", flat=True).get(),
            ConsentSubscription.objects.for_payer(payer).values_list("status", flat=True).get(),
            AuditEvent.objects.for_payer(payer).count(),
            ClientCertificate.objects.for_payer(payer).values_list("subject", flat=True).get(),
            (payer.client_jwks_url, payer.delivery_mode),
            WebhookEndpoint.objects.for_payer(payer).values_list("active", flat=True).get(),
            WebhookMessage.objects.for_payer(payer)
            .values_list("status", "scheduled_attempts")
            .get(),
        )


def _identity_provider_at(stub: HttpStub) -> str:
    """Serve a discovery document from ``stub``; return the provider's issuer."""
    issuer = f"{stub.base}/idp"
    stub.documents["/idp/.well-known/openid-configuration"] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
    }
    return issuer


@pytest.fixture
def identity_provider() -> Iterator[str]:
    with http_stub() as stub:
        yield _identity_provider_at(stub)


@pytest.fixture
def norths_data(north: Tenant, south: Tenant, identity_provider: str) -> NorthsData:
    """One row of each tenant-owned kind at North, its private parts marked with MARKER."""
    north.member.first_name, north.member.last_name = "Nedda", "Northwind"
    north.member.save()
    request = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer,
        status=ExchangeStatus.FAILED, reason_message="Northwind's own failure note",
        card_member_id="NORTHWIND-CARD-0042",
    )  # fmt: skip
    delivery = DeliveryFactory(exchange_request=request, remote_directory="northwind/1")
    subscription = ConsentSubscriptionFactory(
        consent=request.consent, endpoint="https://northwind-subscriber.example/hook"
    )
    cohort = CohortFactory(
        payer=north.payer, former_payer=south.payer, name="Northwind enrollment",
        roster_name="northwind-roster.csv",
    )  # fmt: skip
    endpoint = FhirEndpointFactory(payer=north.payer, base_url="https://fhir.northwind.example/r4")
    rows = [
        request,
        request.consent,
        ExchangeEventFactory(exchange_request=request, message="Northwind timeline line"),
        delivery,
        DeliveryAttemptFactory(delivery=delivery, error_message="northwind upload stalled"),
        subscription,
        ConsentNotificationFactory(subscription=subscription, last_error="northwind hook"),
        MemberLaunchFactory(exchange_request=request),
        PullScheduleFactory(consent=request.consent),
        MemberAuthorizationLinkFactory(exchange_request=request, email="northwind@example.com"),
        OptInRecordFactory(member=north.member, education_text_version="northwind-2026-01"),
        MemberEducationTextFactory(
            published_by=north.admin, body="Northwind's own words on payer-to-payer exchange."
        ),
        IdempotencyKeyFactory(payer=north.payer, response_body={"note": "northwind opt-in"}),
        cohort,
        BulkJobFactory(
            cohort=cohort, sequence=1, state="failed", reason_message="northwind holder said no"
        ),
        CohortMemberFactory(
            cohort=cohort,
            exchange_request=request,
            match_outcome=MatchOutcome.NO_MATCH,
            submitted='{"name": "MemberBundle", "note": "northwind demographics"}',
        ),
        HolderRegistrationFactory(
            payer=north.payer, former_payer=south.payer, backend_client_id="northwind-client"
        ),
        endpoint,
        EndpointProbeFactory(
            endpoint=endpoint,
            steps=[{"name": "Read the CapabilityStatement", "ok": False, "detail": "northwind"}],
        ),
        IdentityProviderFactory(payer=north.payer, issuer=identity_provider),
        SftpDestinationFactory(payer=north.payer, host="sftp.northwind.example"),
        SigningKeyFactory(payer=north.payer),
        ClientCertificateFactory(payer=north.payer, subject="CN=Northwind client"),
        RepositoryKeyFactory(payer=north.payer, label="northwind claims intake"),
        RepositoryFileFactory(payer=north.payer, path="south/1/northwind-bundle.json"),
        OnboardingRequestFactory(requested_by=north.member, organization_name="Northwind Co-op"),
        FirstAdministratorLinkFactory(payer=north.payer),
        audit_record(action="northwind.checked", obj=request, payer=north.payer),
        *_webhook_rows(north),
    ]
    # South signs in too, so its own pages answer as they do in production.
    IdentityProviderFactory(payer=south.payer, issuer=identity_provider)
    by_kind = {type(row): row for row in rows}
    tenant_kinds = {m for m in apps.get_models() if issubclass(m, TenantOwned)} | {AuditEvent}
    missing = sorted(m._meta.label for m in tenant_kinds - set(by_kind))
    assert not missing, f"give North a row of {missing} (tests/factories.py) to walk with"
    return NorthsData(tenant=north, exchange_request=request, rows=by_kind)


def _webhook_rows(north: Tenant) -> list[Model]:
    """North's webhook endpoint, its secret, a message and its try, marked with MARKER."""
    attempt: WebhookAttempt = WebhookAttemptFactory(
        message__endpoint__payer=north.payer,
        message__endpoint__url="https://hooks.northwind.example/in",
        error="northwind endpoint refused",
    )
    secret: WebhookSecret = WebhookSecretFactory(endpoint=attempt.message.endpoint)
    return [attempt.message.endpoint, secret, attempt.message, attempt]


# Which North row a path parameter names, by the parameter's name.
PARAM_KINDS = {
    "request_id": ExchangeRequest,
    "consent_id": Consent,
    "subscription_id": ConsentSubscription,
    "key_id": RepositoryKey,
    "cohort_id": Cohort,
    "job_id": BulkJob,
    "opt_in_id": OptInRecord,
    "endpoint_id": WebhookEndpoint,
    "message_id": WebhookMessage,
    "schedule_id": PullSchedule,
    "certificate_id": ClientCertificate,
}


def _param_values(route: Route, param: str, data: NorthsData, slug: str) -> list[str]:
    if param == "payer_slug":
        return [slug]
    if param in PARAM_KINDS:
        return [str(data.rows[PARAM_KINDS[param]].pk)]
    if param == "pk":  # the plan-admin API: the viewset's own kind of row
        return [str(data.rows[route.view.cls.model].pk)]
    if param == "part":
        return SETTINGS_PARTS
    if param == "former_payer_slug":  # North's registration at a former payer
        return [data.rows[HolderRegistration].former_payer.slug]
    if param == "action":
        return SCHEDULE_ACTIONS if "schedule_id" in route.params else REQUEST_ACTIONS
    if param == "token":  # a first administrator's link: whoever holds North's may use it
        return ["not-norths-token"]
    raise AssertionError(f"teach the route walk a North value for {param!r} of {route.name}")


def _urls(route: Route, data: NorthsData, slug: str) -> Iterator[str]:
    choices = [_param_values(route, param, data, slug) for param in route.params]
    for values in itertools.product(*choices):
        yield reverse(route.name, kwargs=dict(zip(route.params, values, strict=True)))


def _body(response: HttpResponse | StreamingHttpResponse) -> str:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def _is_public(route: Route) -> bool:
    return route.name in PUBLIC_ROUTES


_CLIENT = Client()


def _session_of(user: User) -> dict[str, Any]:
    """Return what a session signed in as ``user`` holds, as ``force_login`` writes it."""
    client = Client()
    client.force_login(user)
    return dict(client.session.items())


def _ask(
    user: User | None, method: str, url: str, sessions: dict[int, dict[str, Any]] | None = None
) -> HttpResponse | Exception:
    # One client for every ask (building one per ask built Django's handler each time), with
    # a fresh session each time: nothing an earlier ask set may carry over. The fresh session
    # is a new row holding what signing in wrote (remembered in ``sessions`` per person):
    # signing in and out a thousand times was most of the walk's time.
    client = _CLIENT
    client.cookies.clear()
    if user is not None:
        if sessions is None:
            sessions = {}
        if user.pk not in sessions:
            sessions[user.pk] = _session_of(user)
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session.update(sessions[user.pk])
        session.create()
        client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    try:
        return getattr(client, method.lower())(url)
    except Exception as exc:  # a view that raises is a 500: report it with the others
        return exc


def _problem(
    route: Route,
    answer: HttpResponse | Exception,
    *,
    outsider_url: bool,
    data: NorthsData,
) -> str | None:
    """Return what is wrong with ``answer`` to an outsider, or None."""
    if isinstance(answer, Exception):
        return f"raised {answer!r}"
    status = answer.status_code
    if status >= 500:
        return f"answered {status}"
    body = _body(answer)
    leaked = [
        marker
        for marker in (MARKER, data.tenant.admin.username, f"/requests/{data.exchange_request.pk}/")
        if marker.lower() in body.lower()
    ]
    if leaked:
        return f"answered {status} with North's {leaked}"
    if not outsider_url or _is_public(route):
        return None
    if 200 <= status < 300:
        return f"answered {status} on North's route"
    if 300 <= status < 400:
        location = answer.headers.get("Location", "")
        return None if any(page in location for page in SIGN_IN_PAGES) else f"sent to {location}"
    return None if status in REFUSALS else f"answered {status}"


# About 1,000 asks, each with a fresh session.
def test_no_route_gives_anyone_but_north_norths_data(
    norths_data: NorthsData, north: Tenant, south: Tenant
) -> None:
    routes = list(_routes(get_resolver()))
    assert len(routes) > 50, "the URLconf walk found too few routes"
    before = norths_data.state()
    # (who, their user, whose slug the URLs carry, which routes they walk)
    personas: list[tuple[str, User | None, str, Callable[[str], bool]]] = [
        ("South's plan administrator", south.admin, "north", lambda url: True),
        ("South's plan administrator at South", south.admin, "south", lambda url: True),
        ("South's member", south.member, "north", lambda url: True),
        ("South's member at South", south.member, "south", lambda url: True),
        ("North's member", north.member, "north",
         lambda url: url.startswith(("/p/north/admin/", "/p/north/api/"))),
        ("someone signed out", None, "north", lambda url: True),
    ]  # fmt: skip
    problems = []
    asked = 0
    sessions: dict[int, dict[str, Any]] = {}
    for (who, user, slug, walks), route in itertools.product(personas, routes):
        for url in _urls(route, norths_data, slug):
            if not walks(url):
                continue
            for method in ("GET", "POST"):
                asked += 1
                answer = _ask(user, method, url, sessions)
                problem = _problem(route, answer, outsider_url=slug == "north", data=norths_data)
                if problem:
                    problems.append(f"{method} {url} ({route.name}) as {who}: {problem}")
    assert not problems, "\n".join(problems)
    assert norths_data.state() == before, "an outsider's request changed North's data"
    assert asked > 500


@pytest.mark.parametrize("persona", ["south_admin", "north_admin", "north_member", "anonymous"])
def test_the_operator_console_turns_away_every_persona(
    persona: str, north: Tenant, south: Tenant
) -> None:
    user = {"south_admin": south.admin, "north_admin": north.admin,
            "north_member": north.member, "anonymous": None}[persona]  # fmt: skip
    for url in ("/operator/", f"/operator/hub/payer/{north.payer.pk}/change/"):
        answer = _ask(user, "GET", url)
        assert isinstance(answer, HttpResponse)
        assert answer.status_code == 302, (url, answer.status_code)
        assert answer["Location"].startswith("/operator/login/")
