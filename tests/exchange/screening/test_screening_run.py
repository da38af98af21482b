"""screening_run over staged pages: what it writes, counts, quarantines, and that it can rerun."""

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from exchange.payloads.layout import RequestFiles
from exchange.payloads.storage import LocalPayloadStorage
from exchange.screening import (
    RemovalReason,
    ScreeningRun,
    screening_complete,
    screening_result_read,
    screening_run,
)
from exchange.screening.sensitivity import sensitive_label
from tests.exchange.screening.support import (
    SAMPLES_AS_OF,
    sample,
    sample_names,
    screened_resources,
    stage_pages,
)

REQUEST_ID = 42
SCREENED = f"requests/{REQUEST_ID}/screened"


@pytest.fixture
def storage(tmp_path: Path) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path)


def _every_sample() -> list[dict[str, Any]]:
    """Return every sample; claims and labelled ones (the sandbox's first, 2019) made recent."""
    resources = [sample(name) for name in sample_names()]
    recent: dict[str, dict[str, Any]] = {
        "Observation-hiv-labelled": {"effectiveDateTime": "2026-03-02T10:00:00Z"},
        "Condition-eth-labelled": {"recordedDate": "2026-03-02"},
        "Encounter-psy-labelled": {"period": {"start": "2026-03-02T10:00:00Z"}},
    }
    for name, resource in zip(sample_names(), resources, strict=True):
        resource.update(recent.get(name, {}))
    for resource in resources:
        if resource["resourceType"] == "ExplanationOfBenefit" and resource["use"] == "claim":
            resource["billablePeriod"] = {"start": "2026-03-02", "end": "2026-03-02"}
            for item in resource["item"]:
                item["servicedDate"] = "2026-03-02"
    return resources


def test_regular_consent_run_keeps_reduces_removes_and_counts(storage: LocalPayloadStorage) -> None:
    stage_pages(storage, REQUEST_ID, _every_sample(), page_size=7)

    result = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="regular", storage=storage
    )

    assert result.removed == {
        RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT: 3,
        RemovalReason.PRIOR_AUTHORIZATION_DENIED: 1,
        RemovalReason.PRIOR_AUTHORIZATION_DRUG: 2,
        RemovalReason.PRIOR_AUTHORIZATION_NOT_CURRENT: 1,
        RemovalReason.OUTSIDE_FIVE_YEARS: result.removed[RemovalReason.OUTSIDE_FIVE_YEARS],
    }
    assert result.removed[RemovalReason.OUTSIDE_FIVE_YEARS] > 0
    assert result.quarantined == 0
    assert result.kept_total + sum(result.removed.values()) == len(sample_names())
    assert storage.list(SCREENED) == sorted([*result.files, f"{SCREENED}/summary.json"])
    kept = [r for name in result.files for r in screened_resources(storage, name)]
    assert len(kept) == result.kept_total
    assert {r["resourceType"] for r in kept} == set(result.kept)
    assert not [r for r in kept if sensitive_label(r)]
    claims = [
        r for r in kept if r["resourceType"] == "ExplanationOfBenefit" and r["use"] == "claim"
    ]
    assert len(claims) == 5
    assert result.reduced == {"ExplanationOfBenefit": 5}
    assert not [c for c in claims if "payment" in c or "total" in c]
    assert result.files[0] == f"{SCREENED}/Patient.ndjson"


def test_sensitive_consent_run_lets_labelled_resources_through(
    storage: LocalPayloadStorage,
) -> None:
    stage_pages(storage, REQUEST_ID, _every_sample())

    result = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )

    assert RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT not in result.removed
    kept = [r for name in result.files for r in screened_resources(storage, name)]
    assert len([r for r in kept if sensitive_label(r)]) == 3


def test_a_regular_run_never_lets_a_sensitive_resource_through(
    storage: LocalPayloadStorage,
) -> None:
    # Every kind of resource, each labelled with a sensitive code the sandbox uses, and recent.
    labelled = []
    for number, name in enumerate(sample_names()):
        resource = sample(name)
        code = ("ETH", "HIV", "PSY", "STD")[number % 4]
        resource.setdefault("meta", {})["security"] = [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}
        ]
        labelled.append(resource)
    stage_pages(storage, REQUEST_ID, [*labelled, sample("Patient")])

    result = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="regular", storage=storage
    )

    assert result.kept == {"Patient": 1}
    assert result.removed[RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT] == len(labelled)


def test_invalid_resources_are_quarantined_and_reported_not_dropped(
    storage: LocalPayloadStorage,
) -> None:
    broken = sample("Encounter")
    broken["subject"] = "Patient/pat1"
    stage_pages(
        storage,
        REQUEST_ID,
        [
            sample("Patient"),
            broken,
            '{"resourceType": "Observation", "status": ',
            sample("Coverage"),
        ],
        page_size=2,
    )

    result = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )

    assert result.kept == {"Patient": 1, "Coverage": 1}
    assert result.quarantined == 2
    first, second = result.quarantine_examples
    assert (first.page, first.line, first.resource_type, first.resource_id) == (
        "00001.ndjson",
        2,
        "Encounter",
        broken["id"],
    )
    assert first.problems == ['subject: "Patient/pat1" is not of type "object"']
    assert (second.page, second.line, second.resource_type) == ("00002.ndjson", 1, None)
    assert second.problems[0].startswith("(line): not JSON")
    records = screened_resources(storage, f"{SCREENED}/quarantine.ndjson")
    assert [json.loads(records[0]["staged"])] == [broken]
    assert records[1]["staged"] == '{"resourceType": "Observation", "status": '
    assert {"code": "invalid-resource", "count": 2}.items() <= result.screened_out()[-1].items()


