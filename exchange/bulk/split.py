"""Split the NDJSON files of a Group export per member, line by line, into their staging.

A Group export (``$davinci-data-export`` or ``$export``) answers with one file per resource
type holding every member's resources mixed. Each line goes to the member whose Patient
compartment it is in — the Patient itself, or a resource that references ``Patient/<id>``
of a member of the Group (FHIR R4 CompartmentDefinition patient: subject, patient,
beneficiary, ...; any reference to the Patient is taken, which is what those are) — and is
appended to that member's staging (``RequestFiles.bulk_page``), where the single-request
steps screen and package it (exchange/pipeline.py). Resources in no one's compartment (the
Practitioners and Organizations the records cite) go to the cohort's shared file, and each
member's package gets those it cites (``cited_page_write``), as ``$everything`` would give.

Memory stays flat: one line at a time, and at most ``max_open`` members' pages open (the
least recently written is closed when another is needed; a member met again later gets
its next page). Output names depend only on the input, so a file split again after a
worker died rewrites the same pages, whole (PayloadStorage writes atomically).

A line the hub cannot use (not JSON, not the file's type) breaks the record of the member
it names: that member fails, named with the line, and the others carry on; a broken line
that names no member breaks the chunk.
"""

import re
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from exchange.fhir.ids import ID_PATTERN
from exchange.payloads.layout import CohortFiles, RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import PayloadStorage, PayloadWriter

# Relative or absolute references to a Patient, as they appear in the raw JSON text.
_PATIENT_REFERENCE = re.compile(
    rb'"reference"\s*:\s*"(?:[^"]*/)?Patient/(' + ID_PATTERN.encode() + rb')"'
)
# References to resources outside any member's compartment that a package should carry.
_CITED_REFERENCE = re.compile(
    rb'"reference"\s*:\s*"([A-Z][A-Za-z]+/' + ID_PATTERN.encode() + rb')"'
)
MAX_OPEN_PAGES = 128


class SplitFailed(Exception):
    """The file cannot be split: a line the hub cannot use names no member of the Group."""


@dataclass
class FileSplit:
    """What splitting one output file did."""

    lines: int = 0
    # Request id -> resource type -> resources staged for it.
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    # Request id -> "Type/id" of the no-one's resources its lines reference.
    cited: dict[int, set[str]] = field(default_factory=dict)
    shared: int = 0
    # Request id -> why this member's record from this file is broken.
    broken: dict[int, str] = field(default_factory=dict)


