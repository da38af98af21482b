"""A payer system follows its requests: the list (cursor pages, filters), each request's
state and timeline, its deliveries' files; another payer's are never among them."""

from typing import Any

import pytest

from exchange.models import ExchangeStatus
from hub.audit import audit_record
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant
from tests.factories import (
    DeliveryFactory,
    ExchangeEventFactory,
    ExchangeRequestFactory,
    UserFactory,
)

pytestmark = pytest.mark.usefixtures("south_holds_records", "west")


def test_the_request_list_holds_the_callers_own_only_newest_first_in_cursor_pages(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    north_system = systems.client(north.payer)
    north_system.post("/api/v1/opt-ins", opt_in_body())
    souths = ExchangeRequestFactory(consent__member=south.member, consent__former_payer=north.payer)

    first = north_system.get("/api/v1/requests", page_size=1)
    assert first.status_code == 200
    assert [r["former_payer"]["slug"] for r in first.json()["results"]] == ["west"]
    second = north_system.get(first.json()["next"])
    assert [r["former_payer"]["slug"] for r in second.json()["results"]] == ["south"]
    assert second.json()["next"] is None

    south_sees = systems.client(south.payer).get("/api/v1/requests").json()["results"]
    assert [r["id"] for r in south_sees] == [souths.pk]


@pytest.mark.parametrize(
    ("filters", "slugs"),
    [
        ({"former_payer": "west"}, ["west"]),
        ({"former_payer": "1245319599"}, ["south"]),
        ({"member_id": "NSH-000042"}, ["west", "south"]),
        ({"member_id": "NSH-999999"}, []),
        ({"status": "consented"}, ["west", "south"]),
        ({"status": "delivered"}, []),
    ],
)
def test_the_request_list_filters(
    north: Tenant, systems: PayerSystems, filters: dict[str, str], slugs: list[str]
) -> None:
    client = systems.client(north.payer)
    client.post("/api/v1/opt-ins", opt_in_body())
    # Another member's request, cancelled, from a payer of its own: filtered out every time.
    ExchangeRequestFactory(
        consent__member=UserFactory(payer=north.payer, plan_member_id="NSH-7"),
        status=ExchangeStatus.CANCELLED,
    )
    response = client.get("/api/v1/requests", **filters)
    assert response.status_code == 200
    found = [r["former_payer"]["slug"] for r in response.json()["results"]]
    assert found == slugs


def test_a_bad_filter_is_a_problem_naming_it(north: Tenant, systems: PayerSystems) -> None:
    response = systems.client(north.payer).get("/api/v1/requests", status="lost")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "status"


def test_a_request_shows_its_state_dates_reason_and_timeline(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    request = ExchangeRequestFactory(
        consent__member=north.member,
        consent__former_payer=south.payer,
        status=ExchangeStatus.FAILED,
        reason_code="no_match",
        reason_message="Southern Cross Health found no member with that card.",
    )
    ExchangeEventFactory(exchange_request=request, message="Asked Southern Cross Health.")
    answer = systems.client(north.payer).get(f"/api/v1/requests/{request.pk}").json()
    assert answer["status"] == "failed"
    assert answer["reason"] == {
        "code": "no_match",
        "message": "Southern Cross Health found no member with that card.",
    }
    assert [e["message"] for e in answer["events"]] == ["Asked Southern Cross Health."]
    assert answer["opt_in"] is None
    assert {"due_by", "opted_in_at", "status_changed_at", "coverage_start"} <= set(answer)


def test_deliveries_list_each_file_with_its_path_size_and_sha256(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    request = ExchangeRequestFactory(
        consent__member=north.member,
        consent__former_payer=south.payer,
        status=ExchangeStatus.DELIVERED,
    )
    files = [
        {"path": f"incoming/south/{request.pk}/bundle.json", "size": 1234, "sha256": "ab" * 32},
        {"path": f"incoming/south/{request.pk}/manifest.json", "size": 99, "sha256": "cd" * 32},
    ]
    delivery = DeliveryFactory(
        exchange_request=request, remote_directory=f"incoming/south/{request.pk}"
    )
    delivery.delivered_at = delivery.created_at
    delivery.save()
    audit_record(
        action="exchange_request.deliver",
        obj=request,
        payer=north.payer,
        changes={"files": files, "status": {"before": "delivering", "after": "delivered"}},
    )
    response = systems.client(north.payer).get(f"/api/v1/requests/{request.pk}/deliveries")
    assert response.status_code == 200
    (answer,) = response.json()
    assert answer["files"] == files
    assert answer["remote_directory"] == f"incoming/south/{request.pk}"


def test_a_request_not_yet_delivered_has_no_deliveries(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    request: Any = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer
    )
    response = systems.client(north.payer).get(f"/api/v1/requests/{request.pk}/deliveries")
    assert response.json() == []
