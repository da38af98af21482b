"""The non-financial view of claims: what a claim EOB keeps when it leaves the hub.

CMS-0057-F: claims and encounter data "excluding provider remittances and enrollee
cost-sharing information"; PDex STU 2.2 implements that view with the CARIN Blue Button
non-financial "Basis" profiles (Inpatient Institutional, Outpatient Institutional,
Professional NonClinician, Oral, Pharmacy). SPEC.md, "Non-financial claims": drop
``payment``, ``total``, ``benefitBalance``, monetary ``adjudication`` amounts on
``item``/``addItem``/top level, patient-paid and cost-sharing amounts; keep the clinical and
service content (dates, providers, diagnoses, procedures, items, codes, statuses).

So, on every ``ExplanationOfBenefit`` that is not a prior authorization (those follow the
PDex Prior Authorization profile and are judged by ``prior_authorizations.py``):
- ``payment``, ``total``, ``benefitBalance`` go;
- on the header, every ``item``/``addItem`` and their ``detail``/``subDetail``: the Money
  elements ``unitPrice`` and ``net`` go, and in each ``adjudication`` the ``amount`` goes;
  an adjudication whose category is a money category (THO ``adjudication`` or CARIN
  ``C4BBAdjudication``: submitted, eligible, deductible, copay, coinsurance, member
  liability, paid to provider, paid by patient, ...) loses its ``value`` too, and goes
  entirely when nothing but its category is left. Adjudications that carry a status or a
  reason (in/out of network, denial reason, allowed units) stay;
- ``meta.profile`` naming one of the five CARIN financial EOB profiles names its Basis
  twin instead, which the reduced resource now conforms to.
The reduction is counted as "reduced", not removed: the claim still leaves.
"""

from typing import Any

from exchange.screening.prior_authorizations import is_prior_authorization

Resource = dict[str, Any]

FINANCIAL_ELEMENTS = ("payment", "total", "benefitBalance")
LINE_MONEY_ELEMENTS = ("unitPrice", "net")
MONEY_CATEGORY_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/adjudication",
        "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication",
    }
)
_C4BB_EOB = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit-"
BASIS_PROFILES = {
    f"{_C4BB_EOB}{kind}": f"{_C4BB_EOB}{kind}-Basis"
    for kind in (
        "Inpatient-Institutional",
        "Outpatient-Institutional",
        "Professional-NonClinician",
        "Oral",
        "Pharmacy",
    )
}
# Where lines nest: item -> detail -> subDetail, addItem -> detail -> subDetail.
_NESTED_LINES = ("item", "addItem", "detail", "subDetail")


def is_claim(resource: Resource) -> bool:
    return resource.get("resourceType") == "ExplanationOfBenefit" and not is_prior_authorization(
        resource
    )


def _is_money_category(adjudication: Resource) -> bool:
    category = adjudication.get("category")
    codings = category.get("coding", []) if isinstance(category, dict) else []
    return any(coding.get("system") in MONEY_CATEGORY_SYSTEMS for coding in codings)


def _reduce_adjudications(holder: Resource) -> bool:
    adjudications = holder.get("adjudication")
    if not isinstance(adjudications, list):
        return False
    kept = []
    changed = False
    for adjudication in adjudications:
        if "amount" in adjudication:
            del adjudication["amount"]
            changed = True
        if _is_money_category(adjudication):
            if "value" in adjudication:
                del adjudication["value"]
                changed = True
            if not set(adjudication) - {"category", "id"}:
                changed = True
                continue
        kept.append(adjudication)
    if kept:
        holder["adjudication"] = kept
    else:
        del holder["adjudication"]
    return changed


def _reduce_line(holder: Resource) -> bool:
    changed = _reduce_adjudications(holder)
    for element in LINE_MONEY_ELEMENTS:
        if element in holder:
            del holder[element]
            changed = True
    for key in _NESTED_LINES:
        for line in holder.get(key, []):
            changed = _reduce_line(line) or changed
    return changed


def claim_reduce_to_non_financial(resource: Resource) -> bool:
    """Strip the financial content from a claim EOB in place; return whether any was there."""
    changed = False
    for element in FINANCIAL_ELEMENTS:
        if element in resource:
            del resource[element]
            changed = True
    changed = _reduce_line(resource) or changed
    meta = resource.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("profile"), list):
        meta["profile"] = [BASIS_PROFILES.get(profile, profile) for profile in meta["profile"]]
    return changed