class MemberSplitter:
    """Route the lines of one output file to the members of the export's Group."""

    def __init__(
        self,
        *,
        storage: PayloadStorage,
        cohort_id: int,
        job_id: int,
        file_index: int,
        resource_type: str,
        request_of_patient: dict[str, int],
        holder_name: str,
        max_open: int = MAX_OPEN_PAGES,
    ) -> None:
        self._storage = storage
        self._job_id = job_id
        self._file_index = file_index
        self._type = resource_type
        self._request_of_patient = request_of_patient
        self._holder_name = holder_name
        self._max_open = max_open
        self._open: OrderedDict[int, PayloadWriter] = OrderedDict()
        self._segments: dict[int, int] = {}
        self._shared_name = CohortFiles(cohort_id).shared(job_id=job_id, file_index=file_index)
        self._shared: PayloadWriter | None = None
        self.result = FileSplit()

    def feed(self, line: bytes) -> None:
        """Route one line (without its newline; blank lines are skipped)."""
        if not line.strip():
            return
        self.result.lines += 1
        number = self.result.lines
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._broken(line, f"line {number} is not valid JSON")
            return
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            self._broken(line, f"line {number} is not a FHIR resource")
            return
        found = resource["resourceType"]
        if found != self._type:
            self._broken(
                line, f"line {number} holds a resource of type {found} in the file of {self._type}"
            )
            return
        request_id = self._owner(resource, line)
        if request_id is None:
            self._shared_write(line)
            return
        if request_id in self.result.broken:
            return
        self._page(request_id).write(line.strip() + b"\n")
        counts = self.result.counts.setdefault(request_id, {})
        counts[found] = counts.get(found, 0) + 1
        cited = {m.decode() for m in _CITED_REFERENCE.findall(line)}
        cited = {key for key in cited if not key.startswith("Patient/")}
        if cited:
            self.result.cited.setdefault(request_id, set()).update(cited)

    def _owner(self, resource: dict[str, object], line: bytes) -> int | None:
        if resource["resourceType"] == "Patient":
            return self._request_of_patient.get(str(resource.get("id")))
        for patient_id in _PATIENT_REFERENCE.findall(line):
            request_id = self._request_of_patient.get(patient_id.decode())
            if request_id is not None:
                return request_id
        return None

    def _broken(self, line: bytes, problem: str) -> None:
        """Fail the one member a broken line names; a line naming none fails the file."""
        owners = {
            self._request_of_patient[p.decode()]
            for p in _PATIENT_REFERENCE.findall(line)
            if p.decode() in self._request_of_patient
        }
        where = f"{self._holder_name}'s {self._type} file: {problem}"
        if len(owners) != 1:
            raise SplitFailed(f"In {where}, and it names no single member of the Group.")
        request_id = owners.pop()
        self.result.broken.setdefault(
            request_id, f"In {where}; this member's record would be incomplete."
        )

    def _page(self, request_id: int) -> PayloadWriter:
        writer = self._open.get(request_id)
        if writer is not None:
            self._open.move_to_end(request_id)
            return writer
        if len(self._open) >= self._max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        segment = self._segments.get(request_id, 0)
        self._segments[request_id] = segment + 1
        writer = self._storage.writer(
            RequestFiles(request_id).bulk_page(
                job_id=self._job_id, file_index=self._file_index, segment=segment
            ),
            # Fetched again if lost: see PayloadStorage.writer.
            durable=False,
        )
        self._open[request_id] = writer
        return writer

    def _shared_write(self, line: bytes) -> None:
        if self._shared is None:
            self._shared = self._storage.writer(self._shared_name, durable=False)
        self._shared.write(line.strip() + b"\n")
        self.result.shared += 1

    def close(self) -> FileSplit:
        """Close every page; the file's lines are then all staged under final names."""
        for writer in self._open.values():
            writer.close()
        self._open.clear()
        if self._shared is not None:
            self._shared.close()
        return self.result

    def abort(self) -> None:
        """Drop the pages still open (a later split of the file rewrites every page)."""
        for writer in self._open.values():
            writer.abort()
        self._open.clear()
        if self._shared is not None:
            self._shared.abort()
            self._shared = None

    def restart(self) -> None:
        """Begin the file again from its first line: the same pages are written again, whole."""
        self.abort()
        self._segments.clear()
        self.result = FileSplit()


def shared_resources(storage: PayloadStorage, *, cohort_id: int, job_id: int) -> dict[str, bytes]:
    """Return the export's no-one's resources by ``Type/id`` (the directory its records cite)."""
    folder = CohortFiles(cohort_id).job_folder(job_id)
    found: dict[str, bytes] = {}
    for name in storage.list(folder):
        if not name.rsplit("/", 1)[-1].startswith("shared-"):
            continue
        for line in ndjson_lines(storage, name):
            resource = orjson.loads(line)
            found[f"{resource['resourceType']}/{resource.get('id')}"] = line
    return found


def cited_page_write(
    storage: PayloadStorage,
    *,
    request_id: int,
    job_id: int,
    cited: set[str],
    shared: dict[str, bytes],
) -> dict[str, int]:
    """Stage the shared resources a member's record cites; return the count per type.

    Always writes the page (empty when nothing is cited), so every member of an export has
    a staged page even when the holder sent nothing of theirs.
    """
    counts: dict[str, int] = {}
    with storage.writer(
        RequestFiles(request_id).bulk_cited_page(job_id=job_id), durable=False
    ) as writer:
        for key in sorted(cited):
            line = shared.get(key)
            if line is None:
                continue
            writer.write(line.strip() + b"\n")
            resource_type = key.split("/", 1)[0]
            counts[resource_type] = counts.get(resource_type, 0) + 1
    return counts
