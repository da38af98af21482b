"""Payer systems call the API with the hub's SMART Backend Services tokens: a scope per
capability, 401 without a live token of this hub, 403 without the operation's scope."""

from typing import Any

import pytest
from django.core import signing

from exchange.consents.endpoint import auth
from tests.api.payer_systems import ALL_SCOPES, PayerSystemClient, PayerSystems, token_response
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory, OptInRecordFactory

# Every operation, the scope it needs, and a call of it on North's objects.
OPERATIONS = [
    ("POST", "/api/v1/opt-ins", "hub/opt-ins.write"),
    ("GET", "/api/v1/opt-ins/{opt_in}", "hub/opt-ins.read"),
    ("POST", "/api/v1/opt-ins/{opt_in}/withdraw", "hub/opt-ins.write"),
    ("GET", "/api/v1/requests", "hub/requests.read"),
    ("GET", "/api/v1/requests/{request}", "hub/requests.read"),
    ("GET", "/api/v1/requests/{request}/deliveries", "hub/deliveries.read"),
]


def _call(client: Any, method: str, path: str) -> Any:
    return client.get(path) if method == "GET" else client.post(path, {})


@pytest.fixture
def norths_request(north: Tenant, south: Tenant) -> Any:
    opt_in = OptInRecordFactory(member=north.member)
    return ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer, opt_in_record=opt_in
    )


def _path(template: str, request: Any) -> str:
    return template.format(opt_in=request.opt_in_record_id, request=request.pk)


def test_the_token_endpoint_grants_the_api_scopes(north: Tenant, systems: PayerSystems) -> None:
    response = token_response(systems.key, "north", ALL_SCOPES)
    assert response.status_code == 200
    assert response.json()["scope"].split() == list(ALL_SCOPES)
    refused = token_response(systems.key, "north", ("hub/everything",))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(("method", "template", "scope"), OPERATIONS)
def test_without_a_token_every_operation_is_a_401_problem(
    norths_request: Any, method: str, template: str, scope: str
) -> None:
    response = _call(PayerSystemClient(token=""), method, _path(template, norths_request))
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("not-a-token", "not valid"),
        # Signed with this hub's key for another purpose: not an access token of the API.
        (signing.dumps({"payer": 1, "scopes": list(ALL_SCOPES)}), "not valid"),
    ],
)
def test_a_foreign_or_forged_token_is_a_401(norths_request: Any, token: str, says: str) -> None:
    response = PayerSystemClient(token=token).get("/api/v1/requests")
    assert response.status_code == 401
    assert says in response.json()["detail"]


def test_an_expired_token_is_a_401(
    north: Tenant, systems: PayerSystems, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = systems.client(north.payer)
    monkeypatch.setattr(auth, "ACCESS_TOKEN_SECONDS", -1)
    response = client.get("/api/v1/requests")
    assert response.status_code == 401
    assert response.json()["detail"] == "the access token has expired"


@pytest.mark.parametrize(("method", "template", "scope"), OPERATIONS)
def test_a_token_without_the_operations_scope_is_a_403_naming_it(
    north: Tenant,
    norths_request: Any,
    systems: PayerSystems,
    method: str,
    template: str,
    scope: str,
) -> None:
    others = tuple(s for s in ALL_SCOPES if s != scope)
    response = _call(systems.client(north.payer, others), method, _path(template, norths_request))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert scope in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "template"), [(method, path) for method, path, _ in OPERATIONS if "{" in path]
)
def test_another_payers_system_gets_404_for_every_object(
    north: Tenant,
    south: Tenant,
    norths_request: Any,
    systems: PayerSystems,
    method: str,
    template: str,
) -> None:
    # The request list: tests/api/test_requests.py shows it holds the caller's own only.
    response = _call(systems.client(south.payer), method, _path(template, norths_request))
    assert response.status_code == 404
    assert response.json()["title"] == "No such object"
    norths_request.refresh_from_db()
    assert norths_request.status == "consented"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here",
        "/api/v1/opt-ins/12x/withdraw",
        "/api/v1/requests/1234567890123456789",  # past PostgreSQL's bigint
        "/api/v1/opt-ins/7%0Ag/withdraw",  # an encoded newline
    ],
)
def test_any_other_path_is_a_404_problem_document(
    north: Tenant, systems: PayerSystems, path: str
) -> None:
    client = systems.client(north.payer)

    for method in ("GET", "POST"):
        response = _call(client, method, path)
        assert response.status_code == 404, (method, path)
        assert response["Content-Type"] == "application/problem+json", (method, path)
