"""Retrieve a member's records from the former payer into staging (ARCHITECTURE.md step 4).

How (SPEC.md "Getting the data"): ``GET Patient/{id}/$everything`` following every
``Bundle.link[next]`` to the end; when the CapabilityStatement (as the compatibility radar's
latest probe read it, exchange/radar/) offers no ``$everything``,
a ``patient=`` search of every type it lists as searchable by patient (``Patient`` itself
by ``_id``), each followed to its last page. The token is the member's own
(member-authorized) or the new payer's backend-services token with the Patient id
``$member-match`` returned.

Staging: each page becomes one encrypted NDJSON file, ``RequestFiles.staging_page``
(``requests/<request id>/staging/<page, 5 digits>.ndjson``, one resource per line), which
appears under its name only once complete (PayloadStorage writes atomically). Only one
page is in memory at a time; what grows with the record is the set of (type, id) keys
seen, which keeps a resource a server returns twice from being staged or counted twice.

Overlap: while the hub stages (and screens) page N, a background thread already fetches and
parses page N+1, so the former payer prepares the next page while the hub works on this one.
Only one page is fetched ahead, and only after page N's ``next`` link passed the checks
below; the thread does HTTP and JSON only. The database stays with the caller's thread: it
reads the access token the thread sends, and saves the cursor; only renewing a token after a
401 runs in the thread (as ``FhirClient`` does it). An error of the thread (``FhirCallError``
and its retries, as for any call) is raised in the caller when it comes to that page, after
page N is staged and saved — as if the page had been fetched then.

Screening: given a ``ScreeningRun`` (exchange/screening/service.py), retrieval hands it every
page it stages — the pages an earlier attempt staged first, read back — and finishes it once
the last page is staged, so the screening step finds the record screened. A retrieval that
stops (an error, a cancel) discards that run; the screening step then screens the staged
record itself.

Resuming: after every page the cursor (mode, next URL or search position, pages staged)
and the counts per type are saved on the ExchangeRequest in one UPDATE. A worker
restarted mid-way continues from the cursor: staged pages are not fetched again (if it
died between writing a page and saving the cursor, that page is fetched again and its
file replaced, never counted twice). The UPDATE only succeeds while the request is still
in progress, so a request cancelled or withdrawn meanwhile stops after the current page.

Waiting: 429/503 are retried within the call after ``Retry-After`` when the wait is short
(exchange.fhir.client); a longer wait, or faults that persist, raise ``FhirTransientError``
with ``retry_after``, and the task retries later with that countdown — and resumes.
"""

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from django.db import connections
from django.utils import timezone

from exchange.fhir.client import FhirClient, TokenProvider
from exchange.fhir.elements import repeated
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirPermanentError
from exchange.fhir.instants import fhir_instant
from exchange.fhir.json_text import json_compact, json_parse
from exchange.models import ExchangeRequest
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import PayloadStorage
from exchange.radar.services import holder_capabilities
from exchange.request_stopped import RequestStopped
from exchange.screening import ScreeningRun
from exchange.smart.access import token_provider_for
from exchange.state_machine import IN_PROGRESS
from hub.client_certificates import holder_http_client

EVERYTHING = "everything"
SEARCH = "search"
# Resources per page asked for (servers may send fewer); bounds the memory of one page.
PAGE_SIZE = 500
# A holder's Consent resources are the exchange's own paperwork (the consents the hub
# sent), not the member's record; $everything does not return them either.
NOT_RECORD_TYPES = frozenset({"Consent"})


@dataclass
class RetrievalResult:
    """Where retrieval stands: pages staged, resources per type, and whether it is complete."""

    mode: str
    pages: int
    resource_counts: dict[str, int]
    complete: bool
    # Seconds this call waited on the former payer's Retry-After / backoff.
    waited_seconds: float = 0.0
    page_names: list[str] = field(default_factory=list)

    @property
    def resources(self) -> int:
        return sum(self.resource_counts.values())


ProgressCallback = Callable[[RetrievalResult], None]


