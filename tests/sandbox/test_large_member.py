"""--large-member USERNAME=FACTOR: one member with a very large record, the others unchanged."""

from __future__ import annotations

import collections
import datetime as dt
import subprocess
import sys
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from sandbox.config import MAX_CARE_FACTOR, config_from_args
from sandbox.data.generator import member_resources
from sandbox.data.population import Population
from sandbox.fhir.resource_types import DIRECTORY_TYPES
from sandbox.organizations import payer_identity
from tests.sandbox.harness import (
    ROOT,
    SEED,
    BackendClient,
    current_consent,
    everything,
    matched_patient,
    running_sandbox,
)

AS_OF = dt.date(2026, 11, 23)
PLAN = "Large Record Plan"
NPI = "1777777771"


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(identity=payer_identity(PLAN), seed=SEED, size=10, as_of=AS_OF)


def _record(population: Population, username: str, care_factor: int = 1) -> list[dict[str, Any]]:
    member = population.by_username(username)
    assert member is not None
    return member_resources(
        identity=population.identity,
        member=member,
        seed=population.seed,
        as_of=population.as_of,
        care_factor=care_factor,
    )


def _by_type(resources: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(r["resourceType"] for r in resources)


def test_a_care_factor_multiplies_the_yearly_care_in_a_record(population: Population) -> None:
    typical = _record(population, "patricia.person")
    large = _record(population, "patricia.person", care_factor=10)

    assert len(large) > 6 * len(typical)
    for kind in ("Encounter", "ExplanationOfBenefit", "Observation"):
        assert _by_type(large)[kind] > 4 * _by_type(typical)[kind], kind
    # One Patient, one Coverage: still one member, just with more care.
    assert _by_type(large)["Patient"] == _by_type(large)["Coverage"] == 1
    assert len({(r["resourceType"], r["id"]) for r in large}) == len(large)
    # Claims and visits still span the whole coverage, older than five years included.
    starts = sorted(r["period"]["start"][:10] for r in large if r["resourceType"] == "Encounter")
    assert starts[0] < (AS_OF - dt.timedelta(days=5 * 365)).isoformat() < starts[-1]


def test_a_large_record_is_deterministic_and_valid_fhir(population: Population) -> None:
    first = _record(population, "patricia.person", care_factor=4)
    again = _record(population, "patricia.person", care_factor=4)

    assert first == again
    for resource in first[::25]:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_factor_one_is_the_ordinary_record(population: Population) -> None:
    member = population.by_username("patricia.person")
    assert member is not None
    default = member_resources(identity=population.identity, member=member, seed=SEED, as_of=AS_OF)

    assert _record(population, "patricia.person", care_factor=1) == default


def test_the_flag_parses_into_a_factor_per_member() -> None:
    config = config_from_args(
        ["--name", PLAN, "--port", "8101", "--large-member", "Patricia.Person=200",
         "--large-member", "casey.lee.a=3"]
    )  # fmt: skip

    assert config.care_factor("patricia.person") == 200
    assert config.care_factor("casey.lee.a") == 3
    assert config.care_factor("casey.lee.b") == 1


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("patricia.person", "not USERNAME=FACTOR"),
        ("=5", "not USERNAME=FACTOR"),
        ("patricia.person=lots", "is not a whole number"),
        ("patricia.person=0", f"must be between 1 and {MAX_CARE_FACTOR}"),
        (f"patricia.person={MAX_CARE_FACTOR + 1}", f"must be between 1 and {MAX_CARE_FACTOR}"),
    ],
)
def test_a_bad_flag_is_refused_with_the_reason(
    value: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        config_from_args(["--name", PLAN, "--port", "8101", "--large-member", value])

    assert complaint in capsys.readouterr().err


def test_a_member_named_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config_from_args(
            ["--name", PLAN, "--port", "8101", "--large-member", "patricia.person=2",
             "--large-member", "patricia.person=3"]
        )  # fmt: skip

    assert "given more than once" in capsys.readouterr().err


def test_an_unknown_member_stops_the_sandbox_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--name", PLAN, "--port", "1",
         "--members", "5", "--large-member", "nobody.here=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 2
    assert "no member of this sandbox signs in as nobody.here" in result.stderr


def _member_part(served: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Return the member's own resources of a $everything (not the directory entries cited)."""
    return [
        (r["resourceType"], r["id"]) for r in served if r["resourceType"] not in DIRECTORY_TYPES
    ]


def test_everything_serves_the_large_record_over_http_and_leaves_others_alone() -> None:
    # The consent below runs from yesterday, so the sandbox's today is the real one.
    today = dt.datetime.now(dt.UTC).date()
    with running_sandbox(
        PLAN, "--seed", SEED, "--members", "10", "--large-member", "patricia.person=6"
    ) as sandbox:
        members = {m["username"]: m for m in sandbox.member_list()["members"]}
        ordinary = next(u for u in members if not u.startswith(("patricia.", "casey.")))
        client = BackendClient(sandbox, NPI).register()
        with client.http() as http:
            consent = current_consent(recipient_npi=NPI)
            served = {
                username: everything(
                    http, matched_patient(http, members[username], consent), _count="500"
                )
                for username in ("patricia.person", ordinary)
            }

    population = Population(identity=payer_identity(PLAN), seed=SEED, size=10, as_of=today)
    large = _record(population, "patricia.person", care_factor=6)
    typical = _record(population, "patricia.person")

    assert _member_part(served["patricia.person"]) == _member_part(large)
    assert len(served["patricia.person"]) > 4 * len(typical)
    assert _member_part(served[ordinary]) == _member_part(_record(population, ordinary))
