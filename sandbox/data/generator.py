"""Generate one member's history at one payer: clinical data, claims and prior authorizations.

The history is a pure function of (seed, payer, member, as-of date), built on demand
so ten thousand members cost only their index. Resource ids are
``<patient id>-<kind>-<n>``, so any id leads back to the member that owns it.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from sandbox.data import codes
from sandbox.data.codes import ConditionCode, Medication, ServiceCode
from sandbox.data.directory import (
    BEHAVIORAL,
    CLINIC,
    DENTAL,
    DENTISTS,
    EMERGENCY,
    HOSPITAL,
    INFECTIOUS,
    PAYER_ORGANIZATION_ID,
    PHARMACISTS,
    PHARMACY,
    PRIMARY_CARE,
    PSYCHIATRY,
    US_CORE,
)
from sandbox.data.population import Member
from sandbox.organizations import PayerIdentity

Resource = dict[str, Any]

C4BB = "http://hl7.org/fhir/us/carin-bb"
PDEX = "http://hl7.org/fhir/us/davinci-pdex"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
C4BB_ADJUDICATION = f"{C4BB}/CodeSystem/C4BBAdjudication"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
X12_REVIEW_ACTION = "https://codesystem.x12.org/005010/306"

# CARIN BB profiles of the five claim types (financial views: a payer holds the money too).
EOB_PROFILES = {
    "inpatient": f"{C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Inpatient-Institutional",
    "outpatient": f"{C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Outpatient-Institutional",
    "professional": f"{C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Professional-NonClinician",
    "oral": f"{C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Oral",
    "pharmacy": f"{C4BB}/StructureDefinition/C4BB-ExplanationOfBenefit-Pharmacy",
}
PRIOR_AUTH_PROFILE = f"{PDEX}/StructureDefinition/pdex-priorauthorization"

# Prior-authorization review outcomes: (status, outcome, X12 306 action code, display).
PRIOR_AUTH_KINDS = {
    "approved": ("active", "complete", "A1", "Certified in total"),
    "partial": ("active", "partial", "A2", "Certified - partial"),
    "pended": ("active", "queued", "A4", "Pended"),
    "denied": ("active", "complete", "A3", "Not Certified"),
    "cancelled": ("cancelled", "complete", "A1", "Certified in total"),
    "expired": ("active", "complete", "A1", "Certified in total"),
    "drug-approved": ("active", "complete", "A1", "Certified in total"),
    "drug-denied": ("active", "complete", "A3", "Not Certified"),
}

# Kinds of the type abbreviations in resource ids.
# Ids of a later visit (MemberHistory.later_visit) start past any a history reaches.
_LATER_VISIT_IDS = 10_000_000
ID_KINDS = {
    "Coverage": "cov",
    "Condition": "cond",
    "Observation": "obs",
    "Encounter": "enc",
    "Procedure": "proc",
    "MedicationRequest": "medrx",
    "Immunization": "imm",
    "AllergyIntolerance": "alg",
    "DiagnosticReport": "dx",
    "DocumentReference": "doc",
    "CarePlan": "cp",
    "CareTeam": "ct",
    "Goal": "goal",
    "Provenance": "prov",
    "ExplanationOfBenefit": "eob",
}


def _instant(day: dt.date, minute_of_day: int = 9 * 60) -> str:
    return f"{day.isoformat()}T{minute_of_day // 60:02d}:{minute_of_day % 60:02d}:00Z"


def _cc(system: str, code: str, display: str | None = None, text: str | None = None) -> Resource:
    coding: Resource = {"system": system, "code": code}
    if display:
        coding["display"] = display
    concept: Resource = {"coding": [coding]}
    if text:
        concept["text"] = text
    return concept


def _money(value: float) -> Resource:
    return {"value": round(value, 2), "currency": "USD"}


def security_labels(sensitivity: str | None) -> list[Resource]:
    """Return meta.security for a resource of this sensitivity (HRex consent #regular)."""
    if not sensitivity:
        return []
    return [
        {
            "system": codes.ACT_CODE,
            "code": sensitivity,
            "display": codes.SENSITIVE_ACT_CODES[sensitivity],
        },
        {"system": codes.CONFIDENTIALITY, "code": "R", "display": "restricted"},
    ]


@dataclass
class _Health:
    """A person's standing health profile (the same at every payer)."""

    chronic: list[ConditionCode]
    sensitive: list[ConditionCode]
    allergies: list[tuple[str, str, str]]
    dental: bool


def _health(member: Member, seed: str) -> _Health:
    if member.showcase:
        return _Health(
            chronic=[codes.CHRONIC_CONDITIONS[0], codes.CHRONIC_CONDITIONS[1]],
            sensitive=[
                codes.SENSITIVE_CONDITIONS[3],
                codes.SENSITIVE_CONDITIONS[0],
                codes.SENSITIVE_CONDITIONS[2],
            ],
            allergies=[codes.ALLERGIES[0]],
            dental=True,
        )
    rng = random.Random(f"health:{seed}:{member.person.key}")  # noqa: S311 - synthetic
    chronic = rng.sample(codes.CHRONIC_CONDITIONS, k=rng.choice((0, 1, 1, 2, 2, 3)))
    sensitive = [rng.choice(codes.SENSITIVE_CONDITIONS)] if rng.random() < 0.25 else []
    allergies = rng.sample(codes.ALLERGIES, k=rng.choice((0, 0, 1, 2)))
    return _Health(chronic, sensitive, allergies, dental=rng.random() < 0.6)


@dataclass
class _Event:
    day: dt.date
    kind: str
    condition: ConditionCode | None = None


@dataclass
class MemberHistory:
    """Build the resources of one member, in a stable order."""

    identity: PayerIdentity
    member: Member
    seed: str
    as_of: dt.date
    # How many times the ordinary care of a year repeats (--large-member): 1 is a typical
    # member; larger factors give one member a record of tens of thousands of resources.
    care_factor: int = 1
    resources: list[Resource] = field(default_factory=list)
    _counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(  # noqa: S311 - synthetic data only
            f"events:{self.seed}:{self.identity.name}:{self.member.person.key}:{self.member.patient_id}"
        )
        self.pid = self.member.patient_id
        self.patient_ref = {"reference": f"Patient/{self.pid}"}
        self.coverage_ref = {"reference": f"Coverage/{self.pid}-cov-1"}
        self.insurer_ref = {
            "reference": f"Organization/{PAYER_ORGANIZATION_ID}",
            "display": self.identity.name,
        }
        self.end = self.member.coverage_end or self.as_of
        self.health = _health(self.member, self.seed)
        self._prescribed: dict[tuple[str, int], str] = {}

    def later_visit(self, *, day: dt.date, number: int, updated_at: str) -> list[Resource]:
        """Return one office visit on ``day`` alone, its ids past any of the history's, every
        resource last updated at ``updated_at`` (``later_visit_resources``)."""
        self._counters = dict.fromkeys(set(ID_KINDS.values()), _LATER_VISIT_IDS * number)
        self._visit(_Event(day=day, kind="office"), conditions={})
        for resource in self.resources:
            resource["meta"]["lastUpdated"] = updated_at
        return self.resources

    # -- bookkeeping -------------------------------------------------------------------------

    def _new_id(self, resource_type: str) -> str:
        kind = ID_KINDS[resource_type]
        self._counters[kind] = self._counters.get(kind, 0) + 1
        return f"{self.pid}-{kind}-{self._counters[kind]}"

    def _add(
        self,
        resource_type: str,
        body: Resource,
        *,
        day: dt.date,
        profile: str | None,
        sensitivity: str | None = None,
    ) -> Resource:
        """Append a resource, stamping id and meta (lastUpdated a few days after day)."""
        updated = min(day + dt.timedelta(days=self.rng.randint(0, 20)), self.as_of)
        meta: Resource = {"lastUpdated": _instant(updated, self.rng.randint(0, 1439))}
        if profile:
            meta["profile"] = [profile]
        labels = security_labels(sensitivity)
        if labels:
            meta["security"] = labels
        resource: Resource = {
            "resourceType": resource_type,
            "id": self._new_id(resource_type),
            "meta": meta,
        }
        resource.update(body)
        self.resources.append(resource)
        return resource

    def _day_between(self, start: dt.date, end: dt.date) -> dt.date:
        span = max((end - start).days, 0)
        return start + dt.timedelta(days=self.rng.randint(0, span))

    # -- the history -------------------------------------------------------------------------

    def build(self) -> list[Resource]:
        """Return every resource of the member: Patient first, Provenance last."""
        self.resources.append(self._patient())
        self._coverage()
        conditions = self._standing_conditions()
        for allergy in self.health.allergies:
            self._allergy(allergy)
        for event in self._events():
            self._event(event, conditions)
        if self.health.chronic:
            self._care_plan(conditions[self.health.chronic[0].icd10])
        self._prior_authorizations()
        self._provenance()
        # The record is as it stood when the --as-of day began: nothing is last updated later,
        # so a client's watermark taken today misses nothing and sees nothing twice (_since).
        as_of_start = _instant(self.as_of, 0)
        for resource in self.resources:
            meta = resource["meta"]
            meta["lastUpdated"] = min(meta["lastUpdated"], as_of_start)
        return self.resources

    def _patient(self) -> Resource:
        person, member = self.member.person, self.member
        return {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": {
                "lastUpdated": _instant(member.coverage_start),
                "profile": [f"{US_CORE}/us-core-patient"],
            },
            "identifier": [
                {
                    "use": "usual",
                    "type": _cc(
                        "http://terminology.hl7.org/CodeSystem/v2-0203", "MB", "Member Number"
                    ),
                    "system": self.identity.member_system,
                    "value": member.member_number,
                },
            ],
            "active": member.coverage_active,
            "name": [{"use": "official", "family": person.family, "given": list(person.given)}],
            "telecom": [{"system": "phone", "value": person.phone, "use": "home"}],
            "gender": person.gender,
            "birthDate": person.birth_date.isoformat(),
            "address": [
                {
                    "use": "home",
                    "line": [person.line],
                    "city": person.city,
                    "state": person.state,
                    "postalCode": person.postal_code,
                    "country": "US",
                }
            ],
        }

    def _coverage(self) -> None:
        member = self.member
        period: Resource = {"start": member.coverage_start.isoformat()}
        if member.coverage_end:
            period["end"] = member.coverage_end.isoformat()
        self._add(
            "Coverage",
            {
                "identifier": [
                    {
                        "type": _cc(
                            "http://terminology.hl7.org/CodeSystem/v2-0203", "MB", "Member Number"
                        ),
                        "system": self.identity.card_system,
                        "value": member.card_number,
                    }
                ],
                "status": "active" if member.coverage_active else "cancelled",
                "type": _cc("https://nahdo.org/sopt", "121", "Medicare Advantage - HMO"),
                "subscriberId": member.card_number,
                "beneficiary": self.patient_ref,
                "relationship": _cc(
                    "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"
                ),
                "period": period,
                "payor": [
                    {
                        "reference": f"Organization/{PAYER_ORGANIZATION_ID}",
                        "display": self.identity.name,
                    }
                ],
                "class": [
                    {
                        "type": _cc(
                            "http://terminology.hl7.org/CodeSystem/coverage-class", "group"
                        ),
                        "value": f"G{self.identity.payer_id}",
                        "name": f"{self.identity.name} Group",
                    },
                    {
                        "type": _cc("http://terminology.hl7.org/CodeSystem/coverage-class", "plan"),
                        "value": "MA-HMO-01",
                        "name": "Medicare Advantage HMO",
                    },
                ],
            },
            day=member.coverage_start,
            profile=f"{C4BB}/StructureDefinition/C4BB-Coverage",
        )

    def _standing_conditions(self) -> dict[str, Resource]:
        made: dict[str, Resource] = {}
        start = self.member.coverage_start
        for condition in self.health.chronic + self.health.sensitive:
            onset = self.member.person.history_start - dt.timedelta(days=self.rng.randint(30, 900))
            made[condition.icd10] = self._condition(
                condition,
                recorded=start + dt.timedelta(days=self.rng.randint(1, 40)),
                onset=onset,
                category="problem-list-item",
                encounter=None,
            )
        return made

    def _condition(
        self,
        condition: ConditionCode,
        *,
        recorded: dt.date,
        onset: dt.date,
        category: str,
        encounter: str | None,
        resolved: dt.date | None = None,
    ) -> Resource:
        body: Resource = {
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "resolved" if resolved else "active",
            ),
            "verificationStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
            ),
            "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category", category)],
            "code": {
                "coding": [
                    {
                        "system": codes.SNOMED,
                        "code": condition.snomed,
                        "display": condition.display,
                    },
                    {
                        "system": codes.ICD10CM,
                        "code": condition.icd10,
                        "display": condition.display,
                    },
                ],
                "text": condition.display,
            },
            "subject": self.patient_ref,
            "onsetDateTime": onset.isoformat(),
            "recordedDate": recorded.isoformat(),
        }
        if resolved:
            body["abatementDateTime"] = resolved.isoformat()
        if encounter:
            body["encounter"] = {"reference": f"Encounter/{encounter}"}
        return self._add(
            "Condition",
            body,
            day=recorded,
            profile=f"{US_CORE}/us-core-condition",
            sensitivity=condition.sensitivity,
        )

    def _allergy(self, allergy: tuple[str, str, str]) -> None:
        code, display, category = allergy
        day = self.member.coverage_start + dt.timedelta(days=self.rng.randint(1, 60))
        self._add(
            "AllergyIntolerance",
            {
                "clinicalStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"
                ),
                "verificationStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                ),
                "type": "allergy",
                "category": [category],
                "criticality": self.rng.choice(("low", "high")),
                "code": _cc(codes.SNOMED, code, display),
                "patient": self.patient_ref,
                "recordedDate": day.isoformat(),
            },
            day=day,
            profile=f"{US_CORE}/us-core-allergyintolerance",
        )

    def _events(self) -> list[_Event]:
        events: list[_Event] = []
        start, end = self.member.coverage_start, self.end
        year_start = start
        while year_start <= end:
            year_end = min(year_start + dt.timedelta(days=364), end)
            events.append(
                _Event(self._day_between(year_start, year_end), "preventive", codes.WELLNESS)
            )
            for _ in range(self.care_factor):
                events += self._care_of_a_year(year_start, year_end, first=year_start == start)
            year_start = year_end + dt.timedelta(days=1)
        events.sort(key=lambda e: e.day)
        return events

    def _care_of_a_year(
        self, year_start: dt.date, year_end: dt.date, *, first: bool
    ) -> list[_Event]:
        """Return one round of a year's visits, emergencies, stays and dental care."""
        events: list[_Event] = []
        for _ in range(self.rng.randint(1, 4)):
            condition = (
                self.rng.choice(self.health.chronic)
                if self.health.chronic and self.rng.random() < 0.6
                else None
            )
            events.append(_Event(self._day_between(year_start, year_end), "office", condition))
        if self.rng.random() < 0.12:
            events.append(_Event(self._day_between(year_start, year_end), "emergency"))
        if self.rng.random() < 0.06 or (self.member.showcase and first):
            events.append(_Event(self._day_between(year_start, year_end), "inpatient"))
        for condition in self.health.sensitive:
            for _ in range(2):
                events.append(
                    _Event(self._day_between(year_start, year_end), "sensitive", condition)
                )
        if self.health.dental:
            for _ in range(2):
                events.append(_Event(self._day_between(year_start, year_end), "dental"))
        return events

    def _event(self, event: _Event, conditions: dict[str, Resource]) -> None:
        if event.kind == "dental":
            self._dental_claim(event.day)
            return
        if event.kind in ("office", "preventive"):
            self._visit(event, conditions)
        elif event.kind == "emergency":
            self._emergency(event.day)
        elif event.kind == "inpatient":
            self._inpatient(event.day)
        else:
            self._sensitive_visit(event)

    # -- encounters --------------------------------------------------------------------------

    def _encounter(
        self,
        day: dt.date,
        *,
        klass: str,
        service: ServiceCode,
        reason: ConditionCode,
        practitioner: str,
        organization: str,
        days: int = 0,
        sensitivity: str | None = None,
    ) -> Resource:
        period: Resource = {"start": _instant(day, 8 * 60 + self.rng.randint(0, 480))}
        end_day = day + dt.timedelta(days=days)
        period["end"] = _instant(end_day, 17 * 60) if days else period["start"]
        body: Resource = {
            "status": "finished",
            "class": {"system": codes.ACT_CODE, "code": klass},
            "type": [_cc(codes.CPT, service.code, service.display)],
            "subject": self.patient_ref,
            "participant": [{"individual": {"reference": f"Practitioner/{practitioner}"}}],
            "period": period,
            "reasonCode": [
                {
                    "coding": [
                        {"system": codes.SNOMED, "code": reason.snomed, "display": reason.display}
                    ]
                }
            ],
            "serviceProvider": {"reference": f"Organization/{organization}"},
        }
        if klass == "IMP":
            body["hospitalization"] = {
                "dischargeDisposition": _cc(
                    "http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "Home"
                )
            }
        return self._add(
            "Encounter",
            body,
            day=end_day,
            profile=f"{US_CORE}/us-core-encounter",
            sensitivity=sensitivity,
        )

    def _visit(self, event: _Event, conditions: dict[str, Resource]) -> None:
        day = event.day
        practitioner = self.rng.choice(PRIMARY_CARE)
        if event.kind == "preventive":
            service, reason = codes.PREVENTIVE_VISIT, codes.WELLNESS
        elif event.condition:
            service, reason = self.rng.choice(codes.OFFICE_VISITS), event.condition
        else:
            service, reason = (
                self.rng.choice(codes.OFFICE_VISITS),
                self.rng.choice(codes.ACUTE_CONDITIONS),
            )
        encounter = self._encounter(
            day,
            klass="AMB",
            service=service,
            reason=reason,
            practitioner=practitioner,
            organization=CLINIC,
        )
        eid = encounter["id"]
        diagnoses = [reason]
        if event.kind == "office" and not event.condition:
            self._acute_diagnosis(reason, day, eid, resolves_after_days=14)
        self._vitals(day, eid)
        lines = [service]
        if event.kind == "preventive" or (event.condition and self.rng.random() < 0.5):
            panels = ("80053", "80061") if event.kind == "preventive" else ("83036",)
            for panel in panels:
                self._lab_report(day, eid, panel, practitioner)
                lines.append(next(s for s in codes.LAB_SERVICES if s.code == panel))
        if event.kind == "preventive":
            vaccine = self.rng.choice(codes.VACCINES)
            self._immunization(day, eid, vaccine)
            if self.rng.random() < 0.4:
                procedure = self.rng.choice(codes.PROCEDURES[:2] + codes.PROCEDURES[4:5])
                self._procedure(day, eid, procedure, practitioner)
                lines.append(procedure)
        if event.condition:
            self._prescribe(day, event.condition, practitioner, eid)
        for condition in self.health.chronic:
            if condition.icd10 in conditions and condition is not reason:
                diagnoses.append(condition)
        if self.rng.random() < 0.3:
            self._note(day, eid, codes.NOTE_TYPES[0], practitioner, reason)
        self._claim("professional", day, lines, diagnoses, practitioner, CLINIC, eid)

    def _emergency(self, day: dt.date) -> None:
        reason = self.rng.choice(codes.ACUTE_CONDITIONS)
        practitioner = self.rng.choice(EMERGENCY)
        encounter = self._encounter(
            day,
            klass="EMER",
            service=codes.EMERGENCY_VISIT,
            reason=reason,
            practitioner=practitioner,
            organization=HOSPITAL,
        )
        eid = encounter["id"]
        self._acute_diagnosis(reason, day, eid, resolves_after_days=10)
        self._vitals(day, eid)
        lines = [codes.EMERGENCY_VISIT]
        if self.rng.random() < 0.5:
            self._procedure(day, eid, codes.PROCEDURES[1], practitioner)
            lines.append(codes.PROCEDURES[1])
        self._claim("outpatient", day, lines, [reason], practitioner, HOSPITAL, eid)
        self._claim(
            "professional", day, [codes.EMERGENCY_VISIT], [reason], practitioner, HOSPITAL, eid
        )

    def _inpatient(self, day: dt.date) -> None:
        stay = self.rng.randint(2, 5)
        if (self.end - day).days < stay:
            day = self.end - dt.timedelta(days=stay)
        reason = self.rng.choice(self.health.chronic or list(codes.ACUTE_CONDITIONS))
        practitioner = self.rng.choice(PRIMARY_CARE)
        encounter = self._encounter(
            day,
            klass="IMP",
            service=codes.INPATIENT_VISIT,
            reason=reason,
            practitioner=practitioner,
            organization=HOSPITAL,
            days=stay,
        )
        eid = encounter["id"]
        procedure = self.rng.choice(codes.PROCEDURES[2:4])
        self._procedure(day + dt.timedelta(days=1), eid, procedure, practitioner)
        self._lab_report(day, eid, "80053", practitioner)
        self._note(day + dt.timedelta(days=stay), eid, codes.NOTE_TYPES[3], practitioner, reason)
        self._claim(
            "inpatient",
            day,
            [codes.INPATIENT_VISIT, procedure, codes.LAB_SERVICES[0]],
            [reason],
            practitioner,
            HOSPITAL,
            eid,
            days=stay,
        )

    def _sensitive_visit(self, event: _Event) -> None:
        condition = event.condition
        assert condition is not None  # noqa: S101 - sensitive events always carry one
        label = condition.sensitivity
        if label == "HIV":
            practitioner, service, org = self.rng.choice(INFECTIOUS), codes.OFFICE_VISITS[1], CLINIC
        elif label == "STD":
            practitioner, service, org = (
                self.rng.choice(PRIMARY_CARE),
                codes.OFFICE_VISITS[0],
                CLINIC,
            )
        else:
            practitioner, service, org = (
                self.rng.choice(PSYCHIATRY),
                codes.PSYCHOTHERAPY,
                BEHAVIORAL,
            )
        encounter = self._encounter(
            event.day,
            klass="AMB",
            service=service,
            reason=condition,
            practitioner=practitioner,
            organization=org,
            sensitivity=label,
        )
        eid = encounter["id"]
        lines = [service]
        if label == "HIV":
            self._lab_result(event.day, eid, codes.HIV_VIRAL_LOAD, sensitivity="HIV")
        self._prescribe(event.day, condition, practitioner, eid)
        if self.rng.random() < 0.5 or self.member.showcase:
            self._note(event.day, eid, codes.NOTE_TYPES[2], practitioner, condition)
        self._claim(
            "professional", event.day, lines, [condition], practitioner, org, eid, sensitivity=label
        )

    # -- clinical details --------------------------------------------------------------------

    def _observation(
        self,
        day: dt.date,
        encounter: str,
        category: str,
        body: Resource,
        profile: str,
        sensitivity: str | None = None,
    ) -> Resource:
        base: Resource = {
            "status": "final",
            "category": [
                _cc("http://terminology.hl7.org/CodeSystem/observation-category", category)
            ],
            "subject": self.patient_ref,
            "encounter": {"reference": f"Encounter/{encounter}"},
            "effectiveDateTime": _instant(day, 10 * 60),
        }
        base.update(body)
        return self._add("Observation", base, day=day, profile=profile, sensitivity=sensitivity)

    def _acute_diagnosis(
        self, reason: ConditionCode, day: dt.date, encounter: str, *, resolves_after_days: int
    ) -> None:
        """Record the visit's diagnosis of a short illness, resolved some days later."""
        self._condition(
            reason,
            recorded=day,
            onset=day,
            category="encounter-diagnosis",
            encounter=encounter,
            resolved=day + dt.timedelta(days=resolves_after_days),
        )

    def _vitals(self, day: dt.date, encounter: str) -> None:
        (sys_code, sys_name, unit, lo, hi), (dia_code, dia_name, _, dlo, dhi) = codes.VITALS[:2]
        self._observation(
            day,
            encounter,
            "vital-signs",
            {
                "code": _cc(
                    codes.LOINC, "85354-9", "Blood pressure panel with all children optional"
                ),
                "component": [
                    {
                        "code": _cc(codes.LOINC, sys_code, sys_name),
                        "valueQuantity": self._quantity(lo, hi, unit, digits=0),
                    },
                    {
                        "code": _cc(codes.LOINC, dia_code, dia_name),
                        "valueQuantity": self._quantity(dlo, dhi, unit, digits=0),
                    },
                ],
            },
            f"{US_CORE}/us-core-blood-pressure",
        )
        code, name, unit, lo, hi = self.rng.choice(codes.VITALS[2:])
        self._observation(
            day,
            encounter,
            "vital-signs",
            {
                "code": _cc(codes.LOINC, code, name),
                "valueQuantity": self._quantity(lo, hi, unit, digits=1),
            },
            "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        )

    def _quantity(self, low: float, high: float, unit: str, *, digits: int) -> Resource:
        value = round(self.rng.uniform(low, high), digits)
        return {
            "value": int(value) if digits == 0 else value,
            "unit": unit,
            "system": codes.UCUM,
            "code": unit,
        }

    def _lab_result(
        self, day: dt.date, encounter: str, test: codes.LabTest, sensitivity: str | None = None
    ) -> Resource:
        return self._observation(
            day,
            encounter,
            "laboratory",
            {
                "code": _cc(codes.LOINC, test.loinc, test.display),
                "valueQuantity": self._quantity(test.low, test.high, test.unit, digits=1),
            },
            f"{US_CORE}/us-core-observation-lab",
            sensitivity=sensitivity,
        )

    def _lab_report(self, day: dt.date, encounter: str, panel: str, practitioner: str) -> None:
        loinc, display, tests = codes.LAB_PANELS[panel]
        results = [self._lab_result(day, encounter, test) for test in tests]
        self._add(
            "DiagnosticReport",
            {
                "status": "final",
                "category": [
                    _cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")
                ],
                "code": _cc(codes.LOINC, loinc, display),
                "subject": self.patient_ref,
                "encounter": {"reference": f"Encounter/{encounter}"},
                "effectiveDateTime": _instant(day, 10 * 60),
                "issued": _instant(day + dt.timedelta(days=1), 8 * 60),
                "performer": [{"reference": f"Practitioner/{practitioner}"}],
                "result": [{"reference": f"Observation/{r['id']}"} for r in results],
            },
            day=day,
            profile=f"{US_CORE}/us-core-diagnosticreport-lab",
        )

    def _immunization(self, day: dt.date, encounter: str, vaccine: tuple[str, str]) -> None:
        self._add(
            "Immunization",
            {
                "status": "completed",
                "vaccineCode": _cc(codes.CVX, vaccine[0], vaccine[1]),
                "patient": self.patient_ref,
                "encounter": {"reference": f"Encounter/{encounter}"},
                "occurrenceDateTime": day.isoformat(),
                "primarySource": True,
            },
            day=day,
            profile=f"{US_CORE}/us-core-immunization",
        )

    def _procedure(
        self, day: dt.date, encounter: str, service: ServiceCode, practitioner: str
    ) -> None:
        self._add(
            "Procedure",
            {
                "status": "completed",
                "code": _cc(service.system, service.code, service.display),
                "subject": self.patient_ref,
                "encounter": {"reference": f"Encounter/{encounter}"},
                "performedDateTime": day.isoformat(),
                "performer": [{"actor": {"reference": f"Practitioner/{practitioner}"}}],
            },
            day=day,
            profile=f"{US_CORE}/us-core-procedure",
        )

    def _prescribe(
        self, day: dt.date, condition: ConditionCode, practitioner: str, encounter: str
    ) -> None:
        """Prescribe the condition's drug once a year, with two pharmacy fills."""
        options = [m for m in codes.MEDICATIONS if m.treats == condition.icd10]
        if not options or (condition.icd10, day.year) in self._prescribed:
            return
        medication = options[0]
        request = self._add(
            "MedicationRequest",
            {
                "status": "completed" if day.year < self.as_of.year else "active",
                "intent": "order",
                "medicationCodeableConcept": _cc(
                    codes.RXNORM, medication.rxnorm, medication.display
                ),
                "subject": self.patient_ref,
                "encounter": {"reference": f"Encounter/{encounter}"},
                "authoredOn": day.isoformat(),
                "requester": {"reference": f"Practitioner/{practitioner}"},
                "reasonCode": [_cc(codes.ICD10CM, condition.icd10, condition.display)],
                "dosageInstruction": [{"text": "Take as directed"}],
            },
            day=day,
            profile=f"{US_CORE}/us-core-medicationrequest",
            sensitivity=condition.sensitivity,
        )
        self._prescribed[(condition.icd10, day.year)] = request["id"]
        for offset in (1, 91):
            fill = day + dt.timedelta(days=offset)
            if fill <= self.end:
                self._pharmacy_claim(fill, medication, condition)

    def _note(
        self,
        day: dt.date,
        encounter: str,
        note_type: tuple[str, str],
        practitioner: str,
        reason: ConditionCode,
    ) -> None:
        text = f"{note_type[1]} on {day.isoformat()}: seen for {reason.display}. Plan reviewed."
        self._add(
            "DocumentReference",
            {
                "status": "current",
                "type": _cc(codes.LOINC, note_type[0], note_type[1]),
                "category": [
                    _cc(
                        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "clinical-note",
                        "Clinical Note",
                    )
                ],
                "subject": self.patient_ref,
                "date": _instant(day, 18 * 60),
                "author": [{"reference": f"Practitioner/{practitioner}"}],
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain",
                            "data": base64.b64encode(text.encode()).decode(),
                            "title": note_type[1],
                        }
                    }
                ],
                "context": {
                    "encounter": [{"reference": f"Encounter/{encounter}"}],
                    "period": {"start": day.isoformat(), "end": day.isoformat()},
                },
            },
            day=day,
            profile=f"{US_CORE}/us-core-documentreference",
            sensitivity=reason.sensitivity,
        )

    def _care_plan(self, condition_resource: Resource) -> None:
        day = self.member.coverage_start + dt.timedelta(days=self.rng.randint(30, 90))
        condition = self.health.chronic[0]
        self._add(
            "CareTeam",
            {
                "status": "active",
                "name": "Primary care team",
                "subject": self.patient_ref,
                "participant": [
                    {
                        "role": [_cc(codes.NUCC, "207Q00000X", "Family Medicine Physician")],
                        "member": {"reference": f"Practitioner/{PRIMARY_CARE[0]}"},
                    },
                    {
                        "role": [_cc(codes.SNOMED, "116154003", "Patient")],
                        "member": self.patient_ref,
                    },
                ],
                "managingOrganization": [{"reference": f"Organization/{CLINIC}"}],
            },
            day=day,
            profile=f"{US_CORE}/us-core-careteam",
        )
        goal = self._add(
            "Goal",
            {
                "lifecycleStatus": "active",
                "description": {"text": f"Keep {condition.display.lower()} under control"},
                "subject": self.patient_ref,
                "startDate": day.isoformat(),
                "target": [{"dueDate": (day + dt.timedelta(days=365)).isoformat()}],
            },
            day=day,
            profile=f"{US_CORE}/us-core-goal",
        )
        self._add(
            "CarePlan",
            {
                "text": {
                    "status": "generated",
                    "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Care plan for '
                    f"{condition.display}</div>",
                },
                "status": "active",
                "intent": "plan",
                "category": [
                    _cc("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan")
                ],
                "subject": self.patient_ref,
                "period": {"start": day.isoformat()},
                "addresses": [{"reference": f"Condition/{condition_resource['id']}"}],
                "goal": [{"reference": f"Goal/{goal['id']}"}],
            },
            day=day,
            profile=f"{US_CORE}/us-core-careplan",
        )

    # -- claims ------------------------------------------------------------------------------

    def _adjudicate(
        self, charge: float, *, copay: float
    ) -> tuple[list[Resource], dict[str, float]]:
        submitted = round(charge * self.rng.uniform(0.95, 1.25), 2)
        allowed = round(submitted * self.rng.uniform(0.45, 0.8), 2)
        deductible = round(min(allowed, self.rng.choice((0.0, 0.0, 25.0, 50.0))), 2)
        copay = min(copay, allowed - deductible)
        coinsurance = round((allowed - deductible - copay) * (0.2 if not copay else 0.0), 2)
        liability = round(deductible + copay + coinsurance, 2)
        paid = round(allowed - liability, 2)
        amounts = {
            "submitted": submitted,
            "eligible": allowed,
            "memberliability": liability,
            "benefit": paid,
        }
        adjudication = [
            {"category": _cc(ADJUDICATION, "submitted"), "amount": _money(submitted)},
            {"category": _cc(ADJUDICATION, "eligible"), "amount": _money(allowed)},
            {"category": _cc(ADJUDICATION, "deductible"), "amount": _money(deductible)},
            {"category": _cc(ADJUDICATION, "copay"), "amount": _money(copay)},
            {"category": _cc(C4BB_ADJUDICATION, "coinsurance"), "amount": _money(coinsurance)},
            {"category": _cc(C4BB_ADJUDICATION, "memberliability"), "amount": _money(liability)},
            {"category": _cc(C4BB_ADJUDICATION, "paidtoprovider"), "amount": _money(paid)},
            {"category": _cc(ADJUDICATION, "benefit"), "amount": _money(paid)},
        ]
        return adjudication, amounts

    def _claim_base(
        self,
        claim_type: str,
        day: dt.date,
        provider: str,
        practitioner: str,
        diagnoses: list[ConditionCode],
        paid_on: dt.date,
    ) -> Resource:
        number = f"{self.identity.member_prefix}C{self.rng.randint(10**9, 10**10 - 1)}"
        type_code = {"inpatient": "institutional", "outpatient": "institutional"}.get(
            claim_type, claim_type
        )
        body: Resource = {
            "identifier": [
                {
                    "type": _cc(f"{C4BB}/CodeSystem/C4BBIdentifierType", "uc", "Unique Claim ID"),
                    "system": f"https://sandbox.example.org/{self.identity.slug}/claims",
                    "value": number,
                }
            ],
            "status": "active",
            "type": _cc(CLAIM_TYPE, type_code),
            "use": "claim",
            "patient": self.patient_ref,
            "billablePeriod": {"start": day.isoformat(), "end": day.isoformat()},
            "created": _instant(paid_on),
            "insurer": self.insurer_ref,
            "provider": {"reference": f"Organization/{provider}"},
            "outcome": "complete",
            "careTeam": [
                {
                    "sequence": 1,
                    "provider": {"reference": f"Practitioner/{practitioner}"},
                    "role": _cc(f"{C4BB}/CodeSystem/C4BBClaimCareTeamRole", "performing"),
                }
            ],
            "supportingInfo": [
                {
                    "sequence": 1,
                    "category": _cc(f"{C4BB}/CodeSystem/C4BBSupportingInfoType", "clmrecvddate"),
                    "timingDate": (day + dt.timedelta(days=3)).isoformat(),
                }
            ],
            "insurance": [{"focal": True, "coverage": self.coverage_ref}],
        }
        if claim_type in ("inpatient", "outpatient"):
            body["subType"] = _cc(f"{C4BB}/CodeSystem/C4BBInstitutionalClaimSubType", claim_type)
        if diagnoses:
            body["diagnosis"] = [
                {
                    "sequence": n,
                    "diagnosisCodeableConcept": _cc(codes.ICD10CM, d.icd10, d.display),
                    "type": [
                        _cc(
                            "http://terminology.hl7.org/CodeSystem/ex-diagnosistype",
                            "principal" if n == 1 else "secondary",
                        )
                    ],
                }
                for n, d in enumerate(diagnoses, start=1)
            ]
        return body

    def _claim(
        self,
        claim_type: str,
        day: dt.date,
        lines: list[ServiceCode],
        diagnoses: list[ConditionCode],
        practitioner: str,
        provider: str,
        encounter: str | None,
        *,
        days: int = 0,
        sensitivity: str | None = None,
    ) -> None:
        paid_on = min(day + dt.timedelta(days=self.rng.randint(14, 45)), self.as_of)
        body = self._claim_base(claim_type, day, provider, practitioner, diagnoses, paid_on)
        if days:
            body["billablePeriod"]["end"] = (day + dt.timedelta(days=days)).isoformat()
        items, totals = (
            [],
            {"submitted": 0.0, "eligible": 0.0, "memberliability": 0.0, "benefit": 0.0},
        )
        copay = 25.0 if claim_type == "professional" else 0.0
        for sequence, line in enumerate(lines, start=1):
            adjudication, amounts = self._adjudicate(line.charge, copay=copay)
            copay = 0.0
            for key in totals:
                totals[key] += amounts[key]
            item: Resource = {
                "sequence": sequence,
                "productOrService": _cc(line.system, line.code, line.display),
                "servicedDate": day.isoformat(),
                "adjudication": adjudication,
            }
            if encounter:
                item["encounter"] = [{"reference": f"Encounter/{encounter}"}]
            items.append(item)
        body["item"] = items
        body["adjudication"] = [
            {"category": _cc(f"{C4BB}/CodeSystem/C4BBPayerAdjudicationStatus", "innetwork")}
        ]
        self._finish_claim(claim_type, body, totals, paid_on, sensitivity)

    def _finish_claim(
        self,
        claim_type: str,
        body: Resource,
        totals: dict[str, float],
        paid_on: dt.date,
        sensitivity: str | None,
    ) -> None:
        body["total"] = [
            {
                "category": _cc(
                    ADJUDICATION
                    if key in ("submitted", "eligible", "benefit")
                    else C4BB_ADJUDICATION,
                    key,
                ),
                "amount": _money(value),
            }
            for key, value in totals.items()
        ]
        body["payment"] = {
            "type": _cc("http://terminology.hl7.org/CodeSystem/ex-paymenttype", "complete"),
            "date": paid_on.isoformat(),
            "amount": _money(totals["benefit"]),
        }
        self._add(
            "ExplanationOfBenefit",
            body,
            day=paid_on,
            profile=EOB_PROFILES[claim_type],
            sensitivity=sensitivity,
        )

    def _dental_claim(self, day: dt.date) -> None:
        lines = list(self.rng.sample(codes.DENTAL_SERVICES, k=self.rng.randint(1, 3)))
        self._claim("oral", day, lines, [], self.rng.choice(DENTISTS), DENTAL, None)

    def _pharmacy_claim(
        self, day: dt.date, medication: Medication, condition: ConditionCode
    ) -> None:
        paid_on = min(day + dt.timedelta(days=2), self.as_of)
        body = self._claim_base(
            "pharmacy", day, PHARMACY, self.rng.choice(PHARMACISTS), [], paid_on
        )
        body["supportingInfo"].append(
            {
                "sequence": 2,
                "category": _cc(f"{C4BB}/CodeSystem/C4BBSupportingInfoType", "dayssupply"),
                "valueQuantity": {"value": 90},
            }
        )
        adjudication, amounts = self._adjudicate(medication.unit_cost * 90 + 10, copay=10.0)
        body["item"] = [
            {
                "sequence": 1,
                "productOrService": _cc(codes.NDC, medication.ndc, medication.display),
                "servicedDate": day.isoformat(),
                "quantity": {"value": 90},
                "adjudication": adjudication,
            }
        ]
        self._finish_claim("pharmacy", body, dict(amounts), paid_on, condition.sensitivity)

    # -- prior authorizations (PDex) ---------------------------------------------------------

    def _prior_authorizations(self) -> None:
        if self.member.showcase:
            kinds = list(PRIOR_AUTH_KINDS)
        else:
            kinds = self.rng.sample(list(PRIOR_AUTH_KINDS), k=self.rng.randint(1, 3))
        for kind in kinds:
            self._prior_authorization(kind)

    def _prior_authorization(self, kind: str) -> None:
        status, outcome, action, action_display = PRIOR_AUTH_KINDS[kind]
        start = self.member.coverage_start
        if kind == "expired":
            decided = min(start + dt.timedelta(days=30), self.end)
        else:
            # Everything else changed status within the last year of coverage.
            decided = self._day_between(max(start, self.end - dt.timedelta(days=330)), self.end)
        requested = max(decided - dt.timedelta(days=self.rng.randint(2, 10)), start)
        drug = kind.startswith("drug")
        if drug:
            medication = self.rng.choice(codes.MEDICATIONS[:8])
            product = _cc(codes.RXNORM, medication.rxnorm, medication.display)
            claim_type, charge = "pharmacy", medication.unit_cost * 90
        else:
            service = self.rng.choice((*codes.PROCEDURES[2:], codes.INPATIENT_VISIT))
            product = _cc(service.system, service.code, service.display)
            claim_type, charge = (
                ("institutional" if service is codes.INPATIENT_VISIT else "professional"),
                service.charge,
            )
        number = f"PA{self.identity.member_prefix}{self.rng.randint(10**7, 10**8 - 1)}"
        period_end = decided + dt.timedelta(days=180)
        review = {
            "url": f"{PDEX}/StructureDefinition/extension-reviewAction",
            "extension": [
                {"url": "number", "valueString": number},
                {
                    "url": f"{PDEX}/StructureDefinition/extension-reviewActionCode",
                    "valueCodeableConcept": _cc(X12_REVIEW_ACTION, action, action_display),
                },
            ],
        }
        body: Resource = {
            "extension": [
                {
                    "url": f"{PDEX}/StructureDefinition/extension-levelOfServiceCode",
                    "valueCodeableConcept": _cc(
                        "https://codesystem.x12.org/005010/1338", "E", "Elective"
                    ),
                }
            ],
            "identifier": [
                {
                    "system": f"https://sandbox.example.org/{self.identity.slug}/"
                    "prior-authorizations",
                    "value": number,
                }
            ],
            "status": status,
            "type": _cc(CLAIM_TYPE, claim_type),
            "use": "preauthorization",
            "patient": self.patient_ref,
            "created": _instant(requested),
            "insurer": self.insurer_ref,
            "provider": {"reference": f"Organization/{PHARMACY if drug else CLINIC}"},
            "priority": _cc("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
            "outcome": outcome,
            "preAuthRef": [number],
            "preAuthRefPeriod": [{"start": decided.isoformat(), "end": period_end.isoformat()}],
            "insurance": [{"focal": True, "coverage": self.coverage_ref}],
            "item": [
                {
                    "sequence": 1,
                    "productOrService": product,
                    "adjudication": [
                        {
                            "extension": [
                                review,
                                {
                                    "url": f"{PDEX}/StructureDefinition/base-ext-when-adjudicated",
                                    "valueDateTime": _instant(decided, 15 * 60),
                                },
                            ],
                            "category": _cc(ADJUDICATION, "submitted", "Submitted Amount"),
                            "amount": _money(charge),
                        }
                    ],
                }
            ],
        }
        if kind == "pended":
            del body["preAuthRefPeriod"]
        resource = self._add("ExplanationOfBenefit", body, day=decided, profile=PRIOR_AUTH_PROFILE)
        resource["meta"]["lastUpdated"] = _instant(decided, 16 * 60)

    def _provenance(self) -> None:
        latest = max(r["meta"]["lastUpdated"] for r in self.resources)
        self._add(
            "Provenance",
            {
                "target": [{"reference": f"Patient/{self.pid}"}, self.coverage_ref],
                "recorded": latest,
                "agent": [
                    {
                        "type": _cc(
                            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "author",
                        ),
                        "who": {"reference": f"Organization/{PAYER_ORGANIZATION_ID}"},
                    },
                    {
                        "type": _cc(
                            "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type",
                            "transmitter",
                        ),
                        "who": {"reference": f"Organization/{PAYER_ORGANIZATION_ID}"},
                    },
                ],
            },
            day=self.as_of,
            profile=f"{US_CORE}/us-core-provenance",
        )
        self.resources[-1]["meta"]["lastUpdated"] = latest


def member_resources(
    *, identity: PayerIdentity, member: Member, seed: str, as_of: dt.date, care_factor: int = 1
) -> list[Resource]:
    """Return every resource of member at the payer identity, Patient first.

    ``care_factor`` repeats each year's ordinary care that many times (see MemberHistory).
    """
    return MemberHistory(
        identity=identity, member=member, seed=seed, as_of=as_of, care_factor=care_factor
    ).build()


def later_visit_resources(
    *,
    identity: PayerIdentity,
    member: Member,
    seed: str,
    day: dt.date,
    number: int,
    updated_at: str,
) -> list[Resource]:
    """Return the resources of the member's ``number``-th office visit after the record was
    generated (an encounter, its vitals and diagnosis, its claim), on ``day``, every one last
    updated at ``updated_at``: the care a holder's record gains between two pulls, which an
    incremental pull (``_since``) must bring and nothing else."""
    return MemberHistory(
        identity=identity, member=member, seed=f"{seed}:visit:{number}", as_of=day
    ).later_visit(day=day, number=number, updated_at=updated_at)