def _start_cursor(summary: dict[str, Any], former_name: str, page_size: int) -> dict[str, Any]:
    if EVERYTHING in summary["operations"]:
        return {
            "mode": EVERYTHING,
            "page_size": page_size,
            "next_url": "",
            "page": 0,
            "done": False,
        }
    types = [t for t in summary["patient_search_types"] if t not in NOT_RECORD_TYPES]
    if not types:
        raise FhirPermanentError(
            f"{former_name}'s server offers neither Patient/$everything nor searches by patient, "
            "so the hub cannot fetch records there.",
            code="no_retrieval_method",
        )
    # Patient first: the record starts with the member.
    types.sort(key=lambda t: (t != "Patient", t))
    return {
        "mode": SEARCH,
        "page_size": page_size,
        "types": types,
        "type_index": 0,
        "next_url": "",
        "page": 0,
        "done": False,
    }


def _request_of(cursor: dict[str, Any], patient_id: str) -> tuple[str, dict[str, str] | None]:
    """Return the URL (and query) of the next page the cursor points at.

    A recurring pull asks only for what changed since the hub's watermark (``since``):
    ``_since`` of ``$everything`` (FHIR R4 Patient-everything), ``_lastUpdated=ge`` of a
    search (FHIR R4 §3.1.1.5.1); both filter on meta.lastUpdated (PDex §pdex-180).
    """
    if cursor["next_url"]:
        return cursor["next_url"], None
    query = {"_count": str(cursor["page_size"])}
    since = cursor.get("since")
    if cursor["mode"] == EVERYTHING:
        return f"Patient/{patient_id}/$everything", query | ({"_since": since} if since else {})
    if since:
        query["_lastUpdated"] = f"ge{since}"
    resource_type = cursor["types"][cursor["type_index"]]
    if resource_type == "Patient":
        return "Patient", {"_id": patient_id, **query}
    return resource_type, {"patient": patient_id, **query}


def _advanced(
    cursor: dict[str, Any], next_url: str, fetched_url: str, former_name: str
) -> dict[str, Any]:
    """Return the cursor past the page just fetched (the given one stays as it is)."""
    cursor = {**cursor, "page": cursor["page"] + 1}
    if next_url:
        # The links of the pages fetched so far, hashed: a next link back to any of them
        # (the page itself, or A -> B -> A) would loop for ever.
        seen = list(cursor.get("seen_links", []))
        if fetched_url and not seen:
            seen.append(_link_digest(fetched_url))
        digest = _link_digest(next_url)
        if digest in seen:
            raise FhirPermanentError(
                f"{former_name}'s server links back to a page it already sent as the next one; "
                "the hub stops rather than fetch it for ever.",
                code="paging_loop",
            )
        seen.append(digest)
        cursor["seen_links"] = seen
        cursor["next_url"] = next_url
        return cursor
    cursor["next_url"] = ""
    if cursor["mode"] == EVERYTHING:
        cursor["done"] = True
        return cursor
    cursor["type_index"] += 1
    cursor["done"] = cursor["type_index"] >= len(cursor["types"])
    return cursor


def _link_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _next_link(bundle: dict[str, Any], *, page: int, former_name: str) -> str:
    where = f"{former_name}'s server sent a broken page {page}"
    for link in repeated(bundle, "link", where=where, code="malformed_bundle"):
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return ""


def _page_resources(bundle: dict[str, Any], *, page: int, former_name: str) -> list[dict[str, Any]]:
    resources = []
    where = f"{former_name}'s server sent a broken page {page}"
    entries = repeated(bundle, "entry", where=where, code="malformed_bundle")
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise FhirPermanentError(
                f"{former_name}'s server sent a broken page {page}: entry {position} is not an "
                "object.",
                code="malformed_bundle",
            )
        # Search-mode "outcome" entries are the server's remarks, not records (FHIR R4 §3.1.1.4).
        if (entry.get("search") or {}).get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirPermanentError(
                f"{former_name}'s server sent a broken page {page}: entry {position} carries no "
                "resource with a resourceType.",
                code="malformed_bundle",
            )
        resources.append(resource)
    return resources


def _key(resource: dict[str, Any]) -> tuple[str, str] | None:
    resource_id = resource.get("id")
    return (resource["resourceType"], str(resource_id)) if resource_id else None


def _staged_keys(storage: PayloadStorage, files: RequestFiles, pages: int) -> set[tuple[str, str]]:
    """Return the (type, id) keys of the resources in the pages already staged."""
    seen: set[tuple[str, str]] = set()
    for page in range(1, pages + 1):
        for line in ndjson_lines(storage, files.staging_page(page)):
            key = _key(json_parse(line))
            if key is not None:
                seen.add(key)
    return seen


