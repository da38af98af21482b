"""The five-year window: per type, by the documented date path, inclusive at exactly five years."""

from datetime import date
from typing import Any

import pytest

from exchange.screening.five_year_window import (
    SERVICE_DATE_PATHS,
    is_outside_five_years,
    service_date,
    years_before,
)
from tests.exchange.screening.support import sample

REQUEST = date(2026, 11, 23)
FIRST_DAY_IN = date(2021, 11, 23)  # exactly five years before: still in
LAST_DAY_OUT = date(2021, 11, 22)


def _set(resource: dict[str, Any], path: str, value: Any) -> None:
    node = resource
    *parents, leaf = path.split(".")
    for step in parents:
        node = node[step][0] if isinstance(node[step], list) else node[step]
    node[leaf] = value


# (sample, how its date of service is set, the value written for a given day)
DATED = [
    (
        "Encounter",
        lambda r, d: r.update(period={"start": f"{d}T09:00:00Z", "end": f"{d}T10:00:00Z"}),
    ),
    ("Condition", lambda r, d: r.update(onsetDateTime=str(d), recordedDate=str(d))),
    ("Observation-vitals", lambda r, d: r.update(effectiveDateTime=f"{d}T10:00:00Z")),
    ("Procedure", lambda r, d: r.update(performedDateTime=str(d))),
    ("MedicationRequest", lambda r, d: r.update(authoredOn=str(d))),
    ("Immunization", lambda r, d: r.update(occurrenceDateTime=str(d))),
    ("DiagnosticReport", lambda r, d: r.update(effectiveDateTime=f"{d}T10:00:00Z")),
    ("AllergyIntolerance", lambda r, d: r.update(recordedDate=str(d))),
    ("Goal", lambda r, d: r.update(startDate=str(d))),
    ("CarePlan", lambda r, d: r.update(period={"start": str(d), "end": str(d)})),
    (
        "DocumentReference",
        lambda r, d: r["context"].update(period={"start": str(d), "end": str(d)}),
    ),
    (
        "EOB-professional",
        lambda r, d: (
            r.update(billablePeriod={"start": str(d), "end": str(d)}),
            [item.update(servicedDate=str(d)) for item in r["item"]],
        ),
    ),
]


@pytest.mark.parametrize(("name", "dated"), DATED, ids=[name for name, _ in DATED])
def test_exactly_five_years_before_the_request_is_in_and_a_day_earlier_is_out(
    name: str, dated: Any
) -> None:
    inside, outside = sample(name), sample(name)
    dated(inside, FIRST_DAY_IN)
    dated(outside, LAST_DAY_OUT)

    assert service_date(inside) == FIRST_DAY_IN
    assert not is_outside_five_years(inside, request_date=REQUEST)
    assert is_outside_five_years(outside, request_date=REQUEST)


def test_every_sample_type_with_a_date_of_service_is_in_the_table() -> None:
    assert {name.split("-")[0] for name, _ in DATED} - {"EOB"} <= set(SERVICE_DATE_PATHS)
    assert "ExplanationOfBenefit" in SERVICE_DATE_PATHS


@pytest.mark.parametrize("name", ["Patient", "Coverage", "Provenance", "CareTeam"])
def test_resources_without_a_date_of_service_are_kept_however_old(name: str) -> None:
    resource = sample(name)
    resource["meta"]["lastUpdated"] = "2001-01-01T00:00:00Z"

    assert service_date(resource) is None
    assert not is_outside_five_years(resource, request_date=REQUEST)


def test_the_latest_service_date_counts_so_a_long_stay_ending_inside_is_kept() -> None:
    claim = sample("EOB-inpatient")
    claim["billablePeriod"] = {"start": "2021-11-01", "end": "2021-11-30"}
    for item in claim["item"]:
        item["servicedDate"] = "2021-11-01"

    assert service_date(claim) == date(2021, 11, 30)
    assert not is_outside_five_years(claim, request_date=REQUEST)


def test_a_condition_recorded_inside_the_window_is_kept_although_its_onset_is_older() -> None:
    condition = sample("Condition")
    condition.update(onsetDateTime="2012-03-01", recordedDate="2022-01-10")
    condition.pop("abatementDateTime", None)

    assert not is_outside_five_years(condition, request_date=REQUEST)


def test_the_record_date_is_only_a_fallback_when_no_service_date_is_present() -> None:
    observation = sample("Observation-vitals")
    observation.update(effectiveDateTime="2019-05-05T10:00:00Z", issued="2025-01-01T00:00:00Z")
    assert is_outside_five_years(observation, request_date=REQUEST)

    del observation["effectiveDateTime"]
    assert service_date(observation) == date(2025, 1, 1)


def test_an_ongoing_period_is_in_the_window() -> None:
    encounter = sample("Encounter")
    encounter["period"] = {"start": "2015-01-01T09:00:00Z"}

    assert not is_outside_five_years(encounter, request_date=REQUEST)


@pytest.mark.parametrize(
    ("written", "meant"),
    [("2021", date(2021, 12, 31)), ("2021-11", date(2021, 11, 30)), ("2016", date(2016, 12, 31))],
)
def test_a_partial_date_means_its_last_day(written: str, meant: date) -> None:
    procedure = sample("Procedure")
    procedure["performedDateTime"] = written

    assert service_date(procedure) == meant


def test_an_undated_clinical_resource_is_kept() -> None:
    allergy = sample("AllergyIntolerance")
    allergy.pop("recordedDate")

    assert service_date(allergy) is None
    assert not is_outside_five_years(allergy, request_date=REQUEST)


def test_five_years_before_29_february_is_28_february() -> None:
    assert years_before(date(2028, 2, 29), 5) == date(2023, 2, 28)
    assert years_before(date(2028, 2, 29), 1) == date(2027, 2, 28)
