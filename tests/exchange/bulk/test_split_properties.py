"""Property-based fuzzing (hypothesis) of the NDJSON a holder's Group export answers with, as
the bulk download reads it: bytes cut into lines as they arrive (``_SplittingTarget``) and
each line routed to its member (``MemberSplitter``), called directly, without HTTP.

Whatever the file holds — invalid UTF-8, blank lines, JSON that is not an object, a resource
of another type than the manifest says, arbitrary JSON inside a resource, a huge line — the
split ends in one of its declared answers: every line counted and staged for its member, kept
aside as no one's, or a member's record broken with a sentence; or SplitFailed with a
sentence when a broken line names no single member. Never an unexpected exception.

How many examples: tests/support/fuzz.py.
"""

import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.bulk.export_jobs import _SplittingTarget
from exchange.bulk.split import MemberSplitter, SplitFailed
from exchange.fhir.json_text import json_parse
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import LocalPayloadStorage
from tests.support.fuzz import fuzz, json_values, mutated

# Holder Patient id -> the hub request of that member.
PATIENTS = {"p1": 101, "p2": 102}
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p1"},
    "recorder": {"reference": "Practitioner/dr1"},
    "code": {"text": "Asthma"},
}


def _dumped(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode()


resources = st.builds(
    lambda kind, patient, cid: {
        "resourceType": kind,
        "id": cid,
        **({"subject": {"reference": f"Patient/{patient}"}} if patient else {}),
    },
    # Observation and Patient are not the manifest's type for this file (Condition).
    st.sampled_from(["Condition", "Observation", "Patient"]),
    st.sampled_from(["p1", "p2", "stranger", ""]),
    st.sampled_from(["c1", "c2", "p1"]),
)
lines = st.one_of(
    st.builds(_dumped, resources | mutated(CONDITION) | json_values, st.booleans()),
    st.binary(max_size=40),
    st.sampled_from([b"", b"  ", b"\r", b"\t \x0b"]),
    # One line of some hundred kilobytes: a resource with a long text in it.
    st.just(_dumped({**CONDITION, "code": {"text": "x" * 300_000}}, True)),
)


@pytest.fixture(scope="module")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("split")


def _staged(storage: LocalPayloadStorage, request_id: int) -> list[bytes]:
    return [
        line
        for name in storage.list(RequestFiles(request_id).staging)
        for line in ndjson_lines(storage, name)
    ]


@fuzz
@given(body=st.lists(lines, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_any_export_file_is_split_or_said_to_be_broken(
    storage_root: Path, body: list[bytes], cuts: list[int]
) -> None:
    storage = LocalPayloadStorage(storage_root / uuid.uuid4().hex)
    text = b"\n".join(body)
    splitter = MemberSplitter(
        storage=storage,
        cohort_id=1,
        job_id=7,
        file_index=0,
        resource_type="Condition",
        request_of_patient=PATIENTS,
        holder_name="South",
    )
    target = _SplittingTarget(splitter, on_progress=lambda: None)
    # The bytes arrive in pieces cut anywhere, as a download writes them.
    positions = sorted({cut % (len(text) + 1) for cut in cuts} | {0, len(text)})
    try:
        for start, end in itertools.pairwise(positions):
            target.write(text[start:end])
        target.finish()
        result = splitter.close()
    except SplitFailed as exc:
        splitter.abort()
        assert str(exc).startswith("In South's Condition file: line "), exc
        assert str(exc).endswith("names no single member of the Group."), exc
        return

    assert result.lines == len([line for line in text.split(b"\n") if line.strip()])
    assert sum(sum(c.values()) for c in result.counts.values()) + result.shared <= result.lines
    for request_id, problem in result.broken.items():
        assert request_id in PATIENTS.values()
        assert problem.startswith("In South's Condition file: line "), problem
    for patient, request_id in PATIENTS.items():
        staged = _staged(storage, request_id)
        assert len(staged) == result.counts.get(request_id, {}).get("Condition", 0)
        for line in staged:
            # What screening reads back later (exchange/retrieval.py, json_parse).
            resource = json_parse(line)
            assert resource["resourceType"] == "Condition"
            assert f"Patient/{patient}".encode() in line
