"""What the hub team watches across payers (issue 14, item 6): the work waiting in each Celery
queue, requests failing or stuck by former payer with the last error, the rule's clock, and the
hosted SFTP repository's uncollected files and space.

Read-only and metadata only: counts, states, dates, reason codes and the engine's own failure
sentences, never a card number or record content. Each part is one grouped query however many
payers there are, and the payers they name are read once for them all, so the page costs the
same for two payers and for two hundred.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db.models import Count, Min, OuterRef, Q, Subquery
from kombu.exceptions import OperationalError

from exchange.deadlines import OWING, DeadlinesOwed, deadlines_owed_by_payer
from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.repository.selectors import (
    RepositorySpace,
    UncollectedFiles,
    repository_space,
    repository_uncollected_by_payer,
)
from exchange.repository.storage import repository_storage
from exchange.state_machine import STUCK_CAN_BE, exchange_requests_stuck_filter
from hub.models import Payer

# Failures older than this are history, not trouble: the rule's clock is one week from the
# opt-in (CMS-0057-F, 42 CFR 422.121(b)), so a week's failures are the ones still owed.
FAILED_WITHIN_DAYS = 7
# Below this share of its volume free the repository is shown in warning: a delivery into a
# full volume fails, and collected files are purged only hourly.
SPACE_WARNING_FREE_PERCENT = 10
# How long the page waits for the broker before saying it cannot reach it.
BROKER_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class QueueDepth:
    name: str
    waiting: int


@dataclass(frozen=True)
class QueueDepths:
    """Messages waiting per queue the hub routes to, or why the broker could not tell."""

    queues: list[QueueDepth]
    problem: str = ""


def celery_queue_depths() -> QueueDepths:
    """Return the messages waiting in each Celery queue the hub declares, asking the broker
    through kombu (Redis, AMQP or the demo's filesystem broker alike); a broker that cannot be
    reached is a sentence, not an error."""
    app = current_app
    names = list(app.amqp.queues)
    with app.connection_for_read(connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
        unreachable: tuple[type[BaseException], ...] = (
            OperationalError,
            OSError,
            *connection.connection_errors,
        )
        empty: tuple[type[BaseException], ...] = tuple(connection.channel_errors)
        try:
            connection.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
            )
            depths = []
            for name in names:
                # A channel per queue: AMQP closes a channel on a failed passive declare.
                with connection.channel() as channel:
                    # kombu's stubs leave queue_declare out.
                    declare = channel.queue_declare  # type: ignore[attr-defined]
                    try:
                        waiting = declare(queue=name, passive=True).message_count
                    except empty:
                        # Redis keeps no empty list, and an AMQP queue no worker declared
                        # yet does not exist: either way nothing waits there.
                        waiting = 0
                depths.append(QueueDepth(name=name, waiting=waiting))
        except unreachable as exc:
            return QueueDepths(
                queues=[],
                problem=(
                    # Where it was looked for, without the URL's password.
                    f"The Celery broker ({connection.transport_cls} at {connection.host}) "
                    f"cannot be reached ({exc}), so the queue depths are unknown: check that "
                    "it runs and that CELERY_BROKER_URL points at it."
                ),
            )
    return QueueDepths(queues=depths)


@dataclass(frozen=True)
class LastFailure:
    request_id: int
    requester_id: int
    reason_code: str
    reason_message: str
    at: datetime


@dataclass(frozen=True)
class FormerPayerTrouble:
    """A former payer's requests that failed lately or are stuck, across requesting payers."""

    former_payer_id: int
    failed: int
    stuck: int
    last_failure: LastFailure | None
    stuck_since: datetime | None
    oldest_stuck_request_id: int | None


def _trouble_filters(*, now: datetime) -> tuple[Q, Q]:
    failed = Q(
        status=ExchangeStatus.FAILED,
        status_changed_at__gte=now - timedelta(days=FAILED_WITHIN_DAYS),
    )
    stuck = exchange_requests_stuck_filter(
        not_moved_since=now - timedelta(seconds=settings.EXCHANGE_STUCK_AFTER_SECONDS)
    )
    return failed, stuck


def former_payers_in_trouble(*, now: datetime) -> list[FormerPayerTrouble]:
    """Return, per former payer with any, its requests failed in the last FAILED_WITHIN_DAYS
    days (with the latest failure's reason) and those stuck (with the oldest), most troubled
    first: two queries however many payers."""
    failed, stuck = _trouble_filters(now=now)
    reason = "the hub team watches every payer's failing and stuck requests, as metadata only"
    requests = ExchangeRequest.objects.across_payers(reason=reason)
    latest_failed = (
        requests.filter(failed, former_payer=OuterRef("former_payer"))
        .order_by("-status_changed_at", "-pk")
        .values("pk")[:1]
    )
    oldest_stuck = (
        requests.filter(stuck, former_payer=OuterRef("former_payer"))
        .order_by("last_progress_at", "pk")
        .values("pk")[:1]
    )
    rows = list(
        requests.filter(failed | stuck)
        .values("former_payer_id")
        .annotate(
            failed=Count("pk", filter=failed),
            stuck=Count("pk", filter=stuck),
            stuck_since=Min("last_progress_at", filter=stuck),
            last_failed_id=Subquery(latest_failed),
            oldest_stuck_id=Subquery(oldest_stuck),
        )
        .order_by()
    )
    failures = {
        pk: LastFailure(pk, payer_id, code, message, at)
        for pk, payer_id, code, message, at in requests.filter(
            pk__in=[row["last_failed_id"] for row in rows if row["last_failed_id"]]
        ).values_list("pk", "payer_id", "reason_code", "reason_message", "status_changed_at")
    }
    troubles = [
        FormerPayerTrouble(
            former_payer_id=row["former_payer_id"],
            failed=row["failed"],
            stuck=row["stuck"],
            last_failure=failures.get(row["last_failed_id"]),
            stuck_since=row["stuck_since"],
            oldest_stuck_request_id=row["oldest_stuck_id"],
        )
        for row in rows
    ]
    return sorted(troubles, key=lambda t: (-(t.failed + t.stuck), t.former_payer_id))


@dataclass(frozen=True)
class SpaceReading:
    """The repository volume's space, or why it could not be read; and whether to warn."""

    space: RepositorySpace | None
    problem: str = ""
    # Where the repository is when it is not a local volume ("object store: <bucket>/..."):
    # an object store has no free space to read or run out of.
    object_store: str = ""

    @property
    def low(self) -> bool:
        return self.space is not None and self.space.free_percent < SPACE_WARNING_FREE_PERCENT


def repository_space_reading() -> SpaceReading:
    """Return the space of the volume holding SFTP_REPOSITORY_DIR, or a sentence saying why it
    cannot be read; for the object store, which bucket holds it."""
    if settings.PAYLOAD_STORAGE_BACKEND == "s3":
        return SpaceReading(space=None, object_store=repository_storage().describe())
    try:
        return SpaceReading(space=repository_space())
    except OSError as exc:
        return SpaceReading(
            space=None,
            problem=(
                f"The space of {settings.SFTP_REPOSITORY_DIR} cannot be read ({exc.strerror}): "
                "check that SFTP_REPOSITORY_DIR names a folder the hub may read."
            ),
        )


@dataclass(frozen=True)
class Operations:
    """Everything the operations view shows, with the payers it names read once."""

    now: datetime
    queues: QueueDepths
    troubles: list[FormerPayerTrouble]
    deadlines: dict[int, DeadlinesOwed]
    uncollected: list[UncollectedFiles]
    space: SpaceReading
    payers: dict[int, Payer] = field(default_factory=dict)

    @property
    def stuck_after_seconds(self) -> int:
        return int(settings.EXCHANGE_STUCK_AFTER_SECONDS)

    @property
    def failed_within_days(self) -> int:
        return FAILED_WITHIN_DAYS

    @property
    def space_warning_free_percent(self) -> int:
        return SPACE_WARNING_FREE_PERCENT


def hub_operations(*, now: datetime) -> Operations:
    """Return the operations view's readings across payers, taken at ``now``: a fixed number
    of queries however many payers and requests there are."""
    troubles = former_payers_in_trouble(now=now)
    deadlines = deadlines_owed_by_payer(now=now)
    uncollected = repository_uncollected_by_payer()
    payer_ids = {t.former_payer_id for t in troubles}
    payer_ids |= {t.last_failure.requester_id for t in troubles if t.last_failure}
    payer_ids |= set(deadlines) | {u.payer_id for u in uncollected}
    payers = Payer.objects.in_bulk(payer_ids) if payer_ids else {}
    return Operations(
        now=now,
        queues=celery_queue_depths(),
        troubles=troubles,
        deadlines=dict(
            sorted(deadlines.items(), key=lambda item: (-item[1].overdue, -item[1].due_soon))
        ),
        uncollected=uncollected,
        space=repository_space_reading(),
        payers=payers,
    )


# The states the rule's clock counts (not delivered yet) and those a stuck request can be in,
# for the console's filtered lists.
OWING_STATUSES = sorted(OWING)
STUCK_STATUSES = sorted(STUCK_CAN_BE)
