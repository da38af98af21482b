"""Screen one request's staged record: stream it through the rules, write what may leave.

In:  ``RequestFiles.staging`` (the retrieval step's NDJSON pages, one resource a line).
Out, under ``RequestFiles.screened``:
- ``<ResourceType>.ndjson`` — the kept resources, one file per type (what a bulk delivery
  ships as is, and what the packaging step streams into its Bundle, Patient first);
- ``quarantine.ndjson`` — every invalid resource with where it was staged and its problems
  (stays at the hub; only counted in the manifest);
- ``summary.json`` — the ``ScreeningResult``, written last.

Memory stays flat: one page chunk and one resource at a time, whatever the record's size.
Re-running overwrites every output (each file appears atomically) and deletes outputs of an
earlier run that this run did not produce, so a retried task is harmless (STYLE.md #4).
"""

import json
from datetime import date

from exchange.models import ConsentPolicy
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import PayloadStorage, PayloadWriter
from exchange.screening.decision import Kept, Quarantined, resource_screen
from exchange.screening.result import (
    QuarantinedResource,
    ScreeningResult,
    quarantine_name,
    screened_name,
    summary_name,
)

MAX_QUARANTINE_EXAMPLES = 20


def _staged_pages(storage: PayloadStorage, request_id: int) -> list[str]:
    staging = RequestFiles(request_id).staging
    pages = [name for name in storage.list(staging) if name.endswith(".ndjson")]
    if not pages:
        raise FileNotFoundError(
            f"request {request_id} has no staged pages under {staging}/ "
            "(retrieval has not run or wrote nothing)"
        )
    return pages


def _parse(line: bytes) -> tuple[object, str | None]:
    """Return the parsed line, or (None, the problem) when it is not JSON."""
    try:
        return json.loads(line), None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"(line): not JSON ({error})"


def _quarantine_record(
    page: str, line_number: int, resource: object, raw: bytes, problems: list[str]
) -> tuple[QuarantinedResource, bytes]:
    resource_type = resource_id = None
    if isinstance(resource, dict):
        resource_type = _text_or_none(resource.get("resourceType"))
        resource_id = _text_or_none(resource.get("id"))
    example = QuarantinedResource(
        page=page.rsplit("/", 1)[-1],
        line=line_number,
        resource_type=resource_type,
        resource_id=resource_id,
        problems=problems,
    )
    record = {
        "page": example.page,
        "line": line_number,
        "resourceType": resource_type,
        "id": resource_id,
        "problems": problems,
        "staged": raw.decode("utf-8", errors="replace"),
    }
    return example, json.dumps(record, ensure_ascii=False).encode() + b"\n"


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _writer_for(
    writers: dict[str, PayloadWriter], storage: PayloadStorage, name: str
) -> PayloadWriter:
    if name not in writers:
        writers[name] = storage.writer(name)
    return writers[name]


def _consent_policy(policy: str) -> ConsentPolicy:
    try:
        return ConsentPolicy(policy)
    except ValueError:
        choices = " or ".join(repr(choice.value) for choice in ConsentPolicy)
        raise ValueError(f"consent policy must be {choices}, not {policy!r}") from None


def screening_run(
    *, request_id: int, request_date: date, policy: str, storage: PayloadStorage
) -> ScreeningResult:
    """Screen the staged record of the request and write what may leave (module docstring)."""
    consent_policy = _consent_policy(policy)
    pages = _staged_pages(storage, request_id)
    result = ScreeningResult(
        request_id=request_id, request_date=request_date, policy=consent_policy.value
    )
    # A run that stops half-way must not leave the previous run's figures looking current.
    storage.delete(summary_name(request_id))
    writers: dict[str, PayloadWriter] = {}
    try:
        for page in pages:
            for line_number, raw in enumerate(ndjson_lines(storage, page), start=1):
                resource, problem = _parse(raw)
                decision = (
                    Quarantined([problem])
                    if problem
                    else resource_screen(resource, request_date=request_date, policy=consent_policy)
                )
                if isinstance(decision, Kept):
                    resource_type = decision.resource["resourceType"]
                    name = screened_name(request_id, resource_type)
                    writer = _writer_for(writers, storage, name)
                    writer.write(
                        json.dumps(decision.resource, ensure_ascii=False).encode()
                        if decision.reduced
                        else raw.strip()
                    )
                    writer.write(b"\n")
                    result.kept[resource_type] = result.kept.get(resource_type, 0) + 1
                    if decision.reduced:
                        result.reduced[resource_type] = result.reduced.get(resource_type, 0) + 1
                elif isinstance(decision, Quarantined):
                    example, record = _quarantine_record(
                        page, line_number, resource, raw, decision.problems
                    )
                    writer = _writer_for(writers, storage, quarantine_name(request_id))
                    writer.write(record)
                    result.quarantined += 1
                    if len(result.quarantine_examples) < MAX_QUARANTINE_EXAMPLES:
                        result.quarantine_examples.append(example)
                else:
                    code = decision.reason.value
                    result.removed[code] = result.removed.get(code, 0) + 1
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    written = {*writers, summary_name(request_id)}
    for stale in storage.list(RequestFiles(request_id).screened):
        if stale not in written:
            storage.delete(stale)
    storage.write_bytes(summary_name(request_id), result.to_json())
    return result
