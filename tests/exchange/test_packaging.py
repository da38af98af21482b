"""package_build: a streamed collection Bundle with the hub's Provenance, and a true manifest."""

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.provenance import Provenance

from exchange.packaging import PackageContext, PayerParty, package_build
from exchange.payloads.storage import LocalPayloadStorage
from exchange.screening import screening_run
from exchange.screening.non_financial_claims import is_claim
from exchange.screening.prior_authorizations import is_prior_authorization
from exchange.screening.sensitivity import sensitive_label
from hub.validators import NPI_SYSTEM
from sandbox.fhir.payer_to_payer import payer_to_payer_disclosable
from tests.exchange.screening.support import SAMPLES_AS_OF, sample, stage_pages
from tests.sandbox.harness import (
    FORMER,
    SEED,
    BackendClient,
    current_consent,
    everything,
    is_sensitive,
    matched_patient,
    running_sandbox,
)

REQUEST_ID = 7
NEW_NPI = "1777777771"


def _context(*, request_id: int = REQUEST_ID, policy: str = "regular") -> PackageContext:
    return PackageContext(
        request_id=request_id,
        new_payer=PayerParty("New Health Plan", ((NPI_SYSTEM, NEW_NPI),)),
        former_payer=PayerParty(
            "Former Health Plan",
            ((NPI_SYSTEM, "1234567893"), ("urn:payer-hub:payer-id", "FHP01")),
        ),
        consent_id="consent-31",
        consent_policy=policy,
        hub_name="Payer-to-payer hub",
    )


@pytest.fixture
def storage(tmp_path: Path) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path)


def _screened_small_record(storage: LocalPayloadStorage, policy: str = "regular") -> None:
    recent_claim = sample("EOB-professional")
    recent_claim["billablePeriod"] = {"start": "2026-05-04", "end": "2026-05-04"}
    recent_claim["item"][0]["servicedDate"] = "2026-05-04"
    hiv_lab = sample("Observation-hiv-labelled")
    hiv_lab["effectiveDateTime"] = "2026-05-04T10:00:00Z"
    broken = sample("Goal")
    broken["subject"] = "Patient/pat1"
    record = [
        sample("Coverage"),
        sample("Patient"),
        recent_claim,
        hiv_lab,
        sample("PA-approved"),
        sample("PA-denied"),
        sample("Encounter"),  # 2019: outside the window
        broken,
    ]
    stage_pages(storage, REQUEST_ID, record, page_size=3)
    screening_run(request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy=policy, storage=storage)


def _open_ended(period: Any) -> bool:
    return isinstance(period, dict) and "end" not in period


def _read_json(storage: LocalPayloadStorage, name: str) -> Any:
    return json.loads(storage.read_bytes(name))


def test_the_bundle_is_a_valid_r4b_collection_with_the_kept_resources_and_provenance(
    storage: LocalPayloadStorage,
) -> None:
    _screened_small_record(storage)

    package = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())

    raw = storage.read_bytes(package.files[0].storage_name)
    bundle = Bundle.model_validate_json(raw)
    assert bundle.type == "collection"
    types = [entry.resource.get_resource_type() for entry in bundle.entry]
    assert types == [
        "Patient",
        "Coverage",
        "ExplanationOfBenefit",
        "ExplanationOfBenefit",
        "Provenance",
    ]
    claim = json.loads(raw)["entry"][2]["resource"]
    assert "payment" not in claim and "total" not in claim
    provenance = json.loads(raw)["entry"][-1]["resource"]
    Provenance.model_validate(provenance)
    assert provenance["target"] == [{"reference": "Patient/pat1"}]
    former, hub = provenance["agent"]
    assert former["type"]["coding"][0]["code"] == "author"
    assert former["who"] == {
        "identifier": {"system": NPI_SYSTEM, "value": "1234567893"},
        "display": "Former Health Plan",
    }
    assert hub["type"]["coding"][0]["code"] == "assembler"
    assert hub["who"] == {"display": "Payer-to-payer hub"}
    assert hub["onBehalfOf"]["identifier"]["value"] == NEW_NPI
    assert provenance["recorded"] == json.loads(raw)["timestamp"]


def test_the_manifest_lists_every_other_file_with_its_true_hash_and_size(
    storage: LocalPayloadStorage,
) -> None:
    _screened_small_record(storage)

    package = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())

    assert package.delivery_order == [
        (f"requests/{REQUEST_ID}/package/bundle.json", "bundle.json"),
        (f"requests/{REQUEST_ID}/package/manifest.json", "manifest.json"),
    ]
    manifest = _read_json(storage, package.files[-1].storage_name)
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert set(listed) == {"bundle.json"}
    bundle = storage.read_bytes(package.files[0].storage_name)
    assert listed["bundle.json"]["sha256"] == hashlib.sha256(bundle).hexdigest()
    assert (
        listed["bundle.json"]["size"] == len(bundle) == storage.size(package.files[0].storage_name)
    )
    manifest_bytes = storage.read_bytes(package.files[-1].storage_name)
    assert package.files[-1].sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert package.files[-1].size == len(manifest_bytes)


