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

A run takes one page after another (``ScreeningRun``): ``screening_run`` reads them from
staging; retrieval (exchange/retrieval.py) hands each page over as it stages it, so the record
is screened while the former payer is still sending it. The summary of such a run names the
pages it screened; ``screening_complete`` takes it as the screening of the record only while
exactly those pages are staged and the consent policy and request date are the same, and
screens the staged record afresh otherwise (a retrieval cut off and resumed, a bulk export).
"""

import json
from collections.abc import Iterable, Iterator
from datetime import date
from types import TracebackType
from typing import Self

from exchange.fhir.json_text import json_compact, json_parse
from exchange.models import ConsentPolicy
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import PayloadCorrupt, PayloadStorage, PayloadWriter
from exchange.screening.decision import Kept, Quarantined, resource_screen
from exchange.screening.result import (
    QuarantinedResource,
    ScreeningResult,
    quarantine_name,
    screened_name,
    screening_result_read,
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
        return json_parse(line), None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"(line): not JSON ({error})"


# One staged line: its text, and what it parses to or why it does not.
StagedLine = tuple[bytes, object, str | None]


def _staged_lines(storage: PayloadStorage, page: str) -> Iterator[StagedLine]:
    for raw in ndjson_lines(storage, page):
        resource, problem = _parse(raw)
        yield raw, resource, problem


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


def _consent_policy(policy: str) -> ConsentPolicy:
    try:
        return ConsentPolicy(policy)
    except ValueError:
        choices = " or ".join(repr(choice.value) for choice in ConsentPolicy)
        raise ValueError(f"consent policy must be {choices}, not {policy!r}") from None


class ScreeningRun:
    """Screen a request's staged pages one after another; write the outputs on ``finish``.

    Starting a run deletes the previous run's summary: a run that stops half-way must not
    leave the previous run's figures looking current. Leaving the ``with`` block by an
    exception, or calling ``abort``, discards everything written so far.
    """

    def __init__(
        self, *, request_id: int, request_date: date, policy: str, storage: PayloadStorage
    ) -> None:
        consent_policy = _consent_policy(policy)
        self.request_id = request_id
        self.request_date = request_date
        self.policy = consent_policy
        self.storage = storage
        self.result = ScreeningResult(
            request_id=request_id, request_date=request_date, policy=consent_policy.value
        )
        self._writers: dict[str, PayloadWriter] = {}
        storage.delete(summary_name(request_id))

    def page_screen(self, page: str, lines: Iterable[StagedLine]) -> None:
        """Screen the lines of staged page ``page`` (its storage name), in their order."""
        result = self.result
        for line_number, (raw, resource, problem) in enumerate(lines, start=1):
            decision = (
                Quarantined([problem])
                if problem
                else resource_screen(resource, request_date=self.request_date, policy=self.policy)
            )
            if isinstance(decision, Kept):
                resource_type = decision.resource["resourceType"]
                writer = self._writer_for(screened_name(self.request_id, resource_type))
                line = json_compact(decision.resource) if decision.reduced else raw.strip()
                writer.write(line + b"\n")
                result.kept[resource_type] = result.kept.get(resource_type, 0) + 1
                if decision.reduced:
                    result.reduced[resource_type] = result.reduced.get(resource_type, 0) + 1
            elif isinstance(decision, Quarantined):
                example, record = _quarantine_record(
                    page, line_number, resource, raw, decision.problems
                )
                self._writer_for(quarantine_name(self.request_id)).write(record)
                result.quarantined += 1
                if len(result.quarantine_examples) < MAX_QUARANTINE_EXAMPLES:
                    result.quarantine_examples.append(example)
            else:
                code = decision.reason.value
                result.removed[code] = result.removed.get(code, 0) + 1
        result.pages.append(page.rsplit("/", 1)[-1])

    def staged_page_screen(self, page: str) -> None:
        """Screen staged page ``page`` as read back from storage."""
        self.page_screen(page, _staged_lines(self.storage, page))

    def _writer_for(self, name: str) -> PayloadWriter:
        if name not in self._writers:
            # Not fsynced one by one (a cohort writes some fifteen a member): what they hold
            # is screened again from staging when a crash cut one short, which packaging
            # notices on reading it (exchange/pipeline.py ``_package_one``).
            self._writers[name] = self.storage.writer(name, durable=False)
        return self._writers[name]

    def finish(self) -> ScreeningResult:
        """Make the outputs appear, delete those of an earlier run this one did not write, and
        write the summary last; return the result."""
        for writer in self._writers.values():
            writer.close()
        written = {*self._writers, summary_name(self.request_id)}
        self._writers = {}
        for stale in self.storage.list(RequestFiles(self.request_id).screened):
            if stale not in written:
                self.storage.delete(stale)
        self.storage.write_bytes(summary_name(self.request_id), self.result.to_json())
        return self.result

    def abort(self) -> None:
        """Discard what this run wrote (the earlier run's outputs, but its summary, stay)."""
        for writer in self._writers.values():
            writer.abort()
        self._writers = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()


def screening_run(
    *, request_id: int, request_date: date, policy: str, storage: PayloadStorage
) -> ScreeningResult:
    """Screen the staged record of the request and write what may leave (module docstring)."""
    run = ScreeningRun(
        request_id=request_id, request_date=request_date, policy=policy, storage=storage
    )
    pages = _staged_pages(storage, request_id)
    with run:
        for page in pages:
            run.staged_page_screen(page)
    return run.finish()


def screening_complete(
    *, request_id: int, request_date: date, policy: str, storage: PayloadStorage
) -> ScreeningResult:
    """Return the screening of the staged record: the one retrieval wrote as it staged the
    pages if it covers exactly the pages staged now under this policy and request date, else
    a fresh ``screening_run`` — also when the summary there cannot be read (cut short by a
    crash, or written under a key no longer configured)."""
    pages = [name.rsplit("/", 1)[-1] for name in _staged_pages(storage, request_id)]
    if storage.exists(summary_name(request_id)):
        try:
            done = screening_result_read(request_id=request_id, storage=storage)
        except PayloadCorrupt:
            done = None
        if done is not None and (done.pages, done.request_date, done.policy) == (
            pages,
            request_date,
            policy,
        ):
            return done
    return screening_run(
        request_id=request_id, request_date=request_date, policy=policy, storage=storage
    )
