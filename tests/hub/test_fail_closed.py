"""Fail closed by construction: a query of tenant-owned rows that names no payer never runs
(hub/models/tenant_scope.py; STYLE.md #2)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, OuterRef, Prefetch

from exchange.models import Consent, Delivery, DeliveryAttempt, ExchangeEvent, ExchangeRequest
from hub.models import AuditEvent, FhirEndpoint, Payer, UnscopedTenantQuery
from tests.conftest import Tenant
from tests.factories import (
    DeliveryAttemptFactory,
    DeliveryFactory,
    ExchangeEventFactory,
    ExchangeRequestFactory,
    FhirEndpointFactory,
    SigningKeyFactory,
)

REQUESTS = ExchangeRequest.objects

# Every way Django reaches the database with a query set, each given an unscoped one.
EVALUATIONS: dict[str, Callable[[Any], object]] = {
    "iteration": list,
    "len": len,
    "bool": bool,
    "get": lambda qs: qs.get(pk=1),
    "first": lambda qs: qs.first(),
    "last": lambda qs: qs.last(),
    "slice": lambda qs: list(qs[:3]),
    "count": lambda qs: qs.count(),
    "exists": lambda qs: qs.exists(),
    "contains": lambda qs: qs.contains(ExchangeRequest._base_manager.first()),
    "aggregate": lambda qs: qs.aggregate(n=Count("pk")),
    "values": lambda qs: list(qs.values("pk")),
    "values_list": lambda qs: list(qs.values_list("pk", flat=True)),
    "iterator": lambda qs: list(qs.iterator()),
    "in_bulk": lambda qs: qs.in_bulk([1, 2]),
    "bulk_update": lambda qs: qs.bulk_update([ExchangeRequest._base_manager.first()], ["status"]),
    "update": lambda qs: qs.update(reason_code="x"),
    "delete": lambda qs: qs.delete(),
    "explain": lambda qs: qs.explain(),
    "latest": lambda qs: qs.latest("opted_in_at"),
    "get_or_create without the payer": lambda qs: qs.get_or_create(pk=1),
    "filter(pk__in=queryset)": lambda qs: list(Payer.objects.filter(pk__in=qs.values("payer"))),
    "Exists(subquery)": lambda qs: list(
        Payer.objects.filter(Exists(qs.filter(former_payer=OuterRef("pk"))))
    ),
    "union": lambda qs: list(qs.union(qs.filter(status="failed"))),
    "or": lambda qs: list(qs | qs.filter(status="failed")),
}


@pytest.mark.parametrize("evaluation", sorted(EVALUATIONS))
def test_an_unscoped_query_refuses_to_run(evaluation: str, north: Tenant, south: Tenant) -> None:
    ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    unscoped = REQUESTS.filter(status="consented")
    with pytest.raises(UnscopedTenantQuery, match=r"exchange\.ExchangeRequest rows belong"):
        EVALUATIONS[evaluation](unscoped)


@pytest.mark.parametrize(
    "evaluation", sorted(set(EVALUATIONS) - {"get", "get_or_create without the payer", "latest"})
)
def test_the_same_query_scoped_to_a_payer_runs(
    evaluation: str, north: Tenant, south: Tenant
) -> None:
    ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    EVALUATIONS[evaluation](REQUESTS.for_payer(north.payer))
    EVALUATIONS[evaluation](REQUESTS.across_payers(reason="a test of the mechanism"))


def test_for_payer_and_payer_filters_scope_a_query(north: Tenant, south: Tenant) -> None:
    norths = ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    souths = ExchangeRequestFactory(consent__member=south.member, consent__former_payer=north.payer)

    assert list(REQUESTS.for_payer(north.payer)) == [norths]
    assert list(REQUESTS.for_payer(south.payer.pk)) == [souths]
    assert list(REQUESTS.filter(payer=north.payer)) == [norths]
    assert list(REQUESTS.filter(payer_id=south.payer.pk, status="consented")) == [souths]
    assert list(REQUESTS.filter(payer__in=[north.payer.pk])) == [norths]
    # Two branches of one payer are still that payer's rows; a search within it is too.
    assert REQUESTS.for_payer(north.payer).filter(pk=norths.pk).get() == norths
    assert list(REQUESTS.for_payer(north.payer) | REQUESTS.for_payer(north.payer)) == [norths]
    assert REQUESTS.none().count() == 0
    assert REQUESTS.get_or_create(payer=north.payer, pk=norths.pk)[0] == norths


@pytest.mark.parametrize(
    "query",
    [
        lambda n, s: REQUESTS.filter(payer__in=[n.payer.pk, s.payer.pk]),
        lambda n, s: REQUESTS.exclude(payer=n.payer),
        lambda n, s: REQUESTS.for_payer(n.payer) | REQUESTS.for_payer(s.payer),
        lambda n, s: REQUESTS.filter(consent__payer=n.payer),
        lambda n, s: REQUESTS.filter(payer=n.payer) | REQUESTS.filter(status="failed"),
        lambda n, s: REQUESTS.filter(payer__slug="north"),
        lambda n, s: REQUESTS.filter(payer_id__gte=n.payer.pk),
    ],
    ids=["two payers", "exclude", "or of two payers", "another table's payer", "or", "slug", "gte"],
)
def test_what_does_not_limit_the_rows_to_one_payer_is_not_a_scope(
    query: Callable[[Tenant, Tenant], Any], north: Tenant, south: Tenant
) -> None:
    with pytest.raises(UnscopedTenantQuery):
        list(query(north, south))


def test_across_payers_needs_a_reason(db: None) -> None:
    for reason in ("", "   "):
        with pytest.raises(ValueError, match="needs a reason"):
            REQUESTS.across_payers(reason=reason)
    with pytest.raises(TypeError):
        REQUESTS.across_payers()
    with pytest.raises(ValueError, match="not None"):
        REQUESTS.for_payer(Payer())


def test_a_cross_payer_read_returns_every_payers_rows_and_keeps_its_mark(
    north: Tenant, south: Tenant
) -> None:
    norths = ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    souths = ExchangeRequestFactory(consent__member=south.member, consent__former_payer=north.payer)
    marked = REQUESTS.across_payers(reason="the test reads both payers")

    assert set(marked) == {norths, souths}
    assert marked.filter(status="consented").order_by("pk").count() == 2
    assert marked.filter(pk=souths.pk).update(reason_code="checked") == 1
    # OR with an unmarked, unscoped query drops the mark: those rows were never allowed.
    with pytest.raises(UnscopedTenantQuery):
        list(marked | REQUESTS.filter(status="failed"))


def test_reverse_relations_and_prefetches_of_a_loaded_row_are_scoped(
    north: Tenant, south: Tenant
) -> None:
    attempt: DeliveryAttempt = DeliveryAttemptFactory(
        delivery=DeliveryFactory(
            exchange_request=ExchangeRequestFactory(
                consent__member=north.member, consent__former_payer=south.payer
            )
        )
    )
    delivery = Delivery.objects.for_payer(north.payer).get()
    consent = Consent.objects.for_payer(north.payer).get()
    ExchangeEventFactory(exchange_request=attempt.delivery.exchange_request)

    assert list(delivery.attempts.all()) == [attempt]
    assert consent.exchange_requests.count() == 1
    assert list(consent.exchange_requests.select_for_update().exclude(status="failed"))
    requests = REQUESTS.for_payer(north.payer).prefetch_related("events", "consent")
    assert [len(r.events.all()) for r in requests] == [1]
    # exclude() across a to-many relation is a subquery correlated with the scoped query.
    assert REQUESTS.for_payer(north.payer).exclude(events__message="nothing").count() == 1
    # A Prefetch's own query set is filtered to the loaded rows' children by Django.
    prefetched = Delivery.objects.for_payer(north.payer).prefetch_related(
        Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("-started_at"))
    )
    assert [list(d.attempts.all()) for d in prefetched] == [[attempt]]
    # A filter on the relation's column with an id from elsewhere is not a relation, nor is
    # a row built by hand around such an id.
    request_id = attempt.delivery.exchange_request_id
    with pytest.raises(UnscopedTenantQuery):
        list(ExchangeEvent.objects.filter(exchange_request_id=request_id))
    with pytest.raises(UnscopedTenantQuery):
        list(ExchangeRequest(pk=request_id).events.all())


def test_a_subquery_must_be_scoped_or_marked_too(north: Tenant) -> None:
    FhirEndpointFactory(payer=north.payer)
    endpoints = FhirEndpoint.objects.filter(payer=OuterRef("pk"))
    with pytest.raises(UnscopedTenantQuery):
        list(Payer.objects.annotate(has_endpoint=Exists(endpoints)))
    marked = endpoints.across_payers(reason="the directory shows which payers have endpoints")
    assert Payer.objects.filter(Exists(marked)).get() == north.payer


def test_printing_an_unscoped_query_reads_nothing_and_is_allowed(db: None) -> None:
    assert "exchange_exchangerequest" in str(REQUESTS.filter(status="failed").query)


def test_refresh_and_forward_relations_use_the_base_manager(north: Tenant, south: Tenant) -> None:
    delivery = DeliveryFactory(
        exchange_request=ExchangeRequestFactory(
            consent__member=north.member, consent__former_payer=south.payer
        )
    )
    event = ExchangeEventFactory(exchange_request=delivery.exchange_request)
    event.refresh_from_db()
    loaded = ExchangeEvent.objects.for_payer(north.payer).get()
    # Django follows a foreign key, and a one-to-one backwards, with the base manager.
    assert loaded.exchange_request.consent.payer == north.payer
    assert loaded.exchange_request.delivery == delivery


def test_model_validation_is_scoped_to_the_rows_payer(north: Tenant, south: Tenant) -> None:
    endpoint = FhirEndpointFactory(payer=north.payer)
    endpoint.full_clean()  # an existing row: Django checks its primary key is unique
    with pytest.raises(ValidationError, match="Fhir endpoint with this Payer already exists"):
        FhirEndpointFactory.build(payer=north.payer).full_clean()
    FhirEndpointFactory.build(payer=south.payer).full_clean()

    attempt: DeliveryAttempt = DeliveryAttemptFactory(
        delivery__exchange_request__consent__member=north.member,
        delivery__exchange_request__consent__former_payer=south.payer,
    )
    twin = DeliveryAttempt(
        payer=north.payer,
        delivery=attempt.delivery,
        task_id=attempt.task_id,
        started_at=attempt.started_at,
    )
    with pytest.raises(ValidationError, match="with this Delivery and Task id already exists"):
        twin.full_clean(exclude={"payer"})

    # A kid is unique on the whole table; validation looks only within the row's payer
    # and tells nobody that South holds that kid (the database refuses the clash).
    souths_key = SigningKeyFactory(payer=south.payer)
    SigningKeyFactory.build(payer=north.payer, kid=souths_key.kid).validate_unique()
    with pytest.raises(ValidationError, match="Signing key with this Kid already exists"):
        SigningKeyFactory.build(payer=south.payer, kid=souths_key.kid).validate_unique()


def test_the_audit_log_fails_closed_too(north: Tenant) -> None:
    from hub.audit import audit_record

    audit_record(action="test.touch", obj=north.payer, payer=north.payer)
    with pytest.raises(UnscopedTenantQuery, match=r"hub\.AuditEvent"):
        AuditEvent.objects.filter(action="test.touch").exists()
    assert AuditEvent.objects.for_payer(north.payer).filter(action="test.touch").exists()
    assert AuditEvent.objects.across_payers(reason="every event of the test").count() == 1
