"""A payer system cannot make the hub guess at a former payer either: the opt-in past the
member's limit is a 429 problem document saying when to send it again (issue 15)."""

from typing import Any

import pytest

from exchange.models import ExchangeRequest
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant

pytestmark = pytest.mark.usefixtures("south_holds_records", "west")


def test_the_opt_in_past_the_members_limit_is_a_429_problem_and_records_nothing(
    north: Tenant, south: Tenant, systems: PayerSystems, settings: Any
) -> None:
    settings.MEMBER_MATCH_REQUESTS_PER_MEMBER = 1
    client = systems.client(north.payer)
    first = client.post("/api/v1/opt-ins", opt_in_body())
    assert first.status_code == 201, first.json()
    assert client.post(first.json()["links"]["withdraw"]).status_code == 200
    before = ExchangeRequest.objects.for_payer(north.payer).count()

    again = client.post("/api/v1/opt-ins", opt_in_body())

    assert again.status_code == 429
    assert again["Content-Type"] == "application/problem+json"
    wait = int(again["Retry-After"])
    assert 0 < wait <= 24 * 3600
    problem = again.json()
    assert (problem["status"], problem["title"]) == (429, "Too many requests")
    assert "looked for at Southern Cross Health 1 times within 24 hours" in problem["detail"]
    assert "send the opt-in again in " in problem["detail"]
    assert problem["detail"].endswith("Nothing was recorded.")
    assert [e["field"] for e in problem["errors"]] == ["previous_payers[0]"]
    assert ExchangeRequest.objects.for_payer(north.payer).count() == before

    # South's system, opting in its own member with the same member id, is not held back.
    body = opt_in_body(previous_payers=[])
    assert systems.client(south.payer).post("/api/v1/opt-ins", body).status_code == 201
