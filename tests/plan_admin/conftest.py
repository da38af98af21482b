"""Fixtures of the plan-admin portal tests: signed-in clients, browsers, portal URLs and a
cohort in every kind of state."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Browser, BrowserContext, Page

from exchange.models import (
    BulkJobKind,
    BulkJobState,
    Cohort,
    CohortMember,
    CohortStatus,
    ExchangeStatus,
    MatchOutcome,
)
from hub.models import User
from tests.conftest import Tenant
from tests.factories import BulkJobFactory, CohortFactory, CohortMemberFactory
from tests.support.browser import launched_chromium


@pytest.fixture
def signed_in() -> Callable[[User], Client]:
    """Return a test client signed in as the given person."""

    def sign_in(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


def admin_url(name: str, slug: str = "north", **kwargs: Any) -> str:
    return reverse(f"plan_admin:{name}", kwargs={"payer_slug": slug, **kwargs})


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module, so the browser tests stay bounded in time."""
    with launched_chromium() as chromium:
        yield chromium


DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def admin_browser(browser: Browser, live_server: Any, north: Tenant) -> Iterator[BrowserContext]:
    """A browser signed in as North's administrator, at desktop width."""
    client = Client()
    client.force_login(north.admin)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.add_cookies([{
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": live_server.url,
    }])  # fmt: skip
    yield context
    context.close()


@pytest.fixture
def page(admin_browser: BrowserContext) -> Page:
    """A tab of ``admin_browser`` that waits up to 15 s for what it expects."""
    admin_browser.set_default_timeout(15_000)
    return admin_browser.new_page()


def no_sideways_scrolling(page: Page) -> None:
    """Only a scrollable table wrapper may be wider than a phone's screen."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


S = ExchangeStatus


def _sent_bundle(given: str, family: str, card: str) -> str:
    """A MemberBundle as $bulk-member-match sends it (exchange/bulk/matching.py)."""
    return json.dumps({"name": "MemberBundle", "part": [
        {"name": "MemberPatient", "resource": {
            "resourceType": "Patient", "id": "cm-1", "gender": "female", "birthDate": "1974-12-25",
            "name": [{"use": "official", "family": family, "given": given.split()}]}},
        {"name": "CoverageToMatch", "resource": {
            "resourceType": "Coverage", "identifier": [{"value": card}],
            "period": {"start": "2021-01-01", "end": "2026-12-31"}}},
    ]})  # fmt: skip


def _member(cohort: Cohort, line: int, status: str, **fields: Any) -> CohortMember:
    given, family, member_id = fields.pop("person", ("Pat", f"Line{line}", f"NSH-{line:04d}"))
    return CohortMemberFactory(
        cohort=cohort, line=line,
        exchange_request__status=status,
        exchange_request__consent__member__first_name=given,
        exchange_request__consent__member__last_name=family,
        exchange_request__consent__member__plan_member_id=member_id,
        **{key if key in ("match_outcome", "submitted") else f"exchange_request__{key}": value
           for key, value in fields.items()},
    )  # fmt: skip


@pytest.fixture
def cohort(north: Tenant, south: Tenant) -> Cohort:
    """North's cohort asked of South, its eight members in every kind of state."""
    cohort = CohortFactory(
        payer=north.payer, former_payer=south.payer, name="January enrollment",
        status=CohortStatus.EXPORTING, member_count=8, created_by=north.admin,
        roster_name="january.csv", path="davinci_data_export",
        path_reason="Southern Cross Health offers $bulk-member-match and $davinci-data-export.",
    )  # fmt: skip
    M = MatchOutcome
    _member(
        cohort,
        2,
        S.DELIVERED,
        match_outcome=M.MATCH,
        person=("Ada", "Lovelace", "NSH-1815"),
        resource_counts={"ExplanationOfBenefit": 10, "Coverage": 2},
    )
    _member(
        cohort, 3, S.PACKAGING, match_outcome=M.MATCH, resource_counts={"ExplanationOfBenefit": 5}
    )
    _member(cohort, 4, S.RETRIEVING, match_outcome=M.MATCH, resource_counts={"Coverage": 3})
    _member(
        cohort,
        5,
        S.NO_MATCH,
        match_outcome=M.NO_MATCH,
        reason_code="no_match",
        person=("Grace", "Hopper", "NSH-1906"),
        submitted=_sent_bundle("Grace Brewster", "Hopper", "SCH-99999"),
    )
    _member(
        cohort,
        6,
        S.CONSENT_CONSTRAINED,
        match_outcome=M.CONSENT_CONSTRAINT,
        submitted=_sent_bundle("Con", "Strained", "SCH-CONSENT"),
    )
    _member(
        cohort,
        7,
        S.FAILED,
        reason_code="network",
        submitted=_sent_bundle("Fay", "Led", "SCH-FAILED"),
    )
    _member(cohort, 8, S.CONSENTED)
    _member(cohort, 9, S.MATCHING)  # fmt: skip
    export_files = [
        {
            "type": "ExplanationOfBenefit",
            "url": "https://x/1",
            "count": 15,
            "lines": 15,
            "done": True,
        },
        {"type": "Coverage", "url": "https://x/2", "count": 5, "lines": 5, "done": True},
        {"type": "Patient", "url": "https://x/3", "count": 8, "lines": 2, "done": False},
    ]
    for kind, sequence, state, fields in (
        (BulkJobKind.MEMBER_MATCH, 1, BulkJobState.DONE, {"polls": 4, "progress": "100%"}),
        (
            BulkJobKind.DATA_EXPORT,
            1,
            BulkJobState.DOWNLOADING,
            {"polls": 7, "progress": "Exporting 2 of 3 types", "files": export_files},
        ),
        (
            BulkJobKind.MEMBER_MATCH,
            2,
            BulkJobState.FAILED,
            {
                "reason_code": "throttled",
                "reason_message": "The former payer answered 429 ten times.",
                "holder_errors": ["Patient 7: birthDate is required", "Coverage: bad period"],
            },
        ),
    ):
        BulkJobFactory(cohort=cohort, kind=kind, sequence=sequence, state=state, **fields)  # fmt: skip
    return cohort
