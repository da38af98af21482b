"""Set up the hub's side of an exchange with a running sandbox payer as the former payer.

The former payer is a hub Payer carrying the sandbox's own NPI, with a FhirEndpoint at
the sandbox's FHIR base; the member at the new payer carries the demographics of one
of the sandbox's members, so ``$member-match`` and sign-in there find that person.
"""

import json
from datetime import date, timedelta
from typing import Any

from django.utils import timezone
from django.utils.text import slugify

from exchange.consents.resource import hrex_consent_resource
from exchange.models import AuthorizationMode, ConsentPolicy, ExchangeRequest
from exchange.payloads.storage import PayloadStorage
from hub.models import FhirEndpoint, Payer, PayerStatus
from tests.conftest import Tenant
from tests.factories import (
    ConsentFactory,
    ExchangeRequestFactory,
    FhirEndpointFactory,
    PayerFactory,
)
from tests.sandbox.harness import NPI, RunningSandbox
from tests.support.exchange_setup import Key, member_demographics_set, sandbox_everything


def hub_url(live_server: Any) -> str:
    """Return the live hub's URL on 127.0.0.1 (what a sandbox fetches the JWKS from)."""
    return str(live_server.url).replace("localhost", "127.0.0.1")


def sandbox_npi(sandbox: RunningSandbox) -> str:
    identifiers = sandbox.member_list()["payer"]["identifiers"]
    return str(next(i["value"] for i in identifiers if i["system"] == NPI))


def former_payer_of(
    sandbox: RunningSandbox, *, base_url: str | None = None, **endpoint: Any
) -> Payer:
    """Return the hub Payer of ``sandbox`` with its FHIR endpoint (both access ways offered)."""
    payer = PayerFactory(
        name=sandbox.name,
        slug=slugify(sandbox.name),
        npi=sandbox_npi(sandbox),
        status=PayerStatus.PARTICIPATING,
    )
    fields = {"offers_member_authorization": True, "offers_backend_services": True} | endpoint
    FhirEndpointFactory(payer=payer, base_url=base_url or sandbox.fhir, **fields)
    return payer


def endpoint_of(payer: Payer) -> FhirEndpoint:
    return FhirEndpoint.objects.for_payer(payer).get()


def ordinary_member(sandbox: RunningSandbox, index: int = 0) -> dict[str, Any]:
    """Return a member of the sandbox that matches uniquely (no showcase duplicates)."""
    members = [
        m
        for m in sandbox.member_list()["members"]
        if not m["username"].startswith(("casey.", "patricia."))
    ]
    return members[index]


def member_request(
    *,
    tenant: Tenant,
    former_payer: Payer,
    member: dict[str, Any],
    mode: str = AuthorizationMode.BACKEND_SERVICES,
    policy: str = ConsentPolicy.SENSITIVE,
    recipient: Payer | None = None,
    card: str | None = None,
) -> ExchangeRequest:
    """Return an ExchangeRequest of the tenant's member, who is ``member`` at the sandbox."""
    user = tenant.member
    member_demographics_set(user=user, member=member)
    today = timezone.localdate()
    consent = ConsentFactory(
        member=user,
        payer=tenant.payer,
        former_payer=former_payer,
        policy=policy,
        period_start=today - timedelta(days=1),
        period_end=today + timedelta(days=365),
        fhir_resource=hrex_consent_resource(
            patient_id="member",
            former_payer=former_payer,
            new_payer=recipient or tenant.payer,
            policy=policy,
            period_start=today - timedelta(days=1),
            period_end=today + timedelta(days=365),
            source_document_url="https://hub.example/consents/1.pdf",
        ),
    )
    return ExchangeRequestFactory(
        consent=consent,
        authorization_mode=mode,
        card_member_id=card or member["card_number"],
        coverage_start=date(2021, 1, 1),
    )


def sandbox_record(sandbox: RunningSandbox, *, npi: str, member: dict[str, Any]) -> list[Key]:
    """Return the (type, id) of every resource in the sandbox's own $everything of ``member``."""
    return keys_of(sandbox_everything(sandbox, member=member, recipient_npi=npi))


def staged_resources(storage: PayloadStorage, names: list[str]) -> list[dict[str, Any]]:
    """Return every resource in the staged NDJSON pages, in order."""
    resources = []
    for name in names:
        for line in storage.read_bytes(name).splitlines():
            resources.append(json.loads(line))
    return resources


def keys_of(resources: list[dict[str, Any]]) -> list[Key]:
    return [(r["resourceType"], r["id"]) for r in resources]