def test_rerun_overwrites_its_outputs_and_drops_what_no_longer_applies(
    storage: LocalPayloadStorage,
) -> None:
    stage_pages(storage, REQUEST_ID, _every_sample())
    first = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )
    outputs = {name: storage.read_bytes(name) for name in storage.list(SCREENED)}

    again = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )
    assert again == first
    assert {name: storage.read_bytes(name) for name in storage.list(SCREENED)} == outputs

    storage.delete_tree(f"requests/{REQUEST_ID}/staging")
    stage_pages(storage, REQUEST_ID, [sample("Patient"), '{"not": "closed"'])
    last = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )
    assert storage.list(SCREENED) == [
        f"{SCREENED}/Patient.ndjson",
        f"{SCREENED}/quarantine.ndjson",
        f"{SCREENED}/summary.json",
    ]
    assert screening_result_read(request_id=REQUEST_ID, storage=storage) == last


def test_a_resource_larger_than_a_storage_chunk_passes_whole(storage: LocalPayloadStorage) -> None:
    note = sample("DocumentReference")
    note["content"][0]["attachment"]["data"] = "QUFB" * 60_000  # 240 kB, several 64 KiB chunks
    note["context"]["period"] = {"start": "2026-03-02", "end": "2026-03-02"}
    stage_pages(storage, REQUEST_ID, [sample("Patient"), note])

    result = screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )

    assert result.kept == {"Patient": 1, "DocumentReference": 1}
    assert screened_resources(storage, f"{SCREENED}/DocumentReference.ndjson") == [note]


def test_a_request_with_nothing_staged_fails_with_a_clear_message(
    storage: LocalPayloadStorage,
) -> None:
    with pytest.raises(FileNotFoundError, match="request 42 has no staged pages"):
        screening_run(
            request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="regular", storage=storage
        )


def test_an_unknown_policy_is_refused_by_name(storage: LocalPayloadStorage) -> None:
    stage_pages(storage, REQUEST_ID, [sample("Patient")])

    with pytest.raises(ValueError, match="consent policy must be 'sensitive' or 'regular'"):
        screening_run(
            request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="everything", storage=storage
        )


def test_the_screening_step_takes_a_result_only_for_the_same_pages_policy_and_date(
    storage: LocalPayloadStorage,
) -> None:
    stage_pages(storage, REQUEST_ID, _every_sample(), page_size=7)
    terms = {"request_id": REQUEST_ID, "request_date": SAMPLES_AS_OF, "storage": storage}
    run = ScreeningRun(policy="sensitive", **terms)
    for page in storage.list(f"requests/{REQUEST_ID}/staging"):
        run.staged_page_screen(page)
    screened = run.finish()
    assert screening_complete(policy="sensitive", **terms) == screened

    # Another consent, or another day, is screened afresh.
    regular = screening_complete(policy="regular", **terms)
    assert regular.policy == "regular"
    assert RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT in regular.removed
    later = screening_complete(
        request_id=REQUEST_ID, request_date=date(2040, 1, 1), policy="regular", storage=storage
    )
    assert later.kept_total < regular.kept_total

    # A page staged since is screened too.
    pages = len(later.pages)
    extra = RequestFiles(REQUEST_ID).staging_page(pages + 1)
    storage.write_bytes(extra, json.dumps(sample("Coverage")).encode() + b"\n")
    again = screening_complete(policy="sensitive", **terms)
    assert len(again.pages) == pages + 1
    assert again.kept_total == screened.kept_total + 1


def test_a_summary_that_cannot_be_read_is_screened_afresh(storage: LocalPayloadStorage) -> None:
    stage_pages(storage, REQUEST_ID, _every_sample(), page_size=7)
    terms = {"request_id": REQUEST_ID, "request_date": SAMPLES_AS_OF, "storage": storage}
    screened = screening_run(policy="sensitive", **terms)
    # Cut short (a disk fault), or written under a key no longer configured.
    summary = storage.path(f"requests/{REQUEST_ID}/screened/summary.json")
    summary.write_bytes(summary.read_bytes()[:-5])

    assert screening_complete(policy="sensitive", **terms) == screened
    # ... and the summary is whole again.
    assert screening_complete(policy="sensitive", **terms) == screened


def test_an_aborted_run_leaves_no_result_standing(storage: LocalPayloadStorage) -> None:
    stage_pages(storage, REQUEST_ID, _every_sample())
    screening_run(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )

    run = ScreeningRun(
        request_id=REQUEST_ID, request_date=SAMPLES_AS_OF, policy="sensitive", storage=storage
    )
    run.staged_page_screen(f"requests/{REQUEST_ID}/staging/00001.ndjson")
    run.abort()

    assert not storage.exists(f"{SCREENED}/summary.json")
    assert not [name for name in storage.list(SCREENED) if name.endswith(".partial")]
