"""The cohort pages: the list, a cohort's live progress, its jobs, its members (filters, what
was sent, CSV), and that every one of them is North's alone."""

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from exchange.bulk.roster import CSV_COLUMNS
from exchange.models import BulkJob, BulkJobState, Cohort, CohortMember, CohortStatus
from exchange.models import ExchangeStatus as S
from hub.models import AuditEvent, User
from plan_admin import forms
from plan_admin.views.cohorts import ROSTER_EXAMPLE
from tests.conftest import Tenant
from tests.factories import CohortFactory, FhirEndpointFactory
from tests.plan_admin.conftest import admin_url

HTMX = {"HX-Request": "true"}


def _text(response: Any) -> str:
    return str(response.content.decode())


def test_the_list_shows_our_cohorts_newest_first_with_a_progress_summary(
    north: Tenant, south: Tenant, cohort: Cohort, signed_in: Callable[[User], Client]
) -> None:
    older = CohortFactory(payer=north.payer, former_payer=south.payer, name="Autumn run-off")
    Cohort.objects.for_payer(north.payer).filter(pk=older.pk).update(
        created_at=timezone.now() - timedelta(days=30)
    )
    CohortFactory(payer=south.payer, former_payer=north.payer, name="South's own cohort")
    response = signed_in(north.admin).get(admin_url("cohort-list"))
    assert [c.pk for c in response.context["page"]] == [cohort.pk, older.pk]
    page = _text(response)
    assert "South&#x27;s own cohort" not in page and "South's own cohort" not in page
    assert "1 delivered · 4 in progress · 3 other outcomes" in page
    assert 'aria-current="page"><span>Cohorts</span>' in page
    assert admin_url("cohort-upload") in page


def test_the_progress_counts_each_stage_of_a_cohort_in_mixed_states(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).get(admin_url("cohort-detail", cohort_id=cohort.pk))
    progress = response.context["progress"]
    # Answered by the match: an outcome, or a request that left consented/matching.
    assert (progress.matched, progress.members) == (6, 8)
    assert (progress.files_done, progress.files_total) == (2, 3)
    # Resources of requests past retrieving, of all those retrieved so far.
    assert (progress.resources_screened, progress.resources_retrieved) == (17, 20)
    assert progress.delivered == 1
    assert [(group, n) for group, _, n in progress.outcomes] == [
        ("delivered", 1), ("in_progress", 4), ("not_matched", 1), ("consent_constrained", 1),
        ("failed", 1), ("stopped", 0),
    ]  # fmt: skip
    page = _text(response)
    assert 'for="meter-matched-bar">Members matched</label>' in page
    assert (
        '<progress id="meter-matched-bar" class="plan-admin-meter__bar" max="8" value="6"' in page
    )
    assert "6 of 8 members have the former payer&#x27;s match answer (75%)" in page
    assert "2 of 3 files (67%)" in page
    assert "17 of 20 resources retrieved so far (85%)" in page
    assert "1 of 8 members (12%)" in page
    # Summary: the path and why, who made it from which file.
    for text in ("$bulk-member-match, then Group $davinci-data-export",
                 "offers $bulk-member-match and $davinci-data-export", "january.csv",
                 "nora-admin", "Southern Cross Health"):  # fmt: skip
        assert text in page


def test_the_jobs_table_shows_each_chunk_with_its_files_errors_and_reason(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).get(admin_url("cohort-detail", cohort_id=cohort.pk))
    jobs = response.context["jobs"]
    assert [(row.job.sequence, row.job.kind) for row in jobs] == [
        (1, "member_match"), (1, "data_export"), (2, "member_match")]  # fmt: skip
    page = _text(response)
    for text in ("Exporting 2 of 3 types", "2 of 3 done, 22 lines read",
                 "The former payer kept refusing for too many requests (429)",
                 "The former payer answered 429 ten times.", "2 errors from Southern Cross Health",
                 "Patient 7: birthDate is required"):  # fmt: skip
        assert text in page


