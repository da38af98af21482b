"""A long download keeps its job alive for the job reaper, and splits lines across writes."""

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.utils import timezone

from exchange.bulk.export_jobs import _SplittingTarget
from exchange.bulk.jobs import bulk_jobs_resume_stuck, job_heartbeat
from exchange.bulk.split import MemberSplitter
from exchange.models import BulkJob, BulkJobKind, BulkJobState
from exchange.payloads.storage import LocalPayloadStorage
from tests.factories import BulkJobFactory


def _splitter(tmp_path: Path) -> MemberSplitter:
    return MemberSplitter(
        storage=LocalPayloadStorage(tmp_path),
        cohort_id=1,
        job_id=7,
        file_index=0,
        resource_type="Condition",
        request_of_patient={"p1": 101},
        holder_name="South",
    )


def _condition(cid: str) -> bytes:
    return orjson.dumps(
        {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"}}
    )


def test_bytes_arriving_report_progress_at_most_as_often_as_asked(tmp_path: Path) -> None:
    text = b"\n".join(_condition(f"c{n}") for n in range(3)) + b"\n"
    beats: list[int] = []
    splitter = _splitter(tmp_path / "a")
    eager = _SplittingTarget(splitter, on_progress=lambda: beats.append(1), every_seconds=0.0)
    # A line cut across two writes is routed once, whole.
    eager.write(text[:10])
    eager.write(text[10:])
    eager.finish()
    assert len(beats) == 2
    assert splitter.close().counts == {101: {"Condition": 3}}

    quiet: list[int] = []
    patient = _SplittingTarget(
        _splitter(tmp_path / "b"), on_progress=lambda: quiet.append(1), every_seconds=3600.0
    )
    patient.write(text)
    assert quiet == []


@pytest.mark.django_db
def test_a_heartbeat_keeps_a_downloading_job_from_the_reaper() -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    job = BulkJobFactory(kind=BulkJobKind.DATA_EXPORT, state=BulkJobState.DOWNLOADING)
    BulkJob.objects.for_payer(job.payer_id).filter(pk=job.pk).update(last_progress_at=long_ago)

    job_heartbeat(job)

    assert bulk_jobs_resume_stuck(older_than_seconds=300) == []
    # Without it, the reaper would have taken the job for stuck and collected it again.
    BulkJob.objects.for_payer(job.payer_id).filter(pk=job.pk).update(last_progress_at=long_ago)
    assert bulk_jobs_resume_stuck(older_than_seconds=300) == [(job.pk, job.payer_id)]
