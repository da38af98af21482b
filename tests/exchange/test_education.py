"""Member education (exchange/education.py): the hub's default until a payer publishes,
versions numbered or labelled and never changed, the text current at a moment, each payer
its own; the opt-out recorded with the version current then."""

import threading
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from exchange.education import (
    HUB_DEFAULT_VERSION,
    EducationTextRefused,
    member_education_text_current,
    member_education_text_publish,
    member_education_text_shown,
    member_education_texts_list,
    member_education_version_current,
    member_education_version_problem,
    opt_in_withdrawal_record,
)
from exchange.models import MemberEducationText, OptInMethod, OptInRecord
from exchange.services import exchange_request_withdraw
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.exchange.test_services import _in_own_connection, _wait_until_a_query_waits_on_a_lock
from tests.factories import ConsentFactory, ExchangeRequestFactory, OptInRecordFactory, PayerFactory


def _publish(tenant: Tenant, version: str = "", title: str = "Your records, your choice") -> str:
    return member_education_text_publish(
        payer=tenant.payer,
        actor=tenant.admin,
        title=title,
        body="Benefits.\n\nYou may opt in.\r\n\r\nYou may withdraw, like this.",
        version=version,
    ).version


def test_a_payer_that_published_nothing_shows_the_hub_s_default_in_plain_words(
    north: Tenant,
) -> None:
    text = member_education_text_current(payer=north.payer)
    assert (text.version, text.is_hub_default, text.published_at) == (
        HUB_DEFAULT_VERSION,
        True,
        None,
    )
    assert "North Star Health" in text.title
    # What the rule asks to be told: the benefits, the right to opt in and to withdraw, how.
    words = text.body.lower()
    for told in ("why it helps", "it is your choice", "withdraw", "how to opt in", "cms-0057-f"):
        assert told in words, told
    assert len(text.paragraphs) == 5
    assert member_education_texts_list(payer=north.payer) == []
    assert member_education_version_current(payer=north.payer) == HUB_DEFAULT_VERSION


def test_versions_are_numbered_or_labelled_audited_and_the_newest_is_current(
    north: Tenant,
) -> None:
    assert _publish(north) == "1"
    assert _publish(north, version="2027-01") == "2027-01"
    assert _publish(north, title="Third") == "3"

    current = member_education_text_current(payer=north.payer)
    assert (current.version, current.title, current.published_by) == ("3", "Third", "nora-admin")
    assert current.paragraphs == ["Benefits.", "You may opt in.", "You may withdraw, like this."]
    assert [t.version for t in member_education_texts_list(payer=north.payer)] == [
        "3",
        "2027-01",
        "1",
    ]
    audit = AuditEvent.objects.for_payer(north.payer).filter(action="member_education.publish")
    assert [(e.actor, e.changes["version"]) for e in audit.order_by("pk")] == [
        (north.admin, "1"),
        (north.admin, "2027-01"),
        (north.admin, "3"),
    ]


def test_a_number_an_administrator_took_as_a_label_is_skipped(north: Tenant) -> None:
    assert _publish(north, version="2") == "2"
    assert _publish(north) == "3"


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("1", "already published"),
        ("hub-default-2", "the hub's own texts"),
        ("Hub-Default-1", "the hub's own texts"),
        ("version one", "letters, digits, dots, dashes"),
        ("-1", "starting with a letter or a digit"),
    ],
)
def test_a_label_taken_reserved_or_unreadable_is_refused_and_nothing_is_published(
    north: Tenant, version: str, says: str
) -> None:
    _publish(north)
    with pytest.raises(EducationTextRefused) as refused:
        _publish(north, version=version)
    assert refused.value.field == "version"
    assert says in str(refused.value)
    assert MemberEducationText.objects.for_payer(north.payer).count() == 1
    assert (
        AuditEvent.objects.for_payer(north.payer).filter(action="member_education.publish").count()
        == 1
    )


def test_an_empty_title_or_text_is_refused(north: Tenant) -> None:
    for title, body, field in (("  ", "Text", "title"), ("Title", "\n\n", "body")):
        with pytest.raises(EducationTextRefused) as refused:
            member_education_text_publish(
                payer=north.payer, actor=north.admin, title=title, body=body
            )
        assert refused.value.field == field
    assert not MemberEducationText.objects.for_payer(north.payer).exists()


def test_a_published_version_never_changes(north: Tenant) -> None:
    _publish(north)
    text = MemberEducationText.objects.for_payer(north.payer).get()
    text.body = "Other words."
    with pytest.raises(ValueError, match="never changes"):
        text.save()
    text.refresh_from_db()
    assert text.body.startswith("Benefits.")


