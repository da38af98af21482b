"""Two sandboxes started with one seed share people: movers with fitting periods, concurrent members."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox


@pytest.fixture(scope="module")
def new_payer() -> Iterator[RunningSandbox]:
    """Run the new payer on the former payer's seed."""
    with running_sandbox(NEW, "--seed", SEED, "--members", "40", "--peer", FORMER) as sandbox:
        yield sandbox


def by_person(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    return {
        m["person"]: m
        for m in sandbox.member_list()["members"]
        if m["person"].startswith("person-0")
    }


def test_movers_coverage_ends_at_the_former_payer_the_day_before_it_starts_at_the_new(
    former_payer: RunningSandbox, new_payer: RunningSandbox
) -> None:
    former, new = by_person(former_payer), by_person(new_payer)
    shared = former.keys() & new.keys()
    movers = [p for p in shared if former[p]["role"] == "former" and new[p]["role"] == "new"]

    assert len(shared) >= 15
    assert movers
    for person in movers:
        old, current = former[person], new[person]
        ended = dt.date.fromisoformat(old["coverage_end"])
        assert dt.date.fromisoformat(current["coverage_start"]) == ended + dt.timedelta(days=1)
        assert (old["family"], old["given"], old["birth_date"]) == (
            current["family"],
            current["given"],
            current["birth_date"],
        )
        assert old["card_number"] != current["card_number"]
        assert current["came_from"] == [FORMER]
        assert old["moved_to"] == [NEW]


def test_some_people_are_covered_by_both_at_once(
    former_payer: RunningSandbox, new_payer: RunningSandbox
) -> None:
    former, new = by_person(former_payer), by_person(new_payer)
    concurrent = [
        p
        for p in former.keys() & new.keys()
        if former[p]["coverage_end"] is None and new[p]["coverage_end"] is None
    ]

    assert concurrent
    assert all(NEW in former[p]["concurrent_with"] for p in concurrent)


def test_each_payer_has_its_own_organization_identifiers(
    former_payer: RunningSandbox, new_payer: RunningSandbox
) -> None:
    former_ids = former_payer.member_list()["payer"]["identifiers"]
    new_ids = new_payer.member_list()["payer"]["identifiers"]
    payer_org = httpx.get(f"{new_payer.base}/sandbox/members.json").json()["payer"]

    assert former_ids != new_ids
    assert {i["system"] for i in new_ids} == {
        "http://hl7.org/fhir/sid/us-npi",
        "urn:oid:2.16.840.1.113883.6.300",
    }
    assert payer_org["fhir_base"] == new_payer.fhir
