"""What a payer's identity provider says about a person, as the hub keeps it
(``members.sign_in.person_signed_in``): the subject it binds the person to, refused unless
OpenID Connect Core §2 allows it; the demographics taken as they come, never a 500 (examples,
and any claims at all through hypothesis, issue 15 item 4)."""

from datetime import date
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from hub.models import AuditEvent, IdentityProvider, Role, User
from hub.oidc.errors import IdentityNotConfirmed
from members.sign_in import person_signed_in
from tests.conftest import Tenant
from tests.support.every_payer import rows_of_every_payer
from tests.support.fuzz import fuzz, hostile_text, json_values

pytestmark = pytest.mark.django_db

PATRICIA = {
    "sub": "p-1",
    "given_name": "Patricia",
    "family_name": "Person",
    "birthdate": "1980-04-02",
    "gender": "female",
    "member_id": "NSH-100",
    "email": "patricia@example.com",
}
# Each column the claims fill, and its length.
COLUMNS = {"first_name": 150, "last_name": 150, "email": 254, "gender": 10, "plan_member_id": 100}


@pytest.fixture
def provider(north: Tenant) -> IdentityProvider:
    return IdentityProvider.objects.create(
        payer=north.payer,
        issuer="https://login.north.example",
        client_id="hub",
        client_secret="s",
        scopes="openid profile",
    )


def _signed_in(provider: IdentityProvider, **claims: Any) -> User:
    user = person_signed_in(
        identity_provider=provider, claims={**PATRICIA, **claims}, role=Role.MEMBER
    )
    user.refresh_from_db()
    return user


def test_the_claims_become_the_member_s_details(provider: IdentityProvider) -> None:
    user = _signed_in(provider)
    assert (user.oidc_subject, user.first_name, user.last_name) == ("p-1", "Patricia", "Person")
    assert (user.birth_date, user.gender, user.plan_member_id) == (
        date(1980, 4, 2),
        "female",
        "NSH-100",
    )


@pytest.mark.parametrize(
    "birthdate",
    # Not a day; a year alone and the year 0000 (both allowed by OIDC Core §5.1, neither a
    # whole date); an ISO week date; a number; JSON null.
    ["2026-02-30", "1980", "0000-04-02", "1980-W14-3", 19800402, None],
)
def test_a_birth_date_that_is_not_a_whole_date_is_left_empty(
    provider: IdentityProvider, birthdate: Any
) -> None:
    # The member signs in; their request says what is missing (exchange/member_match.py).
    assert _signed_in(provider, birthdate=birthdate).birth_date is None


def test_null_is_no_value_nul_is_dropped_and_text_is_cut_to_its_column(
    provider: IdentityProvider,
) -> None:
    user = _signed_in(provider, given_name=None, family_name="Per\x00son", email="e" * 300)
    assert (user.first_name, user.last_name, user.email) == ("", "Person", "e" * 254)


@pytest.mark.parametrize(
    "sub",
    ["", "s" * 256, "p-\x00", "p\n1", 42, None, ["p-1"]],
    ids=["empty", "256 characters", "NUL", "a line break", "a number", "null", "a list"],
)
def test_a_subject_the_hub_cannot_bind_a_person_to_is_refused(
    provider: IdentityProvider, sub: Any
) -> None:
    people = User.objects.count()
    with pytest.raises(IdentityNotConfirmed, match="sub is not a subject identifier"):
        person_signed_in(
            identity_provider=provider, claims={**PATRICIA, "sub": sub}, role=Role.MEMBER
        )
    assert User.objects.count() == people


@fuzz
@given(data=st.data())
def test_any_claims_sign_a_person_in_as_stored_or_are_refused_leaving_nothing(
    provider: IdentityProvider, data: st.DataObject
) -> None:
    claims: dict[str, Any] = dict(PATRICIA)
    for name in data.draw(st.sets(st.sampled_from(sorted(PATRICIA)), min_size=1), label="spoilt"):
        claims[name] = data.draw(hostile_text | json_values | st.none(), label=name)
    role = data.draw(st.sampled_from([Role.MEMBER, Role.PLAN_ADMIN]), label="role")
    people = list(User.objects.order_by("pk").values())
    audit_events = rows_of_every_payer(AuditEvent).count()

    try:
        person = person_signed_in(identity_provider=provider, claims=claims, role=role)
    except IdentityNotConfirmed:
        event("refused")
        assert list(User.objects.order_by("pk").values()) == people
        assert rows_of_every_payer(AuditEvent).count() == audit_events
        return
    event("signed in")
    stored = User.objects.get(pk=person.pk)
    assert (stored.payer_id, stored.oidc_subject, stored.role) == (
        provider.payer_id,
        claims["sub"],
        role,
    )
    for column, length in COLUMNS.items():
        value = getattr(stored, column)
        assert value == getattr(person, column) and len(value) <= length and "\x00" not in value
    birthdate = claims["birthdate"]
    assert stored.birth_date is None or stored.birth_date.isoformat() == birthdate
    assert rows_of_every_payer(AuditEvent).count() == audit_events + 1
