"""Splitting a Group export's NDJSON per member, flat in memory, the same on every run."""

from pathlib import Path

import orjson
import pytest

from exchange.bulk.split import MemberSplitter, SplitFailed, cited_page_write, shared_resources
from exchange.payloads.layout import RequestFiles
from exchange.payloads.ndjson import ndjson_lines
from exchange.payloads.storage import LocalPayloadStorage

# Holder Patient id -> the hub request of that member.
PATIENTS = {"p1": 101, "p2": 102, "p3": 103}


def line(resource: dict[str, object]) -> bytes:
    return orjson.dumps(resource)


def condition(cid: str, patient: str, practitioner: str = "") -> bytes:
    resource: dict[str, object] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{patient}"},
    }
    if practitioner:
        resource["recorder"] = {"reference": f"Practitioner/{practitioner}"}
    return line(resource)


@pytest.fixture
def storage(tmp_path: Path) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path)


def splitter(
    storage: LocalPayloadStorage, resource_type: str = "Condition", **kwargs: int
) -> MemberSplitter:
    return MemberSplitter(
        storage=storage,
        cohort_id=1,
        job_id=7,
        file_index=0,
        resource_type=resource_type,
        request_of_patient=PATIENTS,
        holder_name="South",
        **kwargs,
    )


def staged(storage: LocalPayloadStorage, request_id: int) -> list[str]:
    return [
        orjson.loads(raw)["id"]
        for name in sorted(storage.list(RequestFiles(request_id).staging))
        for raw in ndjson_lines(storage, name)
    ]


def test_each_line_goes_to_the_member_whose_compartment_it_is_in(
    storage: LocalPayloadStorage,
) -> None:
    split = splitter(storage, max_open=1)  # every change of member closes a page
    for data in [
        condition("c1", "p1", "dr1"),
        condition("c2", "p2"),
        condition("c3", "p1"),
        line(
            {
                "resourceType": "Condition",
                "id": "c4",
                "subject": {"reference": "https://h.example/fhir/Patient/p3"},
            }
        ),
        line(
            {"resourceType": "Condition", "id": "c5", "subject": {"reference": "Patient/stranger"}}
        ),
        b"",
    ]:
        split.feed(data)
    result = split.close()

    assert staged(storage, 101) == ["c1", "c3"]
    assert staged(storage, 102) == ["c2"]
    assert staged(storage, 103) == ["c4"]
    assert result.lines == 5
    assert result.counts == {101: {"Condition": 2}, 102: {"Condition": 1}, 103: {"Condition": 1}}
    assert result.cited == {101: {"Practitioner/dr1"}}
    # A line of no member of the Group is no one's: kept aside, never in a member's record.
    assert result.shared == 1


def test_splitting_again_rewrites_the_same_pages_whole(storage: LocalPayloadStorage) -> None:
    lines = [condition(f"c{i}", f"p{i % 3 + 1}") for i in range(30)]
    first = splitter(storage, max_open=2)
    for data in lines:
        first.feed(data)
    first.close()
    names = sorted(storage.list("requests"))

    again = splitter(storage, max_open=2)
    for data in lines[:10]:
        again.feed(data)
    again.restart()  # the holder ignored Range: the file starts over
    for data in lines:
        again.feed(data)
    again.close()

    assert sorted(storage.list("requests")) == names
    assert [len(staged(storage, r)) for r in (101, 102, 103)] == [10, 10, 10]


def test_a_broken_line_fails_the_member_it_names_and_no_other(storage: LocalPayloadStorage) -> None:
    split = splitter(storage)
    split.feed(condition("c1", "p1"))
    split.feed(condition("c2", "p2")[:-2])  # cut short, as a crashed writer leaves it
    split.feed(
        line({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p3"}})
    )
    split.feed(condition("c3", "p2"))
    result = split.close()

    assert set(result.broken) == {102, 103}
    assert "line 2 is not valid JSON" in result.broken[102]
    assert (
        "line 3 holds a resource of type Observation in the file of Condition" in result.broken[103]
    )
    assert staged(storage, 101) == ["c1"]


def test_a_broken_line_naming_no_member_fails_the_file(storage: LocalPayloadStorage) -> None:
    split = splitter(storage)

    with pytest.raises(SplitFailed, match="line 1 is not valid JSON"):
        split.feed(b'{"resourceType": "Condi')


def test_members_get_the_shared_resources_they_cite(storage: LocalPayloadStorage) -> None:
    shared_file = splitter(storage, resource_type="Practitioner")
    for pid in ("dr1", "dr2"):
        shared_file.feed(line({"resourceType": "Practitioner", "id": pid}))
    shared_file.close()
    shared = shared_resources(storage, cohort_id=1, job_id=7)

    counts = cited_page_write(
        storage,
        request_id=101,
        job_id=7,
        cited={"Practitioner/dr2", "Organization/x"},
        shared=shared,
    )
    empty = cited_page_write(storage, request_id=102, job_id=7, cited=set(), shared=shared)

    assert counts == {"Practitioner": 1}
    assert staged(storage, 101) == ["dr2"]
    assert empty == {} and storage.list(RequestFiles(102).staging)
