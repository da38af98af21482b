"""Retrieval from running sandbox payers: whole records, resumption, fallbacks and faults."""

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from exchange.fhir.errors import FhirPermanentError, FhirTransientError
from exchange.member_match import member_match_run
from exchange.models import AuthorizationMode, ExchangeRequest, ExchangeStatus, HolderRegistration
from exchange.payloads.storage import LocalPayloadStorage
from exchange.request_stopped import RequestStopped
from exchange.retrieval import RetrievalResult, records_retrieve
from exchange.screening import (
    ScreeningRun,
    screening_complete,
    screening_result_read,
    screening_run,
)
from exchange.smart.access import token_provider_for
from exchange.smart.member_launch import member_launch_begin, member_launch_complete
from tests.conftest import Tenant
from tests.exchange.holder_proxy import HolderProxy, holder_proxy, on_path
from tests.exchange.holders import (
    Key,
    former_payer_of,
    keys_of,
    member_request,
    ordinary_member,
    sandbox_record,
    staged_resources,
)
from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox
from tests.support.sandbox_sign_in import sandbox_sign_in

PAGE = 15
CALLBACK = "http://127.0.0.1:8000/p/north/me/authorizations/callback"


def start(*faults: str) -> Any:
    args = ["--seed", SEED, "--members", "8", "--peer", NEW]
    return running_sandbox(FORMER, *args, *(["--faults", ",".join(faults)] if faults else []))


@pytest.fixture(scope="module")
def holder() -> Iterator[RunningSandbox]:
    with start() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def member(holder: RunningSandbox) -> dict[str, Any]:
    return ordinary_member(holder, 1)


@pytest.fixture(scope="module")
def expected(holder: RunningSandbox, member: dict[str, Any]) -> list[Key]:
    """The sandbox's own $everything of the member, under a #sensitive consent to North."""
    return sandbox_record(holder, npi="1234567893", member=member)


@pytest.fixture
def storage(tmp_path: Any) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path)


def matched(
    tenant: Tenant, sandbox: RunningSandbox, member: dict[str, Any], **kw: Any
) -> ExchangeRequest:
    request = member_request(
        tenant=tenant, former_payer=former_payer_of(sandbox, **kw), member=member
    )
    assert member_match_run(exchange_request=request).patient_id == member["patient_id"]
    return request


def retrieve_like_celery(
    request: ExchangeRequest, storage: LocalPayloadStorage
) -> tuple[RetrievalResult, list[float]]:
    """Retry transient errors as the task would (without the countdown); return the result
    and every retry_after the errors carried."""
    carried: list[float] = []
    for _ in range(20):
        try:
            return records_retrieve(
                exchange_request=request, storage=storage, page_size=PAGE
            ), carried
        except FhirTransientError as exc:
            assert exc.retry_after is not None
            carried.append(exc.retry_after)
    raise AssertionError("retrieval never completed")


def assert_whole_record(
    result: RetrievalResult, storage: LocalPayloadStorage, expected: list[Key]
) -> None:
    staged = keys_of(staged_resources(storage, result.page_names))
    assert Counter(staged).most_common(1)[0][1] == 1, "a resource was staged twice"
    assert sorted(staged) == sorted(expected)
    assert result.resource_counts == dict(Counter(t for t, _ in expected))
    assert result.complete


