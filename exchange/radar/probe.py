"""Probe a payer's FHIR endpoint: the checks of the *Test* button and of the radar, in one place.

Step by step, in words a plan administrator can act on (hub.connectivity): read
``/metadata`` (a CapabilityStatement of FHIR 4.0.1?), list the operations the hub uses, read
``.well-known/smart-configuration``, read ``.well-known/davinci-configuration`` when the
holder publishes one (optional, SPEC.md "Endpoint discovery"), check the bulk output format,
and obtain a SMART Backend Services token with the hub's keys. Nothing is written here:
exchange/radar/services.py records the result.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from exchange.fhir.capabilities import (
    FHIR_R4,
    GROUP_EXPORT_OPERATIONS,
    KNOWN_OPERATIONS,
    capability_summary,
)
from exchange.fhir.client import FhirClient
from exchange.fhir.elements import repeated
from exchange.fhir.errors import FhirCallError, FhirPermanentError
from exchange.models import HolderRegistration
from exchange.smart.backend_services import backend_access_token
from exchange.smart.discovery import smart_configuration_read
from hub.client_certificates import holder_http_client
from hub.connectivity import ConnectivityReport
from hub.models import FhirEndpoint, Payer, SigningKey, SigningKeyStatus

READ_METADATA = "Read the CapabilityStatement"
LIST_OPERATIONS = "List the operations"
READ_SMART = "Read the SMART configuration"
READ_DAVINCI = "Read the Da Vinci configuration"
CHECK_BULK_FORMAT = "Check the bulk output format"
GET_TOKEN = "Get a payer-to-payer token"  # noqa: S105 - a step name
DAVINCI_WELL_KNOWN = ".well-known/davinci-configuration"
# Bulk Data STU2 §Bulk Data Output File Request: servers SHALL support NDJSON, the one
# format the hub's bulk client reads (exchange/fhir/bulk_data.py).
NDJSON = "application/fhir+ndjson"
# What an answer that is no FHIR at all looks like to the client.
NOT_FHIR_CODES = frozenset({"not_found", "malformed_json", "wrong_resource_type", "rejected"})
# The token step's outcome in a summary.
TOKEN_OK = "ok"  # noqa: S105 - not a secret
TOKEN_FAILED = "failed"  # noqa: S105 - not a secret
TOKEN_NOT_TRIED = "not_tried"  # noqa: S105 - not a secret


@dataclass
class ProbeResult:
    """What one probe found: the report people read and the summary the engine decides by.

    ``error`` is the failure that kept the CapabilityStatement from being read (the engine
    raises it as it came: transient or permanent); ``summary`` is empty then.
    """

    report: ConnectivityReport
    checked_at: datetime
    summary: dict[str, Any] = field(default_factory=dict)
    error: FhirCallError | None = None

    @property
    def statement_read(self) -> bool:
        return bool(self.summary)


def _read_metadata(fhir: FhirClient, result: ProbeResult) -> dict[str, Any] | None:
    report = result.report
    try:
        statement = fhir.read("metadata", resource_type="CapabilityStatement")
    except FhirCallError as exc:
        result.error = exc
        if exc.code == "html_page":
            report.failed(
                READ_METADATA,
                f"{fhir.base_url}/metadata answers with an HTML page, not a FHIR "
                "CapabilityStatement; check the FHIR base URL (the address FHIR requests go to, "
                "often ending in /fhir or /r4).",
            )
        elif exc.code in NOT_FHIR_CODES:
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
    software = statement.get("software")
    software = (software.get("name") if isinstance(software, dict) else None) or "unnamed software"
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


def _davinci_step(fhir: FhirClient, summary: dict[str, Any], report: ConnectivityReport) -> None:
    # Optional (SPEC.md "Endpoint discovery"): absent is fine and only noted.
    try:
        document = fhir.read_json(DAVINCI_WELL_KNOWN)
    except FhirCallError as exc:
        summary["davinci_configuration"] = False
        if exc.code == "not_found":
            report.passed(READ_DAVINCI, "Not published (optional; nothing to do).")
        else:
            report.passed(READ_DAVINCI, f"Not read, and it is optional: {exc.message}")
        return
    summary["davinci_configuration"] = True
    keys = ", ".join(sorted(str(key) for key in document)[:8]) or "no entries"
    report.passed(READ_DAVINCI, f"Published ({keys}).")


def _bulk_format_step(summary: dict[str, Any], report: ConnectivityReport) -> None:
    exports = [name for name in GROUP_EXPORT_OPERATIONS if name in summary["operations"]]
    if not exports:
        summary["bulk_output_formats"] = []
        report.passed(
            CHECK_BULK_FORMAT,
            "No Group export offered: members of a cohort are matched and fetched one by one.",
        )
        return
    summary["bulk_output_formats"] = [NDJSON]
    report.passed(
        CHECK_BULK_FORMAT,
        f"Group exports (${exports[0]}) come as {NDJSON}, which Bulk Data STU2 requires and the "
        "hub reads; each file is checked line by line as it arrives.",
    )


def _token_step(
    endpoint: FhirEndpoint,
    requesting_payer: Payer,
    summary: dict[str, Any],
    report: ConnectivityReport,
) -> None:
    if (
        not SigningKey.objects.for_payer(requesting_payer)
        .filter(status=SigningKeyStatus.ACTIVE)
        .exists()
    ):
        summary["token"] = TOKEN_NOT_TRIED
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
        summary["token"] = TOKEN_FAILED
        report.failed(GET_TOKEN, f"No token: {exc.message}")
        return
    summary["token"] = TOKEN_OK
    report.passed(
        GET_TOKEN,
        f"The hub obtained an access token ({endpoint.scopes}) as {requesting_payer.name}.",
    )


def radar_token_payer(*, endpoint: FhirEndpoint) -> Payer:
    """Return the payer whose keys the radar asks ``endpoint``'s holder for a token with.

    The payer most recently registered there (its clients are the ones exchanges use), or
    the endpoint's own payer, as the *Test* does, when none is.
    """
    registration = (
        HolderRegistration.objects.across_payers(
            reason="the radar tries a token with the clients a requesting payer uses there"
        )
        .filter(former_payer_id=endpoint.payer_id, registered_at__isnull=False)
        .select_related("payer")
        .order_by("-registered_at")
        .first()
    )
    return registration.payer if registration is not None else endpoint.payer


def endpoint_probe(
    *,
    endpoint: FhirEndpoint,
    requesting_payer: Payer | None = None,
    try_token: bool = True,
    max_attempts: int = 4,
) -> ProbeResult:
    """Probe ``endpoint`` as the hub will use it and return what was found (nothing is saved).

    The token is obtained as ``requesting_payer`` (registering the hub there when the holder
    allows it), or as the endpoint's own payer when none is given; ``try_token`` False skips
    it (the engine's probe before fetching records, which brings its own token).
    ``max_attempts`` 1 when a person waits for the answer.
    """
    result = ProbeResult(
        report=ConnectivityReport(subject=f"FHIR endpoint {endpoint.base_url}"),
        checked_at=timezone.now(),
    )
    report = result.report
    asking = requesting_payer or endpoint.payer
    # As the payer who asks: a holder that requires mutual TLS sees its client certificate.
    with holder_http_client(requesting_payer=asking) as http:
        fhir = FhirClient(
            base_url=endpoint.base_url,
            holder_name=endpoint.payer.name,
            http=http,
            max_attempts=max_attempts,
        )
        statement = _read_metadata(fhir, result)
        if statement is None:
            return result
        try:
            summary = capability_summary(statement)
            formats = repeated(
                statement,
                "format",
                where="The CapabilityStatement",
                code="malformed_capability_statement",
            )
        except FhirPermanentError as exc:
            result.error = exc
            report.failed(
                LIST_OPERATIONS, f"{exc.message} Ask {endpoint.payer.name} to correct it."
            )
            return result
        summary["formats"] = [f for f in formats if isinstance(f, str)]
        result.summary = summary
        _list_operations(summary, report)
        try:
            configuration = smart_configuration_read(endpoint=endpoint, http=http)
        except FhirCallError as exc:
            summary["smart_configuration"] = False
            report.failed(READ_SMART, exc.message)
        else:
            summary["smart_configuration"] = configuration.discovered
            registration = (
                f"; clients register at {configuration.registration_endpoint}"
                if configuration.registration_endpoint
                else "; no registration endpoint (client ids come from these settings)"
            )
            source = (
                "" if configuration.discovered else " (from these settings: no SMART configuration)"
            )
            report.passed(
                READ_SMART, f"Tokens at {configuration.token_endpoint}{registration}{source}."
            )
        _davinci_step(fhir, summary, report)
        _bulk_format_step(summary, report)
    summary["token"] = TOKEN_NOT_TRIED
    # As the Test always did: no token without a SMART configuration to find the token URL in.
    if try_token and endpoint.offers_backend_services and report.ok:
        _token_step(endpoint, asking, summary, report)
    return result
