"""Retrieve a member's records from the former payer into staging (ARCHITECTURE.md step 4).

How (SPEC.md "Getting the data"): ``GET Patient/{id}/$everything`` following every
``Bundle.link[next]`` to the end; when the CapabilityStatement offers no ``$everything``,
a ``patient=`` search of every type it lists as searchable by patient (``Patient`` itself
by ``_id``), each followed to its last page. The token is the member's own
(member-authorized) or the new payer's backend-services token with the Patient id
``$member-match`` returned.

Staging: each page becomes one encrypted NDJSON file, ``RequestFiles.staging_page``
(``requests/<request id>/staging/<page, 5 digits>.ndjson``, one resource per line), which
appears under its name only once complete (PayloadStorage writes atomically). Only one
page is in memory at a time; what grows with the record is the set of (type, id) keys
seen, which keeps a resource a server returns twice from being staged or counted twice.

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
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from exchange.fhir.capabilities import capability_summary
from exchange.fhir.client import FhirClient
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirPermanentError
from exchange.models import ExchangeRequest
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import PayloadStorage
from exchange.request_stopped import RequestStopped
from exchange.smart.access import token_provider_for
from exchange.state_machine import IN_PROGRESS
from hub.outbound import PayerHttpClient

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


def _start_cursor(fhir: FhirClient, former_name: str, page_size: int) -> dict[str, Any]:
    statement = fhir.read("metadata", resource_type="CapabilityStatement")
    summary = capability_summary(statement)
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
    """Return the URL (and query) of the next page the cursor points at."""
    if cursor["next_url"]:
        return cursor["next_url"], None
    count = {"_count": str(cursor["page_size"])}
    if cursor["mode"] == EVERYTHING:
        return f"Patient/{patient_id}/$everything", count
    resource_type = cursor["types"][cursor["type_index"]]
    if resource_type == "Patient":
        return "Patient", {"_id": patient_id, **count}
    return resource_type, {"patient": patient_id, **count}


def _advance(cursor: dict[str, Any], next_url: str, fetched_url: str, former_name: str) -> None:
    cursor["page"] += 1
    if next_url:
        # The links of the pages fetched so far, hashed: a next link back to any of them
        # (the page itself, or A -> B -> A) would loop for ever.
        seen = cursor.setdefault("seen_links", [])
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
        cursor["next_url"] = next_url
        return
    cursor["next_url"] = ""
    if cursor["mode"] == EVERYTHING:
        cursor["done"] = True
        return
    cursor["type_index"] += 1
    cursor["done"] = cursor["type_index"] >= len(cursor["types"])


def _link_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _next_link(bundle: dict[str, Any]) -> str:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return ""


def _page_resources(bundle: dict[str, Any], *, page: int, former_name: str) -> list[dict[str, Any]]:
    resources = []
    for position, entry in enumerate(bundle.get("entry") or [], start=1):
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
            key = _key(json.loads(line))
            if key is not None:
                seen.add(key)
    return seen


def _stage_page(
    storage: PayloadStorage,
    name: str,
    resources: list[dict[str, Any]],
    seen: set[tuple[str, str]],
    counts: dict[str, int],
) -> None:
    with storage.writer(name) as writer:
        for resource in resources:
            key = _key(resource)
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            writer.write(json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode())
            writer.write(b"\n")
            counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1


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


def records_retrieve(
    *,
    exchange_request: ExchangeRequest,
    storage: PayloadStorage,
    on_progress: ProgressCallback | None = None,
    page_size: int = PAGE_SIZE,
) -> RetrievalResult:
    """Stage the member's records page by page; resume from the saved cursor if there is one.

    Returns when every page is staged. Raises FhirCallError otherwise, or RequestStopped when
    the request was cancelled or withdrawn meanwhile; what was staged so far stays, and a
    later call continues from it. ``page_size`` is the ``_count`` asked
    for at a fresh start (a resumed retrieval keeps its own).
    """
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
    with PayerHttpClient() as http:
        fhir = FhirClient(
            base_url=endpoint.base_url,
            holder_name=former_name,
            http=http,
            token_provider=token_provider_for(exchange_request),
        )
        if cursor:
            seen = _staged_keys(storage, files, cursor["page"])
        else:
            # A fresh start: nothing staged by an earlier attempt may mix in.
            storage.delete_tree(files.staging)
            cursor = _start_cursor(fhir, former_name, page_size)
            seen = set()
        while not cursor["done"]:
            url, params = _request_of(cursor, patient_id)
            fetched_url = fhir.url_for(url)
            bundle = fhir.bundle_page(fetched_url, params=params)
            page = cursor["page"] + 1
            resources = _page_resources(bundle, page=page, former_name=former_name)
            next_url = _next_link(bundle)
            if next_url:
                # Refuse a next link off the holder's base before anything is saved.
                next_url = fhir.url_for(next_url)
            _stage_page(storage, files.staging_page(page), resources, seen, counts)
            _advance(cursor, next_url, fetched_url if params is None else "", former_name)
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