def test_everything_is_staged_page_by_page_exactly_once(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
) -> None:
    request = matched(hub, holder, member)
    progress: list[int] = []

    result = records_retrieve(
        exchange_request=request,
        storage=storage,
        page_size=PAGE,
        on_progress=lambda r: progress.append(r.resources),
    )

    assert result.mode == "everything"
    assert result.pages == -(-len(expected) // PAGE) > 2
    assert result.page_names[0] == f"requests/{request.pk}/staging/00001.ndjson"
    assert storage.list(f"requests/{request.pk}/staging") == result.page_names
    assert_whole_record(result, storage, expected)
    assert (
        progress == sorted(progress)
        and progress[-1] == len(expected)
        and len(progress) == result.pages
    )
    request.refresh_from_db()
    assert request.resource_counts == result.resource_counts
    assert request.retrieval_cursor["done"] is True
    # A finished retrieval asked again fetches nothing and answers the same.
    again = records_retrieve(exchange_request=request, storage=storage)
    assert (again.pages, again.resource_counts) == (result.pages, result.resource_counts)


def test_a_member_authorized_retrieval_uses_the_members_token(
    north: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
) -> None:
    request = member_request(
        tenant=north,
        former_payer=former_payer_of(holder),
        member=member,
        mode=AuthorizationMode.MEMBER_AUTHORIZED,
    )
    location = sandbox_sign_in(
        member_launch_begin(exchange_request=request, redirect_uri=CALLBACK), member["username"]
    )
    callback = dict(part.split("=", 1) for part in location.split("?", 1)[1].split("&"))
    request = member_launch_complete(
        payer=north.payer,
        member=north.member,
        state=callback["state"],
        code=callback["code"],
        redirect_uri=CALLBACK,
    )

    result = records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert_whole_record(result, storage, expected)


class WorkerKilled(Exception):
    pass


def test_a_restarted_retrieval_resumes_without_fetching_staged_pages_again(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
) -> None:
    request = matched(hub, holder, member)

    def die_after_two_pages(progress: RetrievalResult) -> None:
        if progress.pages == 2:
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        records_retrieve(
            exchange_request=request,
            storage=storage,
            page_size=PAGE,
            on_progress=die_after_two_pages,
        )
    staged = storage.list(f"requests/{request.pk}/staging")
    assert len(staged) == 2
    files_before = {name: storage.path(name).stat().st_ino for name in staged}

    request = ExchangeRequest.objects.for_payer(request.payer_id).get(pk=request.pk)
    result = records_retrieve(exchange_request=request, storage=storage)

    assert_whole_record(result, storage, expected)
    # The two pages staged before the restart are the very same files.
    assert {name: storage.path(name).stat().st_ino for name in staged} == files_before


def without_everything(body: bytes) -> bytes:
    statement = json.loads(body)
    for rest in statement["rest"]:
        for resource in rest["resource"]:
            resource["operation"] = [
                op for op in resource.get("operation", []) if op["name"] != "everything"
            ]
    return json.dumps(statement).encode()


def test_without_everything_the_types_the_capability_statement_lists_are_searched(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
) -> None:
    with holder_proxy(holder) as proxy:
        proxy.rewrites.append(on_path("/fhir/metadata", without_everything))
        request = matched(hub, holder, member, base_url=proxy.fhir)

        result = records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert result.mode == "search"
    paths = [path for _, path, _ in proxy.received]
    assert not any("$everything" in path for path in paths)
    assert any(path.startswith("/fhir/Condition?patient=") for path in paths)
    assert not any(path.startswith("/fhir/Consent") for path in paths)
    # Searches by patient reach everything but the directory entries $everything adds.
    record = [key for key in expected if key[0] not in ("Practitioner", "Organization")]
    assert_whole_record(result, storage, record)


def test_a_next_link_back_to_an_earlier_page_is_refused(
    hub: Tenant, holder: RunningSandbox, member: dict[str, Any], storage: LocalPayloadStorage
) -> None:
    with holder_proxy(holder) as proxy:
        # The third page sends the hub back to the second: A -> B -> C -> B.
        proxy.rewrites.append(
            on_path(
                f"_offset={2 * PAGE}",
                lambda body: body.replace(
                    f"_offset={3 * PAGE}".encode(), f"_offset={PAGE}".encode()
                ),
            )
        )
        request = matched(hub, holder, member, base_url=proxy.fhir)

        with pytest.raises(FhirPermanentError) as refused:
            records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert refused.value.code == "paging_loop"
    assert "links back to a page it already sent" in refused.value.message
    assert len([p for _, p, _ in proxy.received if "$everything" in p]) == 3


def test_a_next_link_off_the_holders_base_is_refused(
    hub: Tenant, holder: RunningSandbox, member: dict[str, Any], storage: LocalPayloadStorage
) -> None:
    with holder_proxy(holder) as proxy:
        proxy.rewrites.append(
            on_path(
                "$everything",
                lambda body: body.replace(
                    f"{proxy.fhir}/Patient".encode(), b"http://127.0.0.1:9/fhir/Patient"
                ),
            )
        )
        request = matched(hub, holder, member, base_url=proxy.fhir)

        with pytest.raises(FhirPermanentError) as refused:
            records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert refused.value.code == "foreign_link"
    assert "outside its FHIR base" in refused.value.message
    assert storage.list(f"requests/{request.pk}/staging") == []


def break_second_page(proxy: HolderProxy, breaker: Any) -> None:
    proxy.rewrites.append(on_path(f"_offset={PAGE}", breaker))


@pytest.mark.parametrize(
    ("breaker", "code", "words"),
    [
        (lambda body: body[:-20], "malformed_json", "sent malformed JSON"),
        (
            lambda body: body.replace(b'"type":"searchset"', b'"type":"collection"'),
            "wrong_bundle_type",
            "a Bundle of type 'collection' where a search result (searchset) was expected",
        ),
        (
            lambda body: body.replace(b'"resourceType":"Bundle"', b'"resourceType":"Basic"', 1),
            "wrong_resource_type",
            "sent a Basic where a Bundle was expected",
        ),
    ],
)
def test_a_broken_page_fails_permanently_naming_the_problem(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    storage: LocalPayloadStorage,
    breaker: Any,
    code: str,
    words: str,
) -> None:
    with holder_proxy(holder) as proxy:
        break_second_page(proxy, breaker)
        request = matched(hub, holder, member, base_url=proxy.fhir)

        with pytest.raises(FhirPermanentError) as refused:
            records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert refused.value.code == code
    assert refused.value.message.startswith("Former Health Plan's server")
    assert words in refused.value.message
    # The good first page stays staged; nothing of the broken one is.
    assert storage.list(f"requests/{request.pk}/staging") == [
        f"requests/{request.pk}/staging/00001.ndjson"
    ]


def test_a_withdrawn_request_stops_after_the_current_page(
    hub: Tenant, holder: RunningSandbox, member: dict[str, Any], storage: LocalPayloadStorage
) -> None:
    request = matched(hub, holder, member)

    def withdraw(progress: RetrievalResult) -> None:
        ExchangeRequest.objects.for_payer(request.payer_id).filter(pk=request.pk).update(
            status=ExchangeStatus.REVOKED
        )

    with pytest.raises(RequestStopped, match="cancelled or withdrawn"):
        records_retrieve(
            exchange_request=request, storage=storage, page_size=PAGE, on_progress=withdraw
        )

    assert len(storage.list(f"requests/{request.pk}/staging")) == 2


@pytest.mark.parametrize("status", ["429", "503"])
def test_throttling_and_outages_are_waited_out_honouring_retry_after(
    hub: Tenant,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
    status: str,
) -> None:
    # The seeded dice (sandbox/faults.py FaultDice) let $member-match through and give the
    # retrieval's requests two faults in a row; each costs a second's wait.
    with start(f"{status}=0.15", "retry-after=1s") as faulty:
        request = matched(hub, faulty, member)
        result, carried = retrieve_like_celery(request, storage)

    assert_whole_record(result, storage, expected)
    # Waits happened, each as long as the holder's Retry-After asked.
    assert result.waited_seconds >= 1 or carried
    assert all(wait >= 1 for wait in carried)


def test_a_token_that_ends_early_is_renewed_once_and_retrieval_goes_on(
    hub: Tenant, member: dict[str, Any], expected: list[Key], storage: LocalPayloadStorage
) -> None:
    with start("token-ttl=2s") as short_lived:
        request = matched(hub, short_lived, member)
        registration = HolderRegistration.objects.get(payer=hub.payer)
        ended = registration.backend_access_token
        # The hub believes its token good for an hour; the holder ended it after 2 s.
        HolderRegistration.objects.for_payer(hub.payer).filter(pk=registration.pk).update(
            backend_token_expires_at=timezone.now() + timedelta(hours=1)
        )
        time.sleep(2.5)

        result = records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert_whole_record(result, storage, expected)
    assert (
        HolderRegistration.objects.for_payer(hub.payer).get(pk=registration.pk).backend_access_token
        != ended
    )


# --- the next page fetched ahead, and screening as pages are staged ---


def everything_requests(proxy: HolderProxy) -> list[str]:
    return [path for _, path, _ in proxy.received if "$everything" in path]


def test_a_fault_on_the_page_fetched_ahead_surfaces_after_this_page_is_saved_and_resumes(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
) -> None:
    gone = {"page 3": True}

    def third_page_gone(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        if gone["page 3"] and f"_offset={2 * PAGE}" in path:
            return 404, b'{"resourceType":"OperationOutcome","issue":[]}'
        return None

    with holder_proxy(holder) as proxy:
        proxy.refusals.append(third_page_gone)
        request = matched(hub, holder, member, base_url=proxy.fhir)

        with pytest.raises(FhirPermanentError) as refused:
            records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

        # Raised as if fetched in turn: pages 1 and 2 staged and saved, page 3 not.
        assert refused.value.code == "not_found"
        assert refused.value.message.startswith("Former Health Plan's server has nothing at")
        staged = storage.list(f"requests/{request.pk}/staging")
        assert staged == [f"requests/{request.pk}/staging/0000{n}.ndjson" for n in (1, 2)]
        request.refresh_from_db()
        assert request.retrieval_cursor["page"] == 2
        files_before = {name: storage.path(name).stat().st_ino for name in staged}
        asked_before = len(everything_requests(proxy))

        gone["page 3"] = False
        result = records_retrieve(exchange_request=request, storage=storage)

    assert_whole_record(result, storage, expected)
    assert {name: storage.path(name).stat().st_ino for name in staged} == files_before
    # The resumed run asked from page 3 on, each page once.
    asked_after = everything_requests(proxy)[asked_before:]
    assert len(asked_after) == result.pages - 2 == len(set(asked_after))


def test_a_withdrawn_request_stops_with_at_most_one_page_fetched_ahead(
    hub: Tenant, holder: RunningSandbox, member: dict[str, Any], storage: LocalPayloadStorage
) -> None:
    with holder_proxy(holder) as proxy:
        request = matched(hub, holder, member, base_url=proxy.fhir)

        def withdraw(progress: RetrievalResult) -> None:
            ExchangeRequest.objects.for_payer(request.payer_id).filter(pk=request.pk).update(
                status=ExchangeStatus.REVOKED
            )

        with pytest.raises(RequestStopped, match="cancelled or withdrawn"):
            records_retrieve(
                exchange_request=request, storage=storage, page_size=PAGE, on_progress=withdraw
            )

    assert len(storage.list(f"requests/{request.pk}/staging")) == 2
    # Page 3 at most was asked for ahead, and no fetching thread is left behind.
    assert len(everything_requests(proxy)) <= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("retrieval-ahead")]


def test_a_401_on_the_page_fetched_ahead_renews_the_token_once_and_goes_on(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    expected: list[Key],
    storage: LocalPayloadStorage,
) -> None:
    refused: list[str] = []

    def second_page_once(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        if not refused and f"_offset={PAGE}" in path:
            refused.append(path)
            return 401, b'{"resourceType":"OperationOutcome","issue":[]}'
        return None

    with holder_proxy(holder) as proxy:
        request = matched(hub, holder, member, base_url=proxy.fhir)
        registration = HolderRegistration.objects.get(payer=hub.payer)
        proxy.refusals.append(second_page_once)

        result = records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert refused
    assert_whole_record(result, storage, expected)
    renewed = HolderRegistration.objects.for_payer(hub.payer).get(pk=registration.pk)
    assert renewed.backend_access_token != registration.backend_access_token


def screening_of(request: ExchangeRequest, storage: LocalPayloadStorage) -> ScreeningRun:
    return ScreeningRun(
        request_id=request.pk,
        request_date=timezone.localdate(request.opted_in_at),
        policy=request.consent.policy,
        storage=storage,
    )


def screened_outputs(storage: LocalPayloadStorage, request: ExchangeRequest) -> dict[str, bytes]:
    screened = f"requests/{request.pk}/screened"
    return {name: storage.read_bytes(name) for name in storage.list(screened)}


def test_pages_screened_as_staged_equal_a_screening_of_the_staged_record(
    hub: Tenant, holder: RunningSandbox, member: dict[str, Any], storage: LocalPayloadStorage
) -> None:
    request = matched(hub, holder, member)

    def die_after_two_pages(progress: RetrievalResult) -> None:
        if progress.pages == 2:
            raise WorkerKilled

    with pytest.raises(WorkerKilled):
        records_retrieve(
            exchange_request=request,
            storage=storage,
            page_size=PAGE,
            on_progress=die_after_two_pages,
            screening=screening_of(request, storage),
        )
    # Cut off: nothing of the screening stands.
    assert screened_outputs(storage, request) == {}

    request = ExchangeRequest.objects.for_payer(request.payer_id).get(pk=request.pk)
    result = records_retrieve(
        exchange_request=request, storage=storage, screening=screening_of(request, storage)
    )

    summary = f"requests/{request.pk}/screened/summary.json"
    screened = screening_result_read(request_id=request.pk, storage=storage)
    assert screened.pages == [name.rsplit("/", 1)[-1] for name in result.page_names]
    assert screened.kept_total + sum(screened.removed.values()) == result.resources
    as_staged = screened_outputs(storage, request)
    inode = storage.path(summary).stat().st_ino
    terms = {
        "request_date": timezone.localdate(request.opted_in_at),
        "policy": request.consent.policy,
    }
    # The screening step takes that result as it is ...
    assert screening_complete(request_id=request.pk, storage=storage, **terms) == screened
    assert storage.path(summary).stat().st_ino == inode
    # ... which is what screening the staged record afresh writes, byte for byte.
    assert screening_run(request_id=request.pk, storage=storage, **terms) == screened
    assert screened_outputs(storage, request) == as_staged


def test_a_retrieval_with_nothing_left_to_stage_leaves_the_screening_to_its_step(
    hub: Tenant, holder: RunningSandbox, member: dict[str, Any], storage: LocalPayloadStorage
) -> None:
    request = matched(hub, holder, member)
    records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    records_retrieve(
        exchange_request=request, storage=storage, screening=screening_of(request, storage)
    )

    assert screened_outputs(storage, request) == {}


def test_a_token_that_cannot_be_had_for_the_next_page_fails_after_this_page_is_saved(
    hub: Tenant,
    holder: RunningSandbox,
    member: dict[str, Any],
    storage: LocalPayloadStorage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = matched(hub, holder, member)
    calls: list[bool] = []
    real = token_provider_for(request)

    def provider(force_refresh: bool) -> str:
        calls.append(force_refresh)
        # Page 1 (the CapabilityStatement was read by the radar's probe, without a token);
        # then the token server is down for page 2.
        if len(calls) > 1:
            raise FhirTransientError("the token server is down", code="unavailable")
        return real(force_refresh)

    monkeypatch.setattr("exchange.retrieval.token_provider_for", lambda _: provider)

    with pytest.raises(FhirTransientError, match="the token server is down"):
        records_retrieve(exchange_request=request, storage=storage, page_size=PAGE)

    assert storage.list(f"requests/{request.pk}/staging") == [
        f"requests/{request.pk}/staging/00001.ndjson"
    ]
    request.refresh_from_db()
    assert request.retrieval_cursor["page"] == 1