def test_the_manifest_says_who_under_which_consent_and_what_was_screened_out(
    storage: LocalPayloadStorage,
) -> None:
    _screened_small_record(storage)

    package = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())

    manifest = _read_json(storage, package.files[-1].storage_name)
    assert manifest["requestId"] == REQUEST_ID
    assert manifest["formerPayer"] == {
        "name": "Former Health Plan",
        "identifiers": [
            {"system": NPI_SYSTEM, "value": "1234567893"},
            {"system": "urn:payer-hub:payer-id", "value": "FHP01"},
        ],
    }
    assert manifest["newPayer"]["identifiers"] == [{"system": NPI_SYSTEM, "value": NEW_NPI}]
    assert manifest["consent"] == {
        "id": "consent-31",
        "policy": "regular",
        "policyUri": "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular",
    }
    assert manifest["resourceCounts"] == {
        "Coverage": 1,
        "ExplanationOfBenefit": 2,
        "Patient": 1,
        "Provenance": 1,
    }
    assert manifest["resourceTotal"] == 5
    assert manifest["reducedToNonFinancial"] == {"ExplanationOfBenefit": 1}
    assert [(row["code"], row["count"]) for row in manifest["screenedOut"]] == [
        ("outside-five-year-window", 1),
        ("sensitive-under-regular-consent", 1),
        ("prior-authorization-denied", 1),
        ("invalid-resource", 1),
    ]
    assert all(row["reason"] for row in manifest["screenedOut"])
    assert manifest["quarantined"] == 1
    assert dt.datetime.fromisoformat(manifest["generatedAt"]).tzinfo is not None


def test_rebuilding_overwrites_the_package_with_the_same_content(
    storage: LocalPayloadStorage,
) -> None:
    _screened_small_record(storage)
    first = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())
    first_bundle = _read_json(storage, first.files[0].storage_name)

    again = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())

    second_bundle = _read_json(storage, again.files[0].storage_name)
    assert again.delivery_order == first.delivery_order
    assert storage.list(f"requests/{REQUEST_ID}/package") == sorted(
        name for name, _ in again.delivery_order
    )
    for bundle in (first_bundle, second_bundle):  # only the generation time may differ
        del bundle["meta"], bundle["timestamp"], bundle["entry"][-1]["resource"]["recorded"]
    assert second_bundle == first_bundle
    manifest = _read_json(storage, again.files[-1].storage_name)
    bundle_bytes = storage.read_bytes(again.files[0].storage_name)
    assert manifest["files"][0]["sha256"] == hashlib.sha256(bundle_bytes).hexdigest()


def test_packaging_refuses_a_context_that_does_not_match_the_screening(
    storage: LocalPayloadStorage,
) -> None:
    _screened_small_record(storage, policy="sensitive")

    with pytest.raises(
        ValueError, match="screened under #sensitive, but the consent says #regular"
    ):
        package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())
    with pytest.raises(ValueError, match="package context is for request 8, not 7"):
        package_build(
            request_id=REQUEST_ID, storage=storage, manifest_context=_context(request_id=8)
        )
    with pytest.raises(FileNotFoundError, match="request 9 has not been screened"):
        package_build(request_id=9, storage=storage, manifest_context=_context(request_id=9))


def test_a_context_with_a_bad_policy_or_no_former_payer_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="consent policy must be one of"):
        _context(policy="all")
    with pytest.raises(ValueError, match="former payer Nobody has no identifier"):
        PackageContext(
            request_id=1,
            new_payer=PayerParty("New", ()),
            former_payer=PayerParty("Nobody", ()),
            consent_id="c",
            consent_policy="regular",
            hub_name="hub",
        )


def test_a_sandbox_record_pulled_over_http_is_screened_and_packaged_by_the_rule(
    storage: LocalPayloadStorage,
) -> None:
    """The showcase member's whole record from a running sandbox payer, under #regular."""
    today = dt.datetime.now(dt.UTC).date()
    with running_sandbox(FORMER, "--seed", SEED, "--members", "5") as payer:
        client = BackendClient(payer, NEW_NPI).register()
        member = payer.member("pat1")
        with client.http() as http:
            # The holder is asked for everything, so the hub's own #regular screening is tested.
            patient_id = matched_patient(http, member, current_consent(recipient_npi=NEW_NPI))
            record = everything(http, patient_id, _count="100")
    assert len(record) > 300
    stage_pages(storage, REQUEST_ID, record, page_size=100)

    result = screening_run(
        request_id=REQUEST_ID, request_date=today, policy="regular", storage=storage
    )
    package = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=_context())

    bundle = _read_json(storage, package.files[0].storage_name)
    delivered = [entry["resource"] for entry in bundle["entry"]][:-1]
    # The sandbox's own disclosure rules (sandbox/fhir/payer_to_payer.py), applied to the
    # same record, plus #regular: the hub delivers that set. One principled difference: an
    # open-ended Period is ongoing care (FHIR R4 Period.end), which the hub keeps (an active
    # CarePlan begun more than five years ago) and the sandbox dates by its start.
    expected = [
        r
        for r in record
        if not is_sensitive(r)
        and (payer_to_payer_disclosable(r, today=today) or _open_ended(r.get("period")))
    ]
    assert [r for r in expected if not payer_to_payer_disclosable(r, today=today)]
    assert sorted((r["resourceType"], r["id"]) for r in delivered) == sorted(
        (r["resourceType"], r["id"]) for r in expected
    )
    assert not [r for r in delivered if sensitive_label(r)]
    assert not [r for r in delivered if is_claim(r) and {"payment", "total"} & set(r)]
    prior_authorizations = [r for r in delivered if is_prior_authorization(r)]
    assert prior_authorizations
    assert not [r for r in prior_authorizations if r["type"]["coding"][0]["code"] == "pharmacy"]
    manifest = _read_json(storage, package.files[-1].storage_name)
    assert manifest["resourceTotal"] == len(delivered) + 1 == result.kept_total + 1
    assert result.quarantined == 0
    assert sum(result.removed.values()) + result.kept_total == len(record)