def _stage_page(
    storage: PayloadStorage,
    name: str,
    resources: list[dict[str, Any]],
    seen: set[tuple[str, str]],
    counts: dict[str, int],
) -> list[tuple[bytes, dict[str, Any]]]:
    """Write the page's resources not staged before; return each line written, with its
    resource."""
    staged = []
    for resource in resources:
        key = _key(resource)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        staged.append((json_compact(resource), resource))
        counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1
    with storage.writer(name) as writer:
        # One write of the page (it is in memory anyway), not two per resource.
        writer.write(b"".join(line + b"\n" for line, _ in staged))
    return staged


def _save_progress(
    exchange_request: ExchangeRequest, cursor: dict[str, Any], counts: dict[str, int]
) -> None:
    saved = (
        ExchangeRequest.objects.for_payer(exchange_request.payer_id)
        .filter(pk=exchange_request.pk, status__in=IN_PROGRESS)
        # last_progress_at: each page staged shows the reaper the work is moving.
        .update(retrieval_cursor=cursor, resource_counts=counts, last_progress_at=timezone.now())
    )
    if not saved:
        raise RequestStopped("The request was cancelled or withdrawn, so nothing more is fetched.")
    exchange_request.retrieval_cursor = cursor
    exchange_request.resource_counts = counts


def _records_as_of_set(exchange_request: ExchangeRequest) -> None:
    """Note when this retrieval began: the record is read as of then, and the next pull of
    its schedule asks for what changed since (exchange/schedules.py). The hub's own clock,
    taken before the first page is asked for, so nothing changed meanwhile is missed."""
    as_of = timezone.now()
    ExchangeRequest.objects.for_payer(exchange_request.payer_id).filter(
        pk=exchange_request.pk
    ).update(records_as_of=as_of)
    exchange_request.records_as_of = as_of


class _PageAhead:
    """Fetch the next page in one background thread while the caller stages the current one.

    One page at a time: ``fetch`` starts it, ``take`` waits for it and returns it (or raises
    what fetching it raised). The thread reads no database: ``fetch`` reads the access token
    in the caller's thread and the thread sends that one; only a 401 has the thread renew it
    (``FhirClient.exchange``: once per call), its database connection closed straight after.
    """

    def __init__(self, fhir: FhirClient, token_provider: TokenProvider) -> None:
        self._token_provider = token_provider
        self._token = ""
        self._fhir = fhir.with_token_provider(self._thread_token)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieval-ahead")
        self._pending: tuple[str, dict[str, str] | None, Future[dict[str, Any]]] | None = None

    def _thread_token(self, force_refresh: bool) -> str:
        if not force_refresh:
            return self._token
        try:
            self._token = self._token_provider(True)
        finally:
            connections.close_all()  # this thread's own connections only
        return self._token

    def fetch(self, url: str, params: dict[str, str] | None) -> None:
        """Start fetching the page at ``url`` (an absolute URL under the holder's base)."""
        future: Future[dict[str, Any]]
        try:
            self._token = self._token_provider(False)
        except Exception as error:
            # Raised by ``take``, like an error of the fetch: after the current page is saved.
            future = Future()
            future.set_exception(error)
        else:
            future = self._executor.submit(self._fhir.bundle_page, url, params=params)
        self._pending = (url, params, future)

    def take(self) -> tuple[str, dict[str, str] | None, dict[str, Any]]:
        """Return the URL, query and Bundle of the page ``fetch`` started."""
        if self._pending is None:
            raise RuntimeError("no page is being fetched")
        url, params, future = self._pending
        self._pending = None
        return url, params, future.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A page still being fetched (the caller stopped) is waited for, not left running on
        # an HTTP client about to close; its answer or error goes nowhere.
        self._executor.shutdown(wait=True, cancel_futures=True)


def records_retrieve(
    *,
    exchange_request: ExchangeRequest,
    storage: PayloadStorage,
    on_progress: ProgressCallback | None = None,
    page_size: int = PAGE_SIZE,
    screening: ScreeningRun | None = None,
) -> RetrievalResult:
    """Stage the member's records page by page; resume from the saved cursor if there is one.

    Returns when every page is staged. Raises FhirCallError otherwise, or RequestStopped when
    the request was cancelled or withdrawn meanwhile; what was staged so far stays, and a
    later call continues from it. ``page_size`` is the ``_count`` asked
    for at a fresh start (a resumed retrieval keeps its own). ``screening`` is given every
    page staged and finished when the last one is; it is aborted if this call stages nothing
    (the retrieval was complete already) or does not get to the end (module docstring).
    """
    try:
        result = _records_retrieve(
            exchange_request=exchange_request,
            storage=storage,
            on_progress=on_progress,
            page_size=page_size,
            screening=screening,
        )
    except BaseException:
        if screening is not None:
            screening.abort()
        raise
    if screening is not None:
        if result.complete and len(screening.result.pages) == result.pages:
            screening.finish()
        else:
            screening.abort()
    return result


