"""Under a #regular consent no sensitive-labelled resource leaves; under #sensitive all may."""

import pytest

from exchange.models import ConsentPolicy
from exchange.screening.decision import Kept, Removed, resource_screen
from exchange.screening.reasons import RemovalReason
from exchange.screening.sensitivity import SENSITIVE_LABELS, sensitive_label
from tests.exchange.screening.support import SAMPLES_AS_OF, sample

LABELS = sorted(
    (system, code) for system, codes in SENSITIVE_LABELS.items() if system for code in codes
)


def _labelled(system: str | None, code: str) -> dict:
    resource = sample("Observation-vitals")
    resource["effectiveDateTime"] = "2026-06-01T10:00:00Z"
    label = {"code": code} if system is None else {"system": system, "code": code}
    resource["meta"]["security"] = [label]
    return resource


def test_the_six_spec_codes_and_42_cfr_part_2_are_sensitive() -> None:
    act_code = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert {"ETH", "HIV", "PSY", "SDV", "SEX", "STD", "42CFRPart2"} <= SENSITIVE_LABELS[act_code]


@pytest.mark.parametrize(
    ("system", "code"), LABELS, ids=[f"{s.rsplit('/', 1)[-1]}|{c}" for s, c in LABELS]
)
def test_each_sensitive_label_is_withheld_under_regular_and_shared_under_sensitive(
    system: str, code: str
) -> None:
    regular = resource_screen(
        _labelled(system, code), request_date=SAMPLES_AS_OF, policy=ConsentPolicy.REGULAR
    )
    everything = resource_screen(
        _labelled(system, code), request_date=SAMPLES_AS_OF, policy=ConsentPolicy.SENSITIVE
    )

    assert regular == Removed(RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT)
    assert isinstance(everything, Kept)


@pytest.mark.parametrize(
    "name", ["Observation-hiv-labelled", "Condition-eth-labelled", "Encounter-psy-labelled"]
)
def test_the_sandbox_labels_are_recognised(name: str) -> None:
    assert sensitive_label(sample(name)) is not None


def test_a_sensitive_code_without_a_system_is_withheld_under_regular() -> None:
    assert sensitive_label(_labelled(None, "HIV")) == "None|HIV"


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "N"),
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST"),
        ("http://example.org/local-labels", "HIV"),
    ],
)
def test_other_labels_do_not_make_a_resource_sensitive(system: str, code: str) -> None:
    assert isinstance(
        resource_screen(
            _labelled(system, code), request_date=SAMPLES_AS_OF, policy=ConsentPolicy.REGULAR
        ),
        Kept,
    )


def test_a_sensitive_resource_that_is_also_old_counts_as_sensitive() -> None:
    resource = _labelled("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY")
    resource["effectiveDateTime"] = "2010-01-01T10:00:00Z"

    assert resource_screen(
        resource, request_date=SAMPLES_AS_OF, policy=ConsentPolicy.REGULAR
    ) == Removed(RemovalReason.SENSITIVE_UNDER_REGULAR_CONSENT)
