"""A holder's Patient ids: a FHIR id or none (exchange/fhir/ids.py, FHIR R4 §2.24.0.1)."""

import pytest

from exchange.fhir.ids import resource_id
from exchange.member_match import patient_id_of


@pytest.mark.parametrize(
    ("reference", "patient_id"),
    [
        ("Patient/p-1.2", "p-1.2"),
        ("https://fhir.south.example/r4/Patient/A9", "A9"),
        ("Patient/" + "a" * 64, "a" * 64),
        ("Patient/" + "a" * 65, ""),  # longer than an id
        ("Patient/p 1", ""),  # a space
        ("Patient/p%2F1", ""),  # an escaped slash
        ("Patient/pé", ""),  # not ASCII
        ("Patient/", ""),
        ("Group/g-1", ""),
    ],
)
def test_a_reference_gives_the_patient_id_only_when_it_is_a_fhir_id(
    reference: str, patient_id: str
) -> None:
    assert patient_id_of(reference) == patient_id


@pytest.mark.parametrize("value", [None, 42, ["p-1"], {"id": "p-1"}, "", "a/b", "x" * 65])
def test_anything_but_an_id_is_no_id(value: object) -> None:
    assert resource_id(value) == ""
