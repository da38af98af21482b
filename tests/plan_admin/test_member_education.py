"""The *Member education* page: North's administrator sees what members read now and every
earlier version, previews and publishes a new one (audited); bad input is refused with an
error summary and publishes nothing; South's administrator gets 404 and a member gets
nothing. The request page tells the opt-in's method, date and education text version."""

import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone

from exchange.education import HUB_DEFAULT_VERSION, member_education_text_publish
from exchange.models import MemberEducationText, OptInMethod
from hub.models import AuditEvent, User
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory, OptInRecordFactory
from tests.plan_admin.conftest import admin_url

TEXT = {
    "title": "Bringing your records to North Star",
    "body": "Your former plans can send us your records.\r\n\r\nYou choose: opt in, or not.\r\n"
    "\r\nTo withdraw, open your request and choose Withdraw consent.",
    "version": "",
}


def _published(tenant: Tenant) -> list[str]:
    return list(
        MemberEducationText.objects.for_payer(tenant.payer)
        .order_by("pk")
        .values_list("version", flat=True)
    )


def test_the_administrator_publishes_versions_and_sees_each_with_its_date_and_publisher(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    page = client.get(admin_url("member-education")).content.decode()
    assert "Hub default" in page and HUB_DEFAULT_VERSION in page
    assert "Bringing your health records to North Star Health" in page
    # Linked in the portal's navigation, marked as the page one is on.
    assert re.search(
        r'href="/p/north/admin/member-education/" aria-current="page"><span>Member education<',
        page,
    )

    response = client.post(admin_url("member-education-publish"), TEXT, follow=True)
    assert response.redirect_chain == [("/p/north/admin/member-education/", 302)]
    page = response.content.decode()
    assert "Version 1 is published" in page
    current = page[page.index('id="current"') : page.index('id="publish"')]
    assert "Version <code" in current and ">1</code>" in current and "nora-admin" in current
    assert "<p>You choose: opt in, or not.</p>" in current
    assert "Hub default" not in page

    client.post(
        admin_url("member-education-publish"),
        {**TEXT, "title": "Your records, your choice", "version": "2027-01"},
    )
    assert _published(north) == ["1", "2027-01"]
    page = client.get(admin_url("member-education")).content.decode()
    versions = page[page.index('id="versions"') :]
    rows = re.findall(r'<td data-label="Version"><code class="plan-admin-code">([^<]+)<', versions)
    assert rows == ["2027-01", "1"]  # newest first, the first marked current
    assert versions.count("nora-admin") == 2
    for text in MemberEducationText.objects.for_payer(north.payer):
        assert text.published_at.strftime("%Y-%m-%d %H:%M") in versions
    audit = AuditEvent.objects.for_payer(north.payer).filter(action="member_education.publish")
    assert [(e.actor, e.changes["version"]) for e in audit.order_by("pk")] == [
        (north.admin, "1"),
        (north.admin, "2027-01"),
    ]


def test_a_preview_shows_the_text_as_members_will_read_it_and_publishes_nothing(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).post(
        admin_url("member-education-publish"), {**TEXT, "preview": "1"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    preview = page[page.index('id="preview"') : page.index('id="publish"')]
    assert "Preview: not published yet" in preview
    assert "<p>To withdraw, open your request and choose Withdraw consent.</p>" in preview
    # The form keeps what was typed, ready to publish.
    assert 'value="Bringing your records to North Star"' in page
    assert _published(north) == []
    assert not AuditEvent.objects.for_payer(north.payer).exists()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"body": ""}, "Write the text members will read."),
        ({"title": ""}, "Give the text a title."),
        ({"version": "1"}, "Version 1 is already published"),
        ({"version": "hub-default-9"}, "name the hub&#x27;s own texts"),
        ({"version": "my version"}, "letters, digits, dots, dashes or underscores"),
    ],
)
def test_bad_input_is_refused_with_an_error_summary_and_nothing_is_published(
    north: Tenant, signed_in: Callable[[User], Client], change: dict[str, str], says: str
) -> None:
    member_education_text_publish(payer=north.payer, actor=north.admin, title="T", body="B")
    response = signed_in(north.admin).post(admin_url("member-education-publish"), TEXT | change)
    assert response.status_code == 400
    page = response.content.decode()
    summary = page[page.index("usa-alert--error") :].split("</ul>")[0]
    assert says in summary
    assert re.search(r'href="#education-(title|body|version)"', summary)
    assert _published(north) == ["1"]
    assert AuditEvent.objects.for_payer(north.payer).count() == 1


def test_another_payer_s_admin_gets_404_and_a_member_gets_no_access(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    member_education_text_publish(
        payer=north.payer, actor=north.admin, title="North's words", body="Only North's."
    )
    sam = signed_in(south.admin)
    assert sam.get(admin_url("member-education", "north")).status_code == 404
    assert sam.post(admin_url("member-education-publish", "north"), TEXT).status_code == 404
    own = sam.get(admin_url("member-education", "south"))
    assert own.status_code == 200
    assert "North&#x27;s words" not in own.content.decode()
    assert "Southern Cross Health" in own.content.decode()  # South's own default
    ned = signed_in(north.member)
    assert ned.get(admin_url("member-education")).status_code == 404
    assert ned.post(admin_url("member-education-publish"), TEXT).status_code == 404
    assert _published(north) == ["1"]
    assert _published(south) == []


def test_the_request_page_tells_the_opt_in_and_the_opt_out_with_their_versions(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    opt_in = OptInRecordFactory(
        member=north.member, method=OptInMethod.PORTAL, education_text_version="3"
    )
    exchange_request = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer, opt_in_record=opt_in
    )
    url = admin_url("request-detail", request_id=exchange_request.pk)
    row = re.search(r'<tr id="opt-in">.*?</tr>', client.get(url).content.decode(), re.S)
    assert row is not None
    said = " ".join(re.sub(r"<[^>]+>", " ", row[0]).split())
    obtained = timezone.localtime(opt_in.obtained_at).strftime("%Y-%m-%d %H:%M")
    assert f"Opt-in In the payer's member portal, {obtained}, education text version 3" in (
        said.replace("&#x27;", "'")
    )
    assert "Withdrawn" not in said

    opt_in.withdrawn_at = opt_in.obtained_at
    opt_in.withdrawal_education_text_version = "4"
    opt_in.save()
    row = re.search(r'<tr id="opt-in">.*?</tr>', client.get(url).content.decode(), re.S)
    assert row is not None
    assert f"Withdrawn {obtained}, education text version 4" in " ".join(
        re.sub(r"<[^>]+>", " ", row[0]).split()
    )

    roster_request = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer
    )
    page = client.get(admin_url("request-detail", request_id=roster_request.pk)).content.decode()
    assert "No opt-in record" in page
