"""A holder's own limit on a client's bulk requests is a queue, not a fault: the hub keeps no
more than BULK_JOBS_AT_ONCE_PER_HOLDER requests at work there, and a kick-off refused with 429
waits its turn (for hours if need be) instead of counting towards giving up."""

from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from exchange.bulk.jobs import MAX_CONSECUTIVE_ERRORS, job_error, job_waits_its_turn
from exchange.fhir.errors import FhirTransientError
from exchange.models import BulkJob, BulkJobKind, BulkJobState
from tests.factories import BulkJobFactory, CohortFactory

pytestmark = pytest.mark.django_db

J = BulkJobState


def _busy() -> FhirTransientError:
    return FhirTransientError(
        "Southern Cross Health's server asked the hub to slow down (HTTP 429): 4 bulk jobs of "
        "this client are still running; wait for one.",
        code="throttled",
        retry_after=5.0,
        status=429,
    )


def test_a_job_waits_while_the_payer_has_enough_requests_at_work_at_that_holder(
    settings: Settings,
) -> None:
    settings.BULK_JOBS_AT_ONCE_PER_HOLDER = 2
    cohort = CohortFactory()
    waiting = BulkJobFactory(cohort=cohort, kind=BulkJobKind.DATA_EXPORT)
    BulkJobFactory(cohort=cohort, state=J.RUNNING)
    # Not at work at the holder: finished there, or another holder, or another payer's.
    BulkJobFactory(cohort=cohort, state=J.DOWNLOADING)
    BulkJobFactory(cohort=CohortFactory(payer=cohort.payer), state=J.RUNNING)
    BulkJobFactory(cohort=CohortFactory(former_payer=cohort.former_payer), state=J.RUNNING)
    assert job_waits_its_turn(waiting) is None

    BulkJobFactory(cohort=CohortFactory(payer=cohort.payer, former_payer=cohort.former_payer),
                   state=J.RUNNING)  # fmt: skip
    turn = job_waits_its_turn(waiting)
    assert turn is not None and turn.run_again_in is not None and turn.run_again_in > 0
    waiting.refresh_from_db()
    assert waiting.state == J.WAITING
    assert waiting.next_poll_at is not None and waiting.next_poll_at > timezone.now()


def test_a_kick_off_refused_as_busy_waits_without_counting_towards_giving_up() -> None:
    job = BulkJobFactory(kind=BulkJobKind.DATA_EXPORT, consecutive_errors=0)

    for _ in range(MAX_CONSECUTIVE_ERRORS + 5):
        follow = job_error(job, _busy())
        assert follow.run_again_in == 5.0

    job.refresh_from_db()
    assert (job.state, job.consecutive_errors) == (J.WAITING, 0)
    assert "HTTP 429" in job.reason_message


def test_a_holder_that_stays_busy_past_the_patience_fails_the_job_saying_so(
    settings: Settings,
) -> None:
    settings.BULK_KICK_OFF_PATIENCE_SECONDS = 3600
    job = BulkJobFactory(kind=BulkJobKind.DATA_EXPORT)
    BulkJob.objects.for_payer(job.payer_id).filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    job.refresh_from_db()

    job_error(job, _busy())

    job.refresh_from_db()
    assert (job.state, job.reason_code) == (J.FAILED, "holder_busy")
    assert job.reason_message.startswith(
        f"{job.cohort.former_payer.name} kept refusing to start this request for 2 hours"
    )
    assert job.reason_message.endswith("retry the chunk later.")


def test_a_429_while_polling_still_counts_as_a_fault() -> None:
    job = BulkJobFactory(kind=BulkJobKind.DATA_EXPORT, state=J.RUNNING)

    job_error(job, _busy())

    job.refresh_from_db()
    assert job.consecutive_errors == 1
