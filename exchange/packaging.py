"""Package a screened record for delivery: a FHIR ``collection`` Bundle and ``manifest.json``.

ARCHITECTURE.md step 6. Under ``RequestFiles.package`` (encrypted at rest like every payload):

- ``bundle.json`` — a Bundle of type ``collection`` (FHIR R4 §3.1.1.1 Bundle.type) holding every
  kept resource, Patient first, then one type after another, and last a ``Provenance`` of the
  hub's own: target the Patient, agents the former payer (author: the source of every
  resource) and the hub (assembler, on behalf of the new payer), recorded at generation time.
  The envelope and the entries are written one after another straight from the screened
  NDJSON files, so memory stays flat whatever the record's size. Entries carry no
  ``fullUrl`` (optional in a collection); the resources keep the former payer's ids and
  their references between each other stay relative (``Patient/123``), resolvable inside
  the Bundle by type and id.
- ``manifest.json`` — request, payers, consent, generation time, counts per resource type,
  what was screened out and why, the quarantined count, and sha256 and size of every other
  file. The delivery step uploads it last, so its presence means the set is complete.

Re-running rewrites both files (each appears atomically); the Bundle keeps the same id.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.provenance import Provenance

from exchange.consents.resource import PAYER_ID_SYSTEM, POLICY_URI
from exchange.fhir.instants import fhir_instant
from exchange.models import ConsentPolicy
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import PayloadStorage
from exchange.screening import ScreeningResult, screening_result_read
from hub.models import Payer
from hub.validators import NPI_SYSTEM

BUNDLE_FILE = "bundle.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_BUNDLE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://payer-hub/exchange-request-bundle")


@dataclass(frozen=True)
class PayerParty:
    """A payer as the package names it: its name and identifiers (NPI, payer id)."""

    name: str
    identifiers: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, payer: Payer) -> "PayerParty":
        """Return the party naming ``payer`` by every identifier it has, NPI first."""
        identifiers = [(NPI_SYSTEM, payer.npi), (PAYER_ID_SYSTEM, payer.payer_identifier)]
        return cls(payer.name, tuple((system, value) for system, value in identifiers if value))

    def fhir_identifiers(self) -> list[dict[str, str]]:
        return [{"system": system, "value": value} for system, value in self.identifiers]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "identifiers": self.fhir_identifiers()}


@dataclass(frozen=True)
class PackageContext:
    """What the package says about the exchange besides the data: who, under which consent."""

    request_id: int
    new_payer: PayerParty
    former_payer: PayerParty
    consent_id: str
    consent_policy: str
    hub_name: str
    # The window of the records (ExchangeRequest.records_since / records_as_of): a recurring
    # pull carries only what changed since its schedule's watermark (exchange/schedules.py).
    records_since: datetime | None = None
    records_as_of: datetime | None = None
    # Which pull of the member's schedule this is: 0 the first, None when not scheduled.
    schedule_run: int | None = None

    def __post_init__(self) -> None:
        if self.consent_policy not in ConsentPolicy.values:
            raise ValueError(
                f"consent policy must be one of {ConsentPolicy.values}, not {self.consent_policy!r}"
            )
        if not self.former_payer.identifiers:
            raise ValueError(
                f"former payer {self.former_payer.name} has no identifier to name it by"
            )


@dataclass(frozen=True)
class PackageFile:
    storage_name: str
    remote_name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Package:
    request_id: int
    files: list[PackageFile]  # delivery order, manifest last
    manifest: dict[str, Any]  # manifest.json as written

    @property
    def delivery_order(self) -> list[tuple[str, str]]:
        """Return (storage name, remote file name) pairs in upload order, the manifest last."""
        return package_delivery_order(request_id=self.request_id, manifest=self.manifest)


def package_delivery_order(*, request_id: int, manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the (storage name, remote file name) pairs of a built package, manifest last.

    Derived from the manifest alone, so a delivery run later (another task, another worker)
    finds the files the package step wrote.
    """
    prefix = RequestFiles(request_id).package
    names = [entry["name"] for entry in manifest["files"]] + [MANIFEST_FILE]
    return [(f"{prefix}/{name}", name) for name in names]


def _provenance(
    *, context: PackageContext, patient_ids: list[str], bundle_id: str, recorded: str
) -> dict[str, Any]:
    """Return the hub's Provenance of the package, checked against the R4B model."""
    if patient_ids:
        targets: list[dict[str, Any]] = [{"reference": f"Patient/{pid}"} for pid in patient_ids]
    else:
        # No Patient survived screening: the Provenance is about the Bundle as a whole.
        targets = [
            {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle_id}"}}
        ]
    former, new = context.former_payer, context.new_payer
    resource = {
        "resourceType": "Provenance",
        "id": f"hub-request-{context.request_id}",
        "target": targets,
        "recorded": recorded,
        "agent": [
            {
                "type": {
                    "coding": [{"system": PARTICIPANT_TYPE, "code": "author"}],
                    "text": "Source: the former payer that held and sent these records",
                },
                "who": {"identifier": former.fhir_identifiers()[0], "display": former.name},
            },
            {
                "type": {
                    "coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}],
                    "text": "Assembled (screened and packaged) by the payer-to-payer hub",
                },
                "who": {"display": context.hub_name},
                "onBehalfOf": _organization_reference(new),
            },
        ],
    }
    Provenance.model_validate(resource)
    return resource


