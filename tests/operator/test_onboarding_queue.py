"""The onboarding queue: an operator approves or rejects what members and administrators
asked for, and the requester sees the outcome where they see their invitations."""

import html

from django.test import Client

from hub.models import AuditEvent, OnboardingRequest, OnboardingStatus, Payer, PayerStatus, User
from tests.conftest import Tenant
from tests.support.every_payer import rows_of_every_payer
from tests.support.sessions import signed_in

QUEUE = "/operator/hub/onboardingrequest/"


def _invite(member: User, **fields: str) -> OnboardingRequest:
    response = signed_in(member).post(
        f"/p/{member.payer.slug}/me/plans/invite/",
        {"organization_name": "Prairie Health Co-op", "state": "ND", **fields},
    )
    assert response.status_code == 302
    return rows_of_every_payer(OnboardingRequest).latest("created_at")


def test_an_operator_approves_a_members_invitation_and_the_member_sees_it(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    invitation = _invite(north.member, npi="1558367656")
    queue = console.get(QUEUE).content.decode()
    assert "Prairie Health Co-op" in queue and "nora-member (member at North Star Health)" in queue
    assert console.get(f"{QUEUE}{invitation.pk}/change/").status_code == 200
    form = console.get(f"{QUEUE}{invitation.pk}/approve/").content.decode()
    assert 'value="prairie-health-co-op"' in form and 'value="1558367656"' in form

    response = console.post(
        f"{QUEUE}{invitation.pk}/approve/",
        {"name": "Prairie Health Co-op", "slug": "prairie", "npi": "1558367656"},
    )
    assert response.status_code == 302
    prairie = Payer.objects.get(slug="prairie")
    assert prairie.status == PayerStatus.ONBOARDING and prairie.npi == "1558367656"
    invitation.refresh_from_db()
    assert invitation.status == OnboardingStatus.ONBOARDED
    assert invitation.onboarded_payer == prairie and invitation.decided_by == olga
    approval = AuditEvent.objects.for_payer(north.payer).get(action="onboarding_request.approve")
    assert approval.actor == olga
    assert AuditEvent.objects.for_payer(prairie).filter(action="payer.create", actor=olga).exists()

    home = signed_in(north.member).get("/p/north/me/").content.decode()
    assert "We approved it: it is being connected" in home
    console.post(
        "/operator/hub/payer/",
        {"action": "make_participating", "_selected_action": [prairie.pk]},
    )
    home = signed_in(north.member).get("/p/north/me/").content.decode()
    assert "It joined" in home
    # South's member never sees North's member's invitation.
    assert "Prairie" not in signed_in(south.member).get("/p/south/me/").content.decode()
    # Deciding twice changes nothing.
    again = console.post(f"{QUEUE}{invitation.pk}/reject/", {"reason": "changed my mind"})
    assert again.status_code == 400 and "onboarded already" in again.content.decode()


def test_approval_activates_an_invited_payer_already_known(console: Client, north: Tenant) -> None:
    invitation = _invite(north.member)
    known = Payer.objects.create(name="Prairie", slug="prairie", status=PayerStatus.INVITED)
    response = console.post(f"{QUEUE}{invitation.pk}/approve/", {"existing_payer": known.pk})
    assert response.status_code == 302
    known.refresh_from_db()
    assert known.status == PayerStatus.ONBOARDING
    assert Payer.objects.count() == 2


def test_an_approval_whose_identifiers_clash_is_refused_with_a_sentence(
    console: Client, north: Tenant, south: Tenant
) -> None:
    invitation = _invite(north.member, npi=south.payer.npi)
    response = console.post(
        f"{QUEUE}{invitation.pk}/approve/",
        {"name": "Prairie Health Co-op", "slug": "prairie", "npi": south.payer.npi},
    )
    assert response.status_code == 400
    assert (
        f"The NPI {south.payer.npi} belongs to Southern Cross Health already (URL name south)"
        in response.content.decode()
    )
    assert not Payer.objects.filter(slug="prairie").exists()
    invitation.refresh_from_db()
    assert invitation.status == OnboardingStatus.OPEN
    assert not rows_of_every_payer(AuditEvent).filter(action="onboarding_request.approve").exists()
    # An existing payer with another NPI is refused too.
    mismatch = console.post(f"{QUEUE}{invitation.pk}/approve/", {"existing_payer": north.payer.pk})
    assert mismatch.status_code == 400
    assert "is not North Star Health" in mismatch.content.decode()


def test_a_rejection_with_its_reason_is_shown_to_the_administrator_who_asked(
    console: Client, olga: User, north: Tenant
) -> None:
    response = signed_in(north.admin).post(
        "/p/north/admin/directory/onboarding/", {"organization_name": "Tiny Dental Plan"}
    )
    assert response.status_code == 302
    invitation = OnboardingRequest.objects.for_payer(north.payer).get()
    empty = console.post(f"{QUEUE}{invitation.pk}/reject/", {"reason": "  "})
    assert empty.status_code == 400
    invitation.refresh_from_db()
    assert invitation.status == OnboardingStatus.OPEN

    reason = "Dental-only plans are not impacted payers under CMS-0057-F."
    assert console.post(f"{QUEUE}{invitation.pk}/reject/", {"reason": reason}).status_code == 302
    invitation.refresh_from_db()
    assert invitation.status == OnboardingStatus.DECLINED
    page = signed_in(north.admin).get("/p/north/admin/directory/").content.decode()
    assert f"Reason: {reason}" in page
    event = AuditEvent.objects.for_payer(north.payer).get(action="onboarding_request.reject")
    assert event.actor == olga and event.changes == {"reason": reason}


def test_the_queue_is_newest_first_and_marks_contacted(console: Client, north: Tenant) -> None:
    first = _invite(north.member, organization_name="Alpha Plan")
    _invite(north.member, organization_name="Beta Plan")
    page = console.get(QUEUE).content.decode()
    assert page.index("Beta Plan") < page.index("Alpha Plan")
    assert console.post(f"{QUEUE}{first.pk}/contacted/").status_code == 302
    first.refresh_from_db()
    assert first.status == OnboardingStatus.CONTACTED
    assert "We asked it to join" in signed_in(north.member).get("/p/north/me/").content.decode()


def test_a_member_reads_why_their_invitation_was_declined(console: Client, north: Tenant) -> None:
    invitation = _invite(north.member)
    reason = "Prairie Health Co-op closed in 2023; ask its successor, Plains Mutual."
    assert console.post(f"{QUEUE}{invitation.pk}/reject/", {"reason": reason}).status_code == 302
    home = html.unescape(signed_in(north.member).get("/p/north/me/").content.decode())
    assert f"The hub's team declined it: {reason}" in home


def test_an_approval_with_bad_input_names_the_problem_and_creates_nothing(
    console: Client, north: Tenant
) -> None:
    invitation = _invite(north.member)
    bad_slug = console.post(f"{QUEUE}{invitation.pk}/approve/", {"name": "P", "slug": "no spaces"})
    assert bad_slug.status_code == 400 and "slug" in bad_slug.content.decode().lower()
    no_name = console.post(f"{QUEUE}{invitation.pk}/approve/", {"name": "", "slug": "prairie"})
    assert no_name.status_code == 400
    assert "Give the new payer a name and a URL name (slug)." in no_name.content.decode()
    assert Payer.objects.count() == 1
    invitation.refresh_from_db()
    assert invitation.status == OnboardingStatus.OPEN