def test_the_live_part_polls_while_the_cohort_runs_and_stops_once_it_is_done(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    url = admin_url("cohort-detail", cohort_id=cohort.pk)
    assert 'hx-trigger="every 3s"' in _text(client.get(url))
    poll = {**HTMX, "HX-Target": "cohort-live"}
    same = client.get(url, {"seen": "exporting"}, headers=poll)
    assert same.templates[0].name == "plan_admin/_cohort_live.html"
    assert 'hx-trigger="every 3s"' in _text(same)
    assert "cohort-announcement" not in _text(same)  # nothing new to announce
    Cohort.objects.for_payer(north.payer).filter(pk=cohort.pk).update(status=CohortStatus.COMPLETED)
    done = _text(client.get(url, {"seen": "exporting"}, headers=poll))
    assert "hx-trigger" not in done
    assert (
        'id="cohort-announcement" hx-swap-oob="innerHTML">Now: Every member has an outcome.' in done
    )


def _lines(response: Any) -> list[int]:
    return [member.line for member, _ in response.context["member_rows"]]


def test_members_filter_by_status_group_and_by_name_or_member_id(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    url = admin_url("cohort-detail", cohort_id=cohort.pk)
    get = lambda **q: _lines(client.get(url, q))  # noqa: E731
    assert get() == [2, 3, 4, 5, 6, 7, 8, 9]
    assert get(group="delivered") == [2]
    assert get(group="in_progress") == [3, 4, 8, 9]
    assert get(group="not_matched") == [5]
    assert get(group="consent_constrained") == [6]
    assert get(group="failed") == [7]
    assert get(member="ada lovelace") == [2]
    assert get(member="nsh-1906") == [5]
    assert get(member="hopper", group="delivered") == []
    # With htmx, the members only, and the filter fields out of band.
    fragment = client.get(url, {"group": "failed"}, headers={**HTMX, "HX-Target": "cohort-members"})
    assert fragment.templates[0].name == "plan_admin/_cohort_members.html"
    assert 'id="cohort-members"' in _text(fragment) and 'hx-swap-oob="true"' in _text(fragment)
    assert "<h1>" not in _text(fragment)
    # A filter that is not valid lists nothing, and says so.
    bad = client.get(url, {"group": "everything"})
    assert bad.status_code == 400
    assert _lines(bad) == []
    assert "The filter is not valid, so no member is listed" in _text(bad)


def test_what_was_sent_is_shown_for_members_not_matched_or_failed_only(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).get(admin_url("cohort-detail", cohort_id=cohort.pk))
    sent = {member.line: what for member, what in response.context["member_rows"] if what}
    assert set(sent) == {5, 7}
    assert (sent[5].name, sent[5].birth_date, sent[5].gender, sent[5].card_member_id) == (
        "Grace Brewster Hopper", "1974-12-25", "female", "SCH-99999")  # fmt: skip
    assert (sent[5].coverage_start, sent[5].coverage_end) == ("2021-01-01", "2026-12-31")
    page = _text(response)
    assert page.count("<summary>What was sent</summary>") == 2
    assert "SCH-99999" in page and "SCH-CONSENT" not in page


def test_the_members_csv_follows_the_filter_and_leaves_what_was_sent_out(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    url = admin_url("cohort-members-export", cohort_id=cohort.pk)
    response = client.get(url, {"group": "not_matched"})
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="cohort-{cohort.pk}-members-north-' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    grace = CohortMember.objects.for_payer(north.payer).get(cohort=cohort, line=5)
    assert row == {
        "line": "5", "request id": str(grace.exchange_request_id), "member first name": "Grace",
        "member last name": "Hopper", "new member id": "NSH-1906",
        "status": "Member not found at the former payer", "status code": "no_match",
        "match outcome": "Not matched", "match outcome code": "nomatch",
        "reason": "Member not found at the former payer", "reason code": "no_match",
        "due by": row["due by"], "status changed at": row["status changed at"],
    }  # fmt: skip
    everyone = b"".join(client.get(url).streaming_content).decode()
    assert len(list(csv.reader(io.StringIO(everyone)))) == 9
    # The demographics and card sent to the former payer stay on the page.
    assert "SCH-" not in everyone and "1974-12-25" not in everyone
    assert client.get(url, {"group": "everything"}).status_code == 400


def test_a_cohort_members_request_page_names_its_cohort_and_line(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    grace = CohortMember.objects.for_payer(north.payer).get(cohort=cohort, line=5)
    page = _text(
        signed_in(north.admin).get(
            admin_url("request-detail", request_id=grace.exchange_request_id)
        )
    )
    assert "Part of cohort" in page and "January enrollment</a> (line 5)" in page
    assert admin_url("cohort-detail", cohort_id=cohort.pk) in page


def test_every_cohort_page_and_action_is_a_404_to_anyone_but_norths_admin(
    cohort: Cohort, north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    pages = ["cohort-list", "cohort-upload", "cohort-roster-example"]
    of_cohort = ["cohort-detail", "cohort-members-export"]
    chunk = BulkJob.objects.for_payer(north.payer).get(cohort=cohort, sequence=2)
    actions = [("cohort-cancel", {}), ("cohort-chunk-retry", {"job_id": chunk.pk})]
    urls = [admin_url(name) for name in pages]
    urls += [admin_url(name, cohort_id=cohort.pk) for name in of_cohort]
    for url in urls:
        assert signed_in(north.admin).get(url).status_code == 200, url
    posts = [admin_url(name, cohort_id=cohort.pk, **kwargs) for name, kwargs in actions]
    # One session per outsider: a 404 changes nothing in it.
    outsiders = {user: signed_in(user) for user in (south.admin, north.member, south.member)}
    for url in urls + posts:
        for outsider, client in outsiders.items():
            assert client.get(url).status_code == 404, (url, outsider)
            assert client.post(url).status_code == 404, (url, outsider)
        signed_out = Client().get(url)
        assert signed_out.status_code == 302 and "/sign-in/" in signed_out["Location"]
    # South's administrator at South, with North's cohort id: there is no such cohort.
    for name in of_cohort:
        url = admin_url(name, slug="south", cohort_id=cohort.pk)
        assert outsiders[south.admin].get(url).status_code == 404
    for name, kwargs in actions:
        url = admin_url(name, slug="south", cohort_id=cohort.pk, **kwargs)
        assert outsiders[south.admin].post(url).status_code == 404
    cohort.refresh_from_db()
    assert cohort.status == CohortStatus.EXPORTING
    assert not AuditEvent.objects.for_payer(north.payer).exists()


# --- Upload a roster -----------------------------------------------------------------------

EXAMPLE_CSV = ROSTER_EXAMPLE.read_bytes()


def _upload(client: Client, data: bytes, filename: str, name: str = "January enrollees") -> Any:
    return client.post(
        admin_url("cohort-upload"), {"name": name, "roster": SimpleUploadedFile(filename, data)}
    )


def test_the_upload_page_explains_every_column_the_roster_reader_takes(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).get(admin_url("cohort-upload"))
    assert tuple(name for name, _ in response.context["columns"]) == CSV_COLUMNS
    page = _text(response)
    assert "at most 50 MB" in page and 'enctype="multipart/form-data"' in page
    example = signed_in(north.admin).get(admin_url("cohort-roster-example"))
    assert example["Content-Disposition"] == 'attachment; filename="roster_example.csv"'
    assert b"".join(example.streaming_content) == EXAMPLE_CSV
    assert admin_url("cohort-roster-example") in page


def test_a_bad_roster_shows_every_problem_keeps_the_name_and_creates_nothing(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    FhirEndpointFactory(payer=south.payer)
    header, first, second, *_ = EXAMPLE_CSV.decode().splitlines()
    bad = "\n".join([
        header,
        first.replace("1974-12-25", "1974-13-25"),  # no 13th month
        second.replace(",male,", ",robot,").replace("non_sensitive", "some"),
    ]).encode()  # fmt: skip
    response = _upload(signed_in(north.admin), bad, "january.csv", name="Keep this name")
    assert response.status_code == 400
    problems = response.context["problems"]
    assert [(p.line, p.column) for p in problems] == [
        (2, "birth_date"), (3, "gender"), (3, "consent")]  # fmt: skip
    page = _text(response)
    assert "3 problems to fix" in page and "Nothing was created." in page
    for problem in problems:
        assert escape(problem.message) in page
    assert 'value="Keep this name"' in page
    assert not Cohort.objects.for_payer(north.payer).exists()
    assert not AuditEvent.objects.for_payer(north.payer).exists()
    # A file the reader cannot take at all is one problem of the whole file.
    whole = _upload(signed_in(north.admin), b"hello", "january.xlsx")
    assert [(p.line, p.column) for p in whole.context["problems"]] == [(0, "")]
    assert "Whole file" in _text(whole)


def test_a_roster_whose_former_payer_cannot_be_asked_in_bulk_is_refused_in_words(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    FhirEndpointFactory(payer=south.payer, offers_backend_services=False)
    response = _upload(signed_in(north.admin), EXAMPLE_CSV, "january.csv")
    assert response.status_code == 400
    assert "does not offer payer-to-payer access" in response.context["refusal"]
    assert "The cohort was not created" in _text(response)
    assert not Cohort.objects.for_payer(north.payer).exists()


def test_a_roster_bigger_than_the_limit_is_refused_before_it_is_read(
    north: Tenant, signed_in: Callable[[User], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "ROSTER_MAX_BYTES", 1024)
    response = _upload(signed_in(north.admin), b"x" * 2048, "january.csv")
    assert response.status_code == 400
    assert "a roster may be at most" in _text(response)
    assert "problems" not in response.context


def test_a_good_roster_creates_the_cohort_and_opens_its_page(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    FhirEndpointFactory(payer=south.payer, bulk_match_chunk_size=250)
    client = signed_in(north.admin)
    response = _upload(client, EXAMPLE_CSV, "january.csv")
    cohort = Cohort.objects.for_payer(north.payer).get()
    assert response.status_code == 302
    assert response["Location"] == admin_url("cohort-detail", cohort_id=cohort.pk)
    assert (cohort.name, cohort.roster_name, cohort.former_payer, cohort.created_by) == (
        "January enrollees", "january.csv", south.payer, north.admin)  # fmt: skip
    page = _text(client.get(response["Location"]))
    assert "The cohort is created with 3 members" in page
    assert list(CohortMember.objects.for_payer(north.payer).values_list(
        "line", flat=True).order_by("line")) == [2, 3, 4]  # fmt: skip


# --- Cancel and retry ----------------------------------------------------------------------


def test_cancel_stops_the_cohort_and_its_members_once(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    detail = admin_url("cohort-detail", cohort_id=cohort.pk)
    assert "Cancel the cohort…" in _text(client.get(detail))
    response = client.post(admin_url("cohort-cancel", cohort_id=cohort.pk), follow=True)
    assert "The cohort is cancelled" in _text(response)
    cohort.refresh_from_db()
    assert cohort.status == CohortStatus.CANCELLED
    statuses = dict(
        CohortMember.objects.for_payer(north.payer).values_list("line", "exchange_request__status")
    )
    assert statuses[2] == "delivered" and statuses[4] == statuses[7] == "cancelled"
    audit = AuditEvent.objects.for_payer(north.payer).get(action="cohort.cancel")
    assert audit.actor == north.admin
    page = _text(client.get(detail))
    assert "Cancel the cohort…" not in page and "every 3s" not in page
    again = client.post(admin_url("cohort-cancel", cohort_id=cohort.pk), headers=HTMX, follow=False)
    assert again["HX-Redirect"] == detail
    assert "already cancelled" in _text(client.get(detail))


def test_retry_runs_a_failed_chunk_again_and_refuses_with_a_reason(
    cohort: Cohort, north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    failed = CohortMember.objects.for_payer(north.payer).get(cohort=cohort, line=7)
    chunk = BulkJob.objects.for_payer(north.payer).get(cohort=cohort, sequence=2)
    CohortMember.objects.for_payer(north.payer).filter(pk=failed.pk).update(match_job=chunk)
    client = signed_in(north.admin)
    page = _text(client.get(admin_url("cohort-detail", cohort_id=cohort.pk)))
    assert "Retry chunk 2</button>" in page and "Retry chunk 1</button>" not in page
    retry = admin_url("cohort-chunk-retry", cohort_id=cohort.pk, job_id=chunk.pk)
    assert "The chunk starts over" in _text(client.post(retry, follow=True))
    failed.exchange_request.refresh_from_db()
    assert failed.exchange_request.status == S.CONSENTED
    assert (
        AuditEvent.objects.for_payer(north.payer).filter(action="cohort.chunk_retry").count() == 1
    )
    # Nothing failed in chunk 2 now: the service's reason is shown, nothing is audited.
    BulkJob.objects.for_payer(north.payer).filter(pk=chunk.pk).update(state=BulkJobState.FAILED)
    refused = _text(client.post(retry, follow=True))
    assert "No member of chunk 2 failed; nothing to retry." in refused
    assert (
        AuditEvent.objects.for_payer(north.payer).filter(action="cohort.chunk_retry").count() == 1
    )