def _organization_reference(party: PayerParty) -> dict[str, Any]:
    reference: dict[str, Any] = {"display": party.name}
    if party.identifiers:
        reference["identifier"] = party.fhir_identifiers()[0]
    return reference


def _patient_ids(storage: PayloadStorage, screening: ScreeningResult) -> list[str]:
    patients = [name for name in screening.files if name.endswith("/Patient.ndjson")]
    ids = [json.loads(line).get("id") for name in patients for line in ndjson_lines(storage, name)]
    return [pid for pid in ids if isinstance(pid, str)]


def _bundle_write(
    *,
    storage: PayloadStorage,
    name: str,
    screening: ScreeningResult,
    bundle_id: str,
    generated: str,
    provenance: dict[str, Any],
) -> PackageFile:
    envelope = {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"lastUpdated": generated},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle_id}"},
        "type": "collection",
        "timestamp": generated,
    }
    with storage.writer(name) as writer:
        writer.write(json.dumps(envelope)[:-1].encode() + b',"entry":[\n')
        for screened in screening.files:
            for line in ndjson_lines(storage, screened):
                writer.write(b'{"resource":' + line.strip() + b"},\n")
        writer.write(json.dumps({"resource": provenance}).encode() + b"\n]}\n")
    return PackageFile(name, BUNDLE_FILE, writer.sha256, writer.size)


def _manifest(
    *,
    context: PackageContext,
    screening: ScreeningResult,
    generated: str,
    files: list[PackageFile],
) -> dict[str, Any]:
    counts = dict(screening.kept)
    counts["Provenance"] = counts.get("Provenance", 0) + 1
    return {
        "manifestVersion": MANIFEST_VERSION,
        "requestId": context.request_id,
        "generatedAt": generated,
        "newPayer": context.new_payer.as_json(),
        "formerPayer": context.former_payer.as_json(),
        "consent": {
            "id": context.consent_id,
            "policy": context.consent_policy,
            "policyUri": POLICY_URI.format(policy=context.consent_policy),
        },
        "requestDate": screening.request_date.isoformat(),
        # Which records the package covers: those changed after ``changedSince`` (null: the
        # whole record the rule asks for) as the former payer held them at ``asOf``.
        "window": {
            "changedSince": _instant_or_none(context.records_since),
            "asOf": _instant_or_none(context.records_as_of),
            "pull": context.schedule_run,
        },
        "resourceCounts": dict(sorted(counts.items())),
        "resourceTotal": sum(counts.values()),
        "reducedToNonFinancial": dict(sorted(screening.reduced.items())),
        "screenedOut": screening.screened_out(),
        "quarantined": screening.quarantined,
        "files": [
            {
                "name": file.remote_name,
                "sha256": file.sha256,
                "size": file.size,
                "contentType": "application/fhir+json",
            }
            for file in files
        ],
    }


def _instant_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else fhir_instant(moment)


def package_build(
    *, request_id: int, storage: PayloadStorage, manifest_context: PackageContext
) -> Package:
    """Write the Bundle and the manifest of a screened request; return them in upload order."""
    if manifest_context.request_id != request_id:
        raise ValueError(
            f"package context is for request {manifest_context.request_id}, not {request_id}"
        )
    screening = screening_result_read(request_id=request_id, storage=storage)
    if screening.policy != manifest_context.consent_policy:
        raise ValueError(
            f"request {request_id} was screened under #{screening.policy}, "
            f"but the consent says #{manifest_context.consent_policy}"
        )
    generated = fhir_instant(datetime.now(UTC))
    bundle_id = str(uuid.uuid5(_BUNDLE_NAMESPACE, str(request_id)))
    provenance = _provenance(
        context=manifest_context,
        patient_ids=_patient_ids(storage, screening),
        bundle_id=bundle_id,
        recorded=generated,
    )
    bundle = _bundle_write(
        storage=storage,
        name=f"{RequestFiles(request_id).package}/{BUNDLE_FILE}",
        screening=screening,
        bundle_id=bundle_id,
        generated=generated,
        provenance=provenance,
    )
    manifest = _manifest(
        context=manifest_context, screening=screening, generated=generated, files=[bundle]
    )
    manifest_name = f"{RequestFiles(request_id).package}/{MANIFEST_FILE}"
    writer = storage.write_bytes(manifest_name, json.dumps(manifest, indent=2).encode() + b"\n")
    return Package(
        request_id=request_id,
        files=[bundle, PackageFile(manifest_name, MANIFEST_FILE, writer.sha256, writer.size)],
        manifest=manifest,
    )
