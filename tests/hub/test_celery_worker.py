"""A task enqueued on commit runs in a real worker process against the real database."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from hub.celery import app as celery_app
from hub.models import SigningKey, SigningKeyStatus
from hub.signing_keys import signing_keys_ensure
from hub.tasks import retire_expired_signing_keys
from tests.conftest import Tenant
from tests.support.celery_worker import running_worker, wait_for


def test_celery_is_configured_for_durability() -> None:
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_time_limit > conf.task_soft_time_limit > 0
    assert {q.name for q in conf.task_queues} == {"default", "pull", "screen", "deliver", "bulk"}


@pytest.mark.django_db(transaction=True)
def test_a_task_enqueued_on_commit_runs_in_a_real_worker(north: Tenant) -> None:
    key = signing_keys_ensure(payer=north.payer)[0]
    SigningKey.objects.for_payer(north.payer).filter(pk=key.pk).update(
        status=SigningKeyStatus.PREVIOUS, retire_after=timezone.now() - timedelta(minutes=1)
    )

    with running_worker():
        with transaction.atomic():
            transaction.on_commit(retire_expired_signing_keys.delay)
            # Not sent yet: the transaction has not committed.
        wait_for(
            lambda: (
                SigningKey.objects.for_payer(north.payer).get(pk=key.pk).status
                == SigningKeyStatus.RETIRED
            )
        )