def _records_retrieve(
    *,
    exchange_request: ExchangeRequest,
    storage: PayloadStorage,
    on_progress: ProgressCallback | None,
    page_size: int,
    screening: ScreeningRun | None,
) -> RetrievalResult:
    former_name = exchange_request.former_payer.name
    patient_id = exchange_request.matched_patient_id
    if not patient_id:
        raise FhirPermanentError(
            f"The hub does not know which record at {former_name} is yours yet (no match and no "
            "sign-in there).",
            code="no_patient",
        )
    endpoint = holder_endpoint_get(former_payer=exchange_request.former_payer)
    files = RequestFiles(exchange_request.pk)
    cursor: dict[str, Any] = dict(exchange_request.retrieval_cursor)
    counts: dict[str, int] = dict(exchange_request.resource_counts) if cursor else {}

    def result(waited: float) -> RetrievalResult:
        return RetrievalResult(
            mode=cursor["mode"],
            pages=cursor["page"],
            resource_counts=dict(counts),
            complete=cursor["done"],
            waited_seconds=waited,
            page_names=[files.staging_page(page) for page in range(1, cursor["page"] + 1)],
        )

    if cursor.get("done"):
        return result(0.0)
    token_provider = token_provider_for(exchange_request)
    with holder_http_client(requesting_payer=exchange_request.payer_id) as http:
        fhir = FhirClient(
            base_url=endpoint.base_url,
            holder_name=former_name,
            http=http,
            token_provider=token_provider,
        )
        if cursor:
            seen = _staged_keys(storage, files, cursor["page"])
            if screening is not None:
                for page in range(1, cursor["page"] + 1):
                    screening.staged_page_screen(files.staging_page(page))
        else:
            # A fresh start: nothing staged by an earlier attempt may mix in.
            storage.delete_tree(files.staging)
            # The holder's offers as the compatibility radar last found them (probed now
            # when no recent probe read them): $everything, else searches by patient.
            cursor = _start_cursor(holder_capabilities(endpoint=endpoint), former_name, page_size)
            if exchange_request.records_since is not None:
                cursor["since"] = fhir_instant(exchange_request.records_since)
            _records_as_of_set(exchange_request)
            seen = set()
        with _PageAhead(fhir, token_provider) as ahead:
            url, params = _request_of(cursor, patient_id)
            ahead.fetch(fhir.url_for(url), params)
            while not cursor["done"]:
                fetched_url, params, bundle = ahead.take()
                page = cursor["page"] + 1
                resources = _page_resources(bundle, page=page, former_name=former_name)
                next_url = _next_link(bundle, page=page, former_name=former_name)
                if next_url:
                    # Refuse a next link off the holder's base before anything is saved.
                    next_url = fhir.url_for(next_url)
                following = _advanced(
                    cursor, next_url, fetched_url if params is None else "", former_name
                )
                if not following["done"]:
                    url, params = _request_of(following, patient_id)
                    ahead.fetch(fhir.url_for(url), params)
                name = files.staging_page(page)
                staged = _stage_page(storage, name, resources, seen, counts)
                if screening is not None:
                    screening.page_screen(name, ((line, r, None) for line, r in staged))
                cursor = following
                _save_progress(exchange_request, cursor, counts)
                if on_progress is not None:
                    on_progress(result(sum(fhir.retry_waits)))
        return result(sum(fhir.retry_waits))


def records_retrieval_reset(*, exchange_request: ExchangeRequest, storage: PayloadStorage) -> None:
    """Forget the cursor, counts and staged pages, so the next retrieval starts over."""
    storage.delete_tree(RequestFiles(exchange_request.pk).staging)
    ExchangeRequest.objects.for_payer(exchange_request.payer_id).filter(
        pk=exchange_request.pk
    ).update(retrieval_cursor={}, resource_counts={})
    exchange_request.retrieval_cursor = {}
    exchange_request.resource_counts = {}