def test_the_text_current_at_a_moment_is_the_one_published_by_then(north: Tenant) -> None:
    _publish(north)
    MemberEducationText.objects.for_payer(north.payer).update(
        published_at=timezone.now() - timedelta(days=10)
    )
    _publish(north)
    five_days_ago = timezone.now() - timedelta(days=5)
    assert member_education_version_current(payer=north.payer, at=five_days_ago) == "1"
    assert member_education_text_current(payer=north.payer, at=five_days_ago).version == "1"
    assert member_education_version_current(payer=north.payer) == "2"
    # Before the first, members were shown the hub's default.
    long_ago = timezone.now() - timedelta(days=30)
    assert member_education_version_current(payer=north.payer, at=long_ago) == HUB_DEFAULT_VERSION


def test_each_payer_has_its_own_texts_and_labels(north: Tenant, south: Tenant) -> None:
    _publish(north, version="2027-01")
    assert _publish(south, version="2027-01") == "2027-01"  # unique per payer only
    assert _publish(south) == "2"
    assert member_education_text_current(payer=north.payer).published_by == "nora-admin"
    assert member_education_text_shown(payer=north.payer, version="2") is None
    assert member_education_text_shown(payer=south.payer, version="2") is not None
    assert [t.version for t in member_education_texts_list(payer=north.payer)] == ["2027-01"]


def test_a_payer_system_s_version_must_be_a_published_one_once_there_are_any(
    north: Tenant, south: Tenant
) -> None:
    # Before the payer publishes in the hub, its systems' own labels are taken as they are.
    assert member_education_version_problem(payer=north.payer, version="enroll-2026") == ""
    _publish(north)
    _publish(south, version="S-1")
    assert member_education_version_problem(payer=north.payer, version="1") == ""
    assert member_education_version_problem(payer=north.payer, version=HUB_DEFAULT_VERSION) == ""
    assert member_education_version_problem(payer=north.payer, version="") == ""
    problem = member_education_version_problem(payer=north.payer, version="S-1")
    assert "no member-education text of version 'S-1'" in problem and "give one of 1" in problem


def test_the_opt_out_is_recorded_once_with_the_version_current_then(north: Tenant) -> None:
    record = OptInRecordFactory(member=north.member, education_text_version=HUB_DEFAULT_VERSION)
    _publish(north)
    assert opt_in_withdrawal_record(payer=north.payer, opt_in_record_id=record.pk)
    record.refresh_from_db()
    assert record.withdrawn_at is not None
    assert (record.education_text_version, record.withdrawal_education_text_version) == (
        HUB_DEFAULT_VERSION,
        "1",
    )
    first = record.withdrawn_at
    _publish(north)
    assert not opt_in_withdrawal_record(payer=north.payer, opt_in_record_id=record.pk)
    record.refresh_from_db()
    assert (record.withdrawn_at, record.withdrawal_education_text_version) == (first, "1")


def test_another_payer_cannot_record_an_opt_out_of_north_s(north: Tenant, south: Tenant) -> None:
    record = OptInRecordFactory(member=north.member)
    assert not opt_in_withdrawal_record(payer=south.payer, opt_in_record_id=record.pk)
    assert OptInRecord.objects.for_payer(north.payer).get().withdrawn_at is None


@pytest.mark.django_db(transaction=True)
def test_two_consents_of_one_opt_in_withdrawn_at_once_record_the_opt_out(
    north: Tenant, south: Tenant
) -> None:
    record = OptInRecordFactory(member=north.member, method=OptInMethod.PORTAL)
    first, second = (
        ExchangeRequestFactory(
            consent=ConsentFactory(member=north.member, former_payer=former),
            opt_in_record=record,
        )
        for former in (south.payer, PayerFactory(slug="west", name="Western Mutual"))
    )
    failures: list[BaseException] = []
    first_withdrawn, release_first = threading.Event(), threading.Event()

    def withdraw_first_and_hold() -> None:
        with transaction.atomic():
            exchange_request_withdraw(exchange_request=first, actor=north.member)
            first_withdrawn.set()
            release_first.wait(timeout=10)

    def withdraw_second() -> None:
        exchange_request_withdraw(exchange_request=second, actor=north.member)

    holder = _in_own_connection(withdraw_first_and_hold, failures)
    assert first_withdrawn.wait(timeout=10)
    # The second waits for the first's transaction, then sees its consent withdrawn.
    other = _in_own_connection(withdraw_second, failures)
    _wait_until_a_query_waits_on_a_lock()
    release_first.set()
    holder.join(timeout=10)
    other.join(timeout=10)

    assert failures == []
    record.refresh_from_db()
    assert record.withdrawn_at is not None
    assert record.withdrawal_education_text_version == HUB_DEFAULT_VERSION
