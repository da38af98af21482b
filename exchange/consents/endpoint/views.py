"""``/p/<slug>/fhir/``: a small FHIR R4 server of one payer's Consents, for the former payers
named in them (seed 000 steps 5 and 10-12). Read ``Consent/{id}``; create, read and delete
a rest-hook ``Subscription`` with criteria ``Consent?_id={id}``.

A caller sees only Consents whose source (the disclosing former payer) it is; anything
else is a 404, as for a Consent that does not exist.
"""

import re
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from fhir.resources.R4B.subscription import Subscription as FhirSubscription
from pydantic import ValidationError as ModelValidationError

from exchange.consents.endpoint.auth import ClientRefused, access_token_check
from exchange.models import Consent, ConsentSubscription, SubscriptionStatus
from exchange.screening.structural_validation import structural_problems
from hub.audit import audit_record
from hub.json_input import JsonInputRefused, json_input_load
from hub.models import Payer
from hub.validators import validate_payer_url

FHIR_JSON = "application/fhir+json"
# Seed 000 writes "Consent?id=..."; FHIR search spells it "_id". Both name one Consent.
_CRITERIA = re.compile(r"^Consent\?_?id=([0-9]+)$")

Handler = Callable[..., HttpResponse]


def operation_outcome(status: int, code: str, text: str) -> JsonResponse:
    """Return a FHIR OperationOutcome naming the problem (FHIR R4 §3.1.0.5)."""
    return JsonResponse(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        },
        status=status,
        content_type=FHIR_JSON,
    )


def _unknown_payer(payer_slug: str) -> JsonResponse:
    return operation_outcome(404, "not-found", f"no payer {payer_slug!r} at this hub")


def _fhir(data: dict[str, Any], status: int = 200, **headers: str) -> JsonResponse:
    return JsonResponse(data, status=status, content_type=FHIR_JSON, headers=headers)


def _client(view: Handler) -> Handler:
    """Require a live bearer token from the hub's token endpoint; pass the calling payer on."""

    def wrapper(request: HttpRequest, payer_slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return operation_outcome(
                401, "login", "a bearer token from the hub's token endpoint is required"
            )
        try:
            client, scopes = access_token_check(authorization.removeprefix("Bearer ").strip())
        except ClientRefused as exc:
            return operation_outcome(401, "login", exc.description)
        tenant = Payer.objects.filter(slug=payer_slug).first()
        if tenant is None:
            return _unknown_payer(payer_slug)
        return view(request, tenant, client, scopes, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


# Either grantable Subscription scope (SMART v2 ``cruds``, v1 ``write``) covers creating,
# reading and deleting the client's own subscriptions.
SUBSCRIPTION_SCOPES = frozenset({"system/Subscription.cruds", "system/Subscription.write"})


def _lacks_subscription_scope() -> JsonResponse:
    return operation_outcome(403, "forbidden", "the token lacks system/Subscription.cruds")


def _consent_for_client(tenant: Payer, client: Payer, consent_id: int) -> Consent | None:
    return Consent.objects.for_payer(tenant).filter(pk=consent_id, former_payer=client).first()


def _subscription_resource(subscription: ConsentSubscription) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": str(subscription.pk),
        "status": subscription.status,
        "reason": subscription.reason or "Consent status changes",
        "criteria": subscription.criteria,
        "channel": {"type": "rest-hook", "endpoint": subscription.endpoint},
    }
    if subscription.payload:
        resource["channel"]["payload"] = subscription.payload
    if subscription.error:
        resource["error"] = subscription.error
    if subscription.end:
        resource["end"] = subscription.end.isoformat()
    return resource


# Bounds of the headers a subscriber asks the hub to send with each notification (FHIR R4
# Subscription.channel.header): enough for an authorization header and a few more, and no
# way to make the hub store or send megabytes.
MAX_CHANNEL_HEADERS = 10
MAX_CHANNEL_HEADER_BYTES = 1024
# RFC 9110 §5.1 field-name = token; §5.5 field-value: visible ASCII, spaces and tabs.
_HEADER_LINE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*")


def _header_problem(headers: list[str]) -> str:
    """Return why the channel's headers cannot be stored and sent, or ""."""
    if len(headers) > MAX_CHANNEL_HEADERS:
        return (
            f"channel.header holds {len(headers)} headers; the hub sends at most "
            f"{MAX_CHANNEL_HEADERS}"
        )
    for position, line in enumerate(headers, start=1):
        if len(line.encode()) > MAX_CHANNEL_HEADER_BYTES:
            return (
                f"channel.header {position} is longer than {MAX_CHANNEL_HEADER_BYTES} bytes; "
                "the hub sends shorter headers only"
            )
        if not _HEADER_LINE.fullmatch(line):
            return (
                f"channel.header {position} is not one 'Name: value' line of printable ASCII "
                "(RFC 9110 §5)"
            )
    return ""


@require_GET
def metadata(request: HttpRequest, payer_slug: str) -> JsonResponse:
    """The CapabilityStatement of the Consent endpoint (open, as FHIR requires)."""
    if not Payer.objects.filter(slug=payer_slug).exists():
        return _unknown_payer(payer_slug)
    return _fhir(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-23",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "SMART-on-FHIR",
                                    }
                                ]
                            }
                        ]
                    },
                    "resource": [
                        {"type": "Consent", "interaction": [{"code": "read"}]},
                        {
                            "type": "Subscription",
                            "interaction": [
                                {"code": "create"},
                                {"code": "read"},
                                {"code": "delete"},
                            ],
                        },
                    ],
                }
            ],
        }
    )


