"""The *Test* of a payer's FHIR endpoint: can the hub fetch records there?

Step by step, in words a plan administrator can act on (hub.connectivity): read
``/metadata`` (a CapabilityStatement of FHIR 4.0.1?), list the operations the hub uses,
read ``.well-known/smart-configuration``, and obtain a SMART Backend Services token. The
operations and searchable types found are kept in ``FhirEndpoint.capabilities``
(exchange.fhir.capabilities.capability_summary) with the time of the check.
"""

from typing import Any

from django.utils import timezone

from exchange.fhir.capabilities import FHIR_R4, KNOWN_OPERATIONS, capability_summary
from exchange.fhir.client import FhirClient
from exchange.fhir.errors import FhirCallError
from exchange.smart.backend_services import backend_access_token
from exchange.smart.discovery import smart_configuration_read
from hub.client_certificates import holder_http_client
from hub.connectivity import ConnectivityReport
from hub.models import FhirEndpoint, Payer, SigningKey, SigningKeyStatus

READ_METADATA = "Read the CapabilityStatement"
LIST_OPERATIONS = "List the operations"
READ_SMART = "Read the SMART configuration"
GET_TOKEN = "Get a payer-to-payer token"  # noqa: S105 - a step name
# What an answer that is no FHIR at all looks like to the client.
NOT_FHIR_CODES = frozenset({"not_found", "malformed_json", "wrong_resource_type", "rejected"})


def _read_metadata(fhir: FhirClient, report: ConnectivityReport) -> dict[str, Any] | None:
    try:
        statement = fhir.read("metadata", resource_type="CapabilityStatement")
    except FhirCallError as exc:
        if exc.code in NOT_FHIR_CODES:
            report.failed(
                READ_METADATA,
                f"{fhir.base_url} does not answer like a FHIR server ({exc.message}) "
                "Check the FHIR base URL.",
            )
        else:
            report.failed(READ_METADATA, exc.message)
        return None
    version = statement.get("fhirVersion")
    if version != FHIR_R4:
        report.failed(
            READ_METADATA,
            f"The server speaks FHIR {version or 'of an unstated version'}; the hub exchanges "
            f"FHIR R4 ({FHIR_R4}).",
        )
        return None
    software = (statement.get("software") or {}).get("name") or "unnamed software"
    report.passed(READ_METADATA, f"A FHIR {FHIR_R4} server ({software}).")
    return statement


def _list_operations(summary: dict[str, Any], report: ConnectivityReport) -> None:
    offered = summary["operations"]
    found = [f"${name}" for name in KNOWN_OPERATIONS if name in offered]
    missing = [f"${name}" for name in KNOWN_OPERATIONS if name not in offered]
    detail = (
        f"Offers {', '.join(found)}." if found else "Offers none of the operations the hub uses."
    )
    if missing:
        detail += f" Not offered: {', '.join(missing)}."
    report.passed(LIST_OPERATIONS, detail)


def _token_step(
    endpoint: FhirEndpoint, requesting_payer: Payer, report: ConnectivityReport
) -> None:
    if (
        not SigningKey.objects.for_payer(requesting_payer)
        .filter(status=SigningKeyStatus.ACTIVE)
        .exists()
    ):
        report.passed(
            GET_TOKEN,
            f"Not tried: {requesting_payer.name} has no signing key in the hub to sign in with.",
        )
        return
    try:
        backend_access_token(
            payer=requesting_payer, former_payer=endpoint.payer, force_refresh=True
        )
    except FhirCallError as exc:
        report.failed(GET_TOKEN, f"No token: {exc.message}")
        return
    report.passed(
        GET_TOKEN,
        f"The hub obtained an access token ({endpoint.scopes}) as {requesting_payer.name}.",
    )


def fhir_endpoint_check(
    *, endpoint: FhirEndpoint, requesting_payer: Payer | None = None
) -> ConnectivityReport:
    """Test ``endpoint`` as the hub will use it; keep the capabilities found on it.

    The token is obtained as ``requesting_payer`` (registering the hub there when the
    holder allows it), or as the endpoint's own payer when none is given.
    """
    report = ConnectivityReport(subject=f"FHIR endpoint {endpoint.base_url}")
    holder_name = endpoint.payer.name
    with holder_http_client(requesting_payer=requesting_payer or endpoint.payer) as http:
        # One attempt: an administrator is waiting for the answer.
        fhir = FhirClient(
            base_url=endpoint.base_url, holder_name=holder_name, http=http, max_attempts=1
        )
        statement = _read_metadata(fhir, report)
        if statement is None:
            return report
        summary = capability_summary(statement)
        endpoint.capabilities = summary
        endpoint.capabilities_checked_at = timezone.now()
        endpoint.save(update_fields=["capabilities", "capabilities_checked_at"])
        _list_operations(summary, report)
        try:
            configuration = smart_configuration_read(endpoint=endpoint, http=http)
        except FhirCallError as exc:
            report.failed(READ_SMART, exc.message)
            return report
    registration = (
        f"; clients register at {configuration.registration_endpoint}"
        if configuration.registration_endpoint
        else "; no registration endpoint (client ids come from these settings)"
    )
    source = "" if configuration.discovered else " (from these settings: no SMART configuration)"
    report.passed(READ_SMART, f"Tokens at {configuration.token_endpoint}{registration}{source}.")
    if endpoint.offers_backend_services:
        _token_step(endpoint, requesting_payer or endpoint.payer, report)
    return report
