"""Two opt-ins of one new member posted at the same moment, each in its own transaction on its
own connection to the real database: neither is a server error. Naming the same payers, the
second is a 409 naming them; naming different payers, both are taken for one member."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from exchange import enrollment
from exchange.models import ExchangeRequest, OptInRecord
from hub.models import Payer, Role, User
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystemClient, PayerSystems
from tests.conftest import Tenant

pytestmark = pytest.mark.usefixtures(
    "transactional_db", "empty_broker", "south_holds_records", "west"
)


def _at_once(monkeypatch: pytest.MonkeyPatch, posts: list[Callable[[], Any]]) -> list[Any]:
    """Run ``posts`` in threads that have each looked for the member and found none before
    any of them creates it: the race, every time rather than now and then."""
    barrier = threading.Barrier(len(posts), timeout=30)
    usernames_free = enrollment._usernames_free

    def usernames_free_then_wait(**kwargs: Any) -> dict[str, str]:
        usernames = usernames_free(**kwargs)
        if kwargs["member_ids"]:
            barrier.wait()
        return usernames

    monkeypatch.setattr(enrollment, "_usernames_free", usernames_free_then_wait)
    answers: list[Any] = [None] * len(posts)

    def run(index: int) -> None:
        try:
            answers[index] = posts[index]()
        finally:
            connection.close()  # each thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def _members(payer: Payer) -> list[User]:
    return list(User.objects.filter(payer=payer, role=Role.MEMBER, plan_member_id="NSH-000042"))


def test_the_same_opt_in_posted_twice_at_once_is_taken_once_and_the_other_is_a_409(
    north: Tenant, systems: PayerSystems, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: PayerSystemClient = systems.client(north.payer)
    first, second = _at_once(
        monkeypatch,
        [lambda: client.post("/api/v1/opt-ins", opt_in_body()) for _ in range(2)],
    )

    assert sorted([first.status_code, second.status_code]) == [201, 409]
    conflict = first if first.status_code == 409 else second
    assert conflict["Content-Type"] == "application/problem+json"
    problem = conflict.json()
    assert {e["field"] for e in problem["errors"]} == {
        "previous_payers[0].payer",
        "concurrent_payers[0].payer",
    }
    assert all("already open" in e["message"] for e in problem["errors"])
    # One member, one opt-in, one request per payer: nothing of the second.
    (member,) = _members(north.payer)
    assert OptInRecord.objects.for_payer(north.payer).get().member == member
    assert ExchangeRequest.objects.for_payer(north.payer).filter(member=member).count() == 2


def test_opt_ins_of_one_new_member_naming_different_payers_are_both_taken(
    north: Tenant,
    south: Tenant,
    west: Payer,
    systems: PayerSystems,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = systems.client(north.payer)
    only_south = opt_in_body(concurrent_payers=[])
    only_west = opt_in_body(previous_payers=[])
    first, second = _at_once(
        monkeypatch,
        [
            lambda: client.post("/api/v1/opt-ins", only_south),
            lambda: client.post("/api/v1/opt-ins", only_west),
        ],
    )

    assert (first.status_code, second.status_code) == (201, 201), (first.json(), second.json())
    (member,) = _members(north.payer)
    requests = ExchangeRequest.objects.for_payer(north.payer).filter(member=member)
    assert {r.former_payer for r in requests} == {south.payer, west}
    assert OptInRecord.objects.for_payer(north.payer).filter(member=member).count() == 2


def test_another_payer_s_client_cannot_see_the_opt_in_taken(
    north: Tenant, south: Tenant, systems: PayerSystems, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = systems.client(north.payer)
    answers = _at_once(
        monkeypatch, [lambda: client.post("/api/v1/opt-ins", opt_in_body()) for _ in range(2)]
    )
    (taken,) = [answer.json() for answer in answers if answer.status_code == 201]
    other = systems.client(south.payer)
    assert other.get(f"/api/v1/opt-ins/{taken['id']}").status_code == 404
    assert other.get(f"/api/v1/requests/{taken['requests'][0]['id']}").status_code == 404


def test_two_cohorts_of_the_same_new_members_posted_at_once_are_both_taken(
    north: Tenant, systems: PayerSystems, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = systems.client(north.payer)
    members = [
        {
            "member_id": f"NSH-4000{n}",
            "family_name": "Person",
            "given_names": "Pat",
            "birth_date": "1980-01-0" + str(n),
            "gender": "unknown",
            "former_member_id": f"SCH-{n}",
            "former_coverage_start": "2020-01-01",
            "former_coverage_end": "2024-12-31",
            "new_coverage_start": "2025-01-01",
            "consent": "everything",
            "opted_in_at": "2024-12-01T10:00:00Z",
        }
        for n in (1, 2, 3)
    ]
    body = {"former_payer": "south", "members": members}
    answers = _at_once(
        monkeypatch, [lambda: client.post("/api/v1/cohorts", body) for _ in range(2)]
    )

    assert [answer.status_code for answer in answers] == [201, 201]
    users = User.objects.filter(
        payer=north.payer, role=Role.MEMBER, plan_member_id__startswith="NSH-4000"
    )
    assert users.count() == 3
    assert ExchangeRequest.objects.for_payer(north.payer).filter(member__in=users).count() == 6