@require_GET
@_client
def consent_read(
    request: HttpRequest, tenant: Payer, client: Payer, scopes: list[str], consent_id: int
) -> HttpResponse:
    if not {"system/Consent.read", "system/Consent.rs"} & set(scopes):
        return operation_outcome(403, "forbidden", "the token lacks system/Consent.rs")
    consent = _consent_for_client(tenant, client, consent_id)
    if consent is None:
        return operation_outcome(404, "not-found", f"Consent/{consent_id} is not known")
    return _fhir(consent.fhir_resource)


@csrf_exempt
@require_http_methods(["POST"])
@_client
def subscription_create(
    request: HttpRequest, tenant: Payer, client: Payer, scopes: list[str]
) -> HttpResponse:
    if not SUBSCRIPTION_SCOPES & set(scopes):
        return _lacks_subscription_scope()
    try:
        body = json_input_load(request.body, what="the body")
    except JsonInputRefused as exc:
        return operation_outcome(400, "invalid", str(exc))
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        return operation_outcome(400, "invalid", "the body must be a Subscription resource")
    # FHIR's JSON Schema first (the screening's own check): it names the element at fault,
    # where the model library may fail on a shape it does not expect (a list for a string).
    problems = structural_problems(body)
    if problems:
        return operation_outcome(
            400, "structure", f"the Subscription is not valid FHIR R4: {problems[0]}"
        )
    try:
        # Keep the parsed model: its ``end`` is a datetime, not the instant's text.
        parsed = FhirSubscription.model_validate(body)
    except ModelValidationError as exc:
        return operation_outcome(
            400, "structure", f"the Subscription is not valid FHIR R4: {exc.errors()[0]['msg']}"
        )
    channel = body["channel"]
    if channel.get("type") != "rest-hook":
        return operation_outcome(422, "not-supported", "only rest-hook channels are supported")
    match = _CRITERIA.match(body.get("criteria", ""))
    if match is None:
        return operation_outcome(
            422, "not-supported", "criteria must be Consent?_id=<id> of one Consent"
        )
    consent = _consent_for_client(tenant, client, int(match.group(1)))
    if consent is None:
        return operation_outcome(404, "not-found", f"Consent/{match.group(1)} is not known")
    endpoint = str(channel.get("endpoint", ""))
    limit = ConsentSubscription._meta.get_field("endpoint").max_length
    if limit is not None and len(endpoint) > limit:
        return operation_outcome(
            422, "too-long", f"channel.endpoint is not usable: at most {limit} characters"
        )
    try:
        validate_payer_url(endpoint)
    except ValidationError as exc:
        return operation_outcome(
            422, "value", f"channel.endpoint is not usable: {' '.join(exc.messages)}"
        )
    headers = [str(line) for line in channel.get("header", [])]
    problem = _header_problem(headers)
    if problem:
        return operation_outcome(422, "value", problem)
    with transaction.atomic():
        subscription = ConsentSubscription.objects.create(
            payer=tenant,
            consent=consent,
            subscriber=client,
            reason=str(body.get("reason", ""))[:500],
            criteria=body["criteria"],
            endpoint=endpoint,
            payload=str(channel.get("payload", ""))[:100],
            headers="\n".join(headers),
            end=parsed.end,
        )
        audit_record(
            action="consent_subscription.create",
            obj=subscription,
            payer=tenant,
            actor_label=f"client:{client.slug}",
            changes={"criteria": subscription.criteria, "endpoint": endpoint},
        )
    return _fhir(
        _subscription_resource(subscription),
        status=201,
        Location=request.build_absolute_uri(
            f"/p/{tenant.slug}/fhir/Subscription/{subscription.pk}"
        ),
    )


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@_client
def subscription_detail(
    request: HttpRequest, tenant: Payer, client: Payer, scopes: list[str], subscription_id: int
) -> HttpResponse:
    if not SUBSCRIPTION_SCOPES & set(scopes):
        return _lacks_subscription_scope()
    subscription = (
        ConsentSubscription.objects.for_payer(tenant)
        .filter(pk=subscription_id, subscriber=client)
        .first()
    )
    if subscription is None:
        return operation_outcome(404, "not-found", f"Subscription/{subscription_id} is not known")
    if request.method == "DELETE":
        with transaction.atomic():
            subscription.status = SubscriptionStatus.OFF
            subscription.save(update_fields=["status"])
            audit_record(
                action="consent_subscription.delete",
                obj=subscription,
                payer=tenant,
                actor_label=f"client:{client.slug}",
                changes={"criteria": subscription.criteria},
            )
        return HttpResponse(status=204)
    return _fhir(_subscription_resource(subscription))
