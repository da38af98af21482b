"""The list pages and the plan-admin API's lists run a fixed number of queries, however
many rows they show: the same bound holds for 3 rows and for 30 (no query per row)."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db.models import Model, UniqueConstraint
from django.http import HttpResponse
from django.test import Client

from exchange.models import (
    Cohort,
    Consent,
    Delivery,
    DeliveryAttempt,
    ExchangeEvent,
    ExchangeRequest,
)
from hub.audit import audit_record
from hub.models import AuditEvent, OnboardingRequest, SigningKey
from plan_admin.api import router
from tests.conftest import Tenant
from tests.factories import (
    BulkJobFactory,
    CohortFactory,
    CohortMemberFactory,
    ConsentFactory,
    DeliveryAttemptFactory,
    DeliveryFactory,
    ExchangeEventFactory,
    ExchangeRequestFactory,
    FhirEndpointFactory,
    OnboardingRequestFactory,
    PayerFactory,
    PullScheduleFactory,
    SigningKeyFactory,
    UserFactory,
)

# Every page reads the session, the signed-in person and their payer before its own queries.
SIGNED_IN_QUERIES = 3
# Every plan-admin page also counts the requests due soon and overdue (its deadline alert).
ADMIN_PAGE_QUERIES = SIGNED_IN_QUERIES + 1
# The API's lists: the page's count (LimitOffsetPagination), then the page of rows.
API_LIST_QUERIES = SIGNED_IN_QUERIES + 2


def _request_at(north: Tenant, south: Tenant) -> ExchangeRequest:
    # Each request of another member, so that a list naming members reads each of them.
    member = UserFactory(payer=north.payer, first_name="Member", last_name="Of North")
    return ExchangeRequestFactory(consent__member=member, consent__former_payer=south.payer)


def _listed_payer(north: Tenant, south: Tenant) -> None:
    FhirEndpointFactory(payer=PayerFactory(states=["MN", "WI"], plan_types=["medicaid"]))
    OnboardingRequestFactory(requested_by=north.admin)


def _norths_cohort(north: Tenant, south: Tenant) -> Cohort:
    """North's one cohort of the cohort page's test, made with its first member."""
    cohort = Cohort.objects.for_payer(north.payer).first()
    return cohort or CohortFactory(payer=north.payer, former_payer=south.payer)


def _cohort_member_at(north: Tenant, south: Tenant) -> None:
    # Each member with a request, its own person, an export job and what was sent.
    cohort = _norths_cohort(north, south)
    job = BulkJobFactory(cohort=cohort, kind="data_export", files=[{"done": True}])
    CohortMemberFactory(
        cohort=cohort, export_job=job, exchange_request__status="no_match",
        submitted='{"name": "MemberBundle", "part": []}',
    )  # fmt: skip


def _cohort_of_ten_at(north: Tenant, south: Tenant) -> None:
    cohort = CohortFactory(payer=north.payer, former_payer=south.payer)
    for _ in range(10):
        CohortMemberFactory(cohort=cohort, exchange_request__status="delivered")


# How to add one more row of each kind the plan-admin API lists, at North.
ROW_MAKERS: dict[type[Model], Callable[[Tenant, Tenant], Any]] = {
    ExchangeRequest: _request_at,
    Consent: lambda n, s: ConsentFactory(member=n.member, former_payer=s.payer),
    ExchangeEvent: lambda n, s: ExchangeEventFactory(exchange_request=_request_at(n, s)),
    Delivery: lambda n, s: DeliveryFactory(exchange_request=_request_at(n, s)),
    DeliveryAttempt: lambda n, s: DeliveryAttemptFactory(
        delivery=DeliveryFactory(exchange_request=_request_at(n, s))
    ),
    OnboardingRequest: lambda n, s: OnboardingRequestFactory(requested_by=n.member),
    AuditEvent: lambda n, s: audit_record(action="test.touch", obj=n.payer, payer=n.payer),
    SigningKey: lambda n, s: SigningKeyFactory(payer=n.payer),
}


def _links(pattern: bytes) -> Callable[[HttpResponse], int]:
    return lambda response: len(re.findall(pattern, response.content))


def _api_count(response: HttpResponse) -> int:
    return int(response.json()["count"])


@dataclass(frozen=True)
class ListPage:
    # The page, or how to find it once the rows are made.
    url: str | Callable[[Tenant], str]
    reader: str  # which of North's people reads it: "member" or "admin"
    add_row: Callable[[Tenant, Tenant], Any]
    queries: int
    rows_shown: Callable[[HttpResponse], int]


def _one_per_payer(model: type[Model]) -> bool:
    """Return whether ``model`` holds at most one row per payer: its list cannot grow."""
    return any(
        isinstance(constraint, UniqueConstraint) and tuple(constraint.fields) == ("payer",)
        for constraint in model._meta.constraints
    )


PAGES = {
    "member request list": ListPage(
        "/p/north/me/requests/",
        "member",
        lambda n, s: ExchangeRequestFactory(
            consent__member=n.member, consent__former_payer=s.payer
        ),
        # The requests with their plans and consents, and the plans the member invited.
        SIGNED_IN_QUERIES + 2,
        _links(rb"/p/north/me/requests/\d+/"),
    ),
    # Its count, the filter form's former payers, the page of requests with members and payers.
    "plan-admin request list": ListPage(
        "/p/north/admin/requests/",
        "admin",
        _request_at,
        ADMIN_PAGE_QUERIES + 3,
        _links(rb"/p/north/admin/requests/\d+/"),
    ),
    # Its count and the page of cohorts, each with its members counted by status (grouped).
    "plan-admin cohort list": ListPage(
        "/p/north/admin/cohorts/",
        "admin",
        _cohort_of_ten_at,
        ADMIN_PAGE_QUERIES + 2,
        _links(rb"/p/north/admin/cohorts/\d+/"),
    ),
    # The cohort, its progress (members counted, resources summed, export files), its jobs
    # (and the match chunk each export serves), the members' count and their page with their
    # requests and people.
    "plan-admin cohort page": ListPage(
        lambda north: f"/p/north/admin/cohorts/{Cohort.objects.for_payer(north.payer).get().pk}/",
        "admin",
        _cohort_member_at,
        ADMIN_PAGE_QUERIES + 8,
        _links(rb"/p/north/admin/requests/\d+/"),
    ),
    # Its count, the filter form's payers, the page of schedules with members and payers.
    "plan-admin recurring pulls": ListPage(
        "/p/north/admin/recurring-pulls/",
        "admin",
        lambda n, s: PullScheduleFactory(
            consent__member=UserFactory(payer=n.payer), consent__former_payer=s.payer
        ),
        ADMIN_PAGE_QUERIES + 3,
        _links(rb'action="/p/north/admin/recurring-pulls/\d+/pause/"'),
    ),
    # The payers with their endpoints (one query, subqueries inside), the last delivery from
    # each (one grouped query), the onboarding requests.
    "plan-admin directory": ListPage(
        "/p/north/admin/directory/",
        "admin",
        _listed_payer,
        ADMIN_PAGE_QUERIES + 3,
        _links(rb"Endpoint registered"),
    ),
    **{
        f"API {prefix}": ListPage(
            f"/p/north/api/{prefix}/",
            "admin",
            ROW_MAKERS[viewset.model],
            API_LIST_QUERIES,
            _api_count,
        )
        for prefix, viewset, _ in router.registry
        if not _one_per_payer(viewset.model)
    },
}


@pytest.mark.parametrize("rows", [3, 30])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_list_runs_the_same_few_queries_for_3_rows_and_for_30(
    page: str, rows: int, north: Tenant, south: Tenant, django_assert_max_num_queries: Any
) -> None:
    spec = PAGES[page]
    for _ in range(rows):
        spec.add_row(north, south)
    client = Client()
    client.force_login(getattr(north, spec.reader))
    url = spec.url if isinstance(spec.url, str) else spec.url(north)
    with django_assert_max_num_queries(spec.queries):
        response = client.get(url)
    assert response.status_code == 200
    assert spec.rows_shown(response) == rows
