"""Read HRex Consents, keep the ones a match was granted under, and judge them on every use.

HRex STU 1.2 Consent profile and PDex payer-to-payer: the data holder evaluates
the consent at match time and again at every data request: the member matched,
the policy can be honoured (``#sensitive`` always, ``#regular`` only when the
holder can withhold sensitive data), today is within ``provision.period``, and
the requesting client's organization is the recipient (``IRCP`` actor).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox.auth.clients import Client

POLICY_BASE = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html"
POLICY_REGULAR = "regular"
POLICY_SENSITIVE = "sensitive"
RECIPIENT_ROLE = ("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")
SOURCE_ROLE = ("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "performer")


class ConsentProblem(Exception):
    """The consent cannot be honoured; the message says why."""


@dataclass
class HeldConsent:
    """A consent this holder accepted with a successful match."""

    consent_id: str
    client_id: str
    patient_id: str
    policy: str
    period_start: str
    period_end: str
    recipients: list[dict[str, str]]
    status: str = "active"
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def source_reference(self) -> str:
        """Return Consent.sourceReference.reference: where the original consent lives."""
        source = self.resource.get("sourceReference")
        reference = source.get("reference") if isinstance(source, dict) else None
        return reference if isinstance(reference, str) else ""


def _coded(concept: Any, system: str, code: str) -> bool:
    if not isinstance(concept, dict):
        return False
    return any(
        isinstance(c, dict) and c.get("system") == system and c.get("code") == code
        for c in concept.get("coding", [])
    )


def _date(value: Any, what: str) -> dt.date:
    if not isinstance(value, str) or len(value) < 10:
        raise ConsentProblem(f"Consent {what} is missing (HRex requires provision.period)")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ConsentProblem(f"Consent {what} {value!r} is not a date") from None


def read_consent(resource: dict[str, Any], *, member_patient_id: str | None) -> HeldConsent:
    """Return the parts of an HRex Consent this holder acts on, or raise ConsentProblem."""
    if resource.get("status") != "active":
        raise ConsentProblem(f"Consent.status is {resource.get('status')!r}, not 'active'")
    patient_ref = (resource.get("patient") or {}).get("reference")
    if member_patient_id and patient_ref != f"Patient/{member_patient_id}":
        raise ConsentProblem(
            f"Consent.patient must reference the MemberPatient (Patient/{member_patient_id})"
        )
    policies = [p.get("uri") for p in resource.get("policy", []) if isinstance(p, dict)]
    policy = None
    for uri in policies:
        base, _, fragment = (uri or "").partition("#")
        if base == POLICY_BASE and fragment in (POLICY_REGULAR, POLICY_SENSITIVE):
            policy = fragment
    if policy is None:
        raise ConsentProblem(
            f"Consent.policy must be {POLICY_BASE}#regular or #sensitive, got {policies}"
        )
    provision = resource.get("provision") or {}
    if provision.get("type") != "permit":
        raise ConsentProblem("Consent.provision.type must be 'permit'")
    period = provision.get("period") or {}
    start = _date(period.get("start"), "provision.period.start")
    end = _date(period.get("end"), "provision.period.end")
    recipients = []
    for actor in provision.get("actor", []):
        identifier = ((actor or {}).get("reference") or {}).get("identifier") or {}
        if _coded(actor.get("role"), *RECIPIENT_ROLE) and identifier.get("value"):
            recipients.append(
                {"system": str(identifier.get("system", "")), "value": str(identifier["value"])}
            )
    if not recipients:
        raise ConsentProblem(
            "Consent.provision.actor has no recipient (role IRCP) identified by identifier"
        )
    return HeldConsent(
        consent_id="",
        client_id="",
        patient_id="",
        policy=policy,
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        recipients=recipients,
        resource=resource,
    )


def consent_problem(
    consent: HeldConsent, *, client: Client | None, today: dt.date, can_segment: bool
) -> str | None:
    """Return why consent cannot be honoured for client today, or None if it can."""
    if consent.status != "active":
        return f"the consent was {consent.status}"
    if consent.policy == POLICY_REGULAR and not can_segment:
        return "this payer cannot withhold sensitive data, so it cannot honour a #regular consent"
    start = dt.date.fromisoformat(consent.period_start)
    end = dt.date.fromisoformat(consent.period_end)
    if today < start:
        return f"the consent period starts {start.isoformat()}, in the future"
    if today > end:
        return f"the consent period ended {end.isoformat()}"
    if client is None or not any(
        client.organization_matches(r["system"], r["value"]) for r in consent.recipients
    ):
        return "the consent's recipient (IRCP) is not the requesting client's organization"
    return None


class ConsentStore:
    """Consents held per (client, member): the latest match's consent counts."""

    def __init__(self, data_dir: Path | None) -> None:
        self._path = data_dir / "consents.json" if data_dir else None
        self._lock = threading.Lock()
        self._by_id: dict[str, HeldConsent] = {}
        self._latest: dict[tuple[str, str], str] = {}
        if self._path and self._path.exists():
            for raw in json.loads(self._path.read_text()):
                self._put(HeldConsent(**raw))

    def _put(self, consent: HeldConsent) -> None:
        self._by_id[consent.consent_id] = consent
        self._latest[(consent.client_id, consent.patient_id)] = consent.consent_id

    def _save(self) -> None:
        if self._path:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_text(json.dumps([asdict(c) for c in self._by_id.values()]))

    def keep(self, consent: HeldConsent, *, client_id: str, patient_id: str) -> HeldConsent:
        """Store consent as the one client_id holds for patient_id; return the stored copy."""
        return self.keep_many([(consent, patient_id)], client_id=client_id)[0]

    def keep_many(
        self, consents: list[tuple[HeldConsent, str]], *, client_id: str
    ) -> list[HeldConsent]:
        """Store each (consent, patient_id) for client_id, saving once; return the stored copies."""
        stored = []
        for consent, patient_id in consents:
            copy = HeldConsent(
                **(
                    asdict(consent)
                    | {
                        "consent_id": uuid.uuid4().hex,
                        "client_id": client_id,
                        "patient_id": patient_id,
                    }
                )
            )
            copy.resource = dict(copy.resource) | {"id": copy.consent_id}
            stored.append(copy)
        with self._lock:
            for copy in stored:
                self._put(copy)
            self._save()
        return stored

    def for_client(self, client_id: str, patient_id: str) -> HeldConsent | None:
        """Return the consent client_id holds for patient_id."""
        with self._lock:
            consent_id = self._latest.get((client_id, patient_id))
            return self._by_id.get(consent_id) if consent_id else None

    def get_for_client(self, client_id: str, consent_id: str) -> HeldConsent | None:
        """Return consent consent_id if client_id holds it."""
        with self._lock:
            consent = self._by_id.get(consent_id)
        return consent if consent and consent.client_id == client_id else None

    def held_by(self, client_id: str) -> list[HeldConsent]:
        """Return every consent client_id holds, oldest first."""
        with self._lock:
            return [c for c in self._by_id.values() if c.client_id == client_id]

    def from_source(self, reference: str) -> list[HeldConsent]:
        """Return every consent (of any client) whose sourceReference is reference."""
        with self._lock:
            return [c for c in self._by_id.values() if c.source_reference == reference]

    def patients_of(self, client_id: str) -> list[str]:
        """Return the patient ids client_id holds a consent for."""
        with self._lock:
            return sorted(p for (c, p) in self._latest if c == client_id)

    def revoke(self, consent: HeldConsent, status: str) -> None:
        """Mark consent as no longer active (inactive or rejected)."""
        with self._lock:
            consent.status = status
            consent.resource = dict(consent.resource) | {"status": status}
            self._save()
