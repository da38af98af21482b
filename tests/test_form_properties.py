"""Property-based fuzzing (hypothesis) of every form people post in the portals: the member's
request (former plan, card, coverage dates, consent) and withdrawal and invitation of a
missing plan; the plan administrators' integration settings, registration at a former payer,
recurring-pull days, member education text, invitation of a payer, webhook endpoints and
repository keys (issue 15 item 4).

Each example posts a form the hub accepts with some fields replaced by hostile text (NUL and
other control characters, any unicode, strings past every limit, other types written as text)
or left out, through Django's test client as the signed-in persona. Whatever is posted: never a
5xx; a refusal (the form shown again with its errors, any 4xx, a redirect that saves nothing)
leaves every row of every table the form writes, and the audit log, as they were — no partial
state; an acceptance (a redirect, or 201 for a webhook endpoint and its secret) is audited
and stores exactly what the view's own forms made of the post, read back from the database.

How many examples: tests/support/fuzz.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django import forms
from django.db.models import Model
from hypothesis import event, given
from hypothesis import strategies as st

from directory.forms import OnboardingRequestForm
from exchange.models import (
    Consent,
    ExchangeRequest,
    HolderRegistration,
    MemberEducationText,
    RegistrationChoice,
    WebhookEndpoint,
    WebhookSecret,
)
from exchange.repository.forms import RepositoryKeyForm
from exchange.repository.models import RepositoryKey
from exchange.webhooks.events import DELIVERY_READY
from hub.models import (
    AuditEvent,
    ClientAuthMethod,
    DeliveryMode,
    FhirEndpoint,
    IdentityProvider,
    OnboardingRequest,
    Payer,
    RoleClaimFormat,
    SftpDestination,
)
from members.forms import ConsentForm, FormerCoverageForm
from plan_admin.forms import (
    ClientJwksForm,
    DeliveryModeForm,
    FhirEndpointForm,
    HolderRegistrationForm,
    IdentityProviderForm,
    MemberEducationForm,
    PullSettingsForm,
    SftpDestinationForm,
    WebhookEndpointForm,
)
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory
from tests.members.test_request_flow import _form as request_form
from tests.members.test_request_flow import _holder
from tests.support.every_payer import rows_of_every_payer
from tests.support.fuzz import fuzz_requests, hostile_text, unicode_text
from tests.support.sessions import signed_in
from tests.test_hostile_input import FHIR, SFTP

Data = dict[str, Any]


@dataclass(frozen=True)
class PostedForm:
    """A form as people post it, and what it writes."""

    who: str  # "member" or "admin" of North
    path: Callable[[Tenant, Tenant], str]  # under /p/north/; may set up what the form acts on
    valid: Callable[[Payer], Data]  # a post the hub accepts, given South (a former plan)
    writes: tuple[type[Model], ...]  # tables the post may change, besides the audit log
    # What the view's forms make of a post, to be stored (None: they refuse it); and what
    # is stored, read back. Both are computed before the post (the forms check for duplicates).
    accepted: Callable[[Data, Tenant, Tenant], Data | None]
    stored: Callable[[Tenant], Data]


def _cleaned(form: forms.BaseForm, names: list[str] | tuple[str, ...]) -> Data | None:
    return {name: form.cleaned_data[name] for name in names} if form.is_valid() else None


def _model_form(
    form_class: type[forms.ModelForm[Any]], row: Callable[[Payer], Model | None]
) -> tuple[Callable[[Data, Tenant, Tenant], Data | None], Callable[[Tenant], Data]]:
    """Return ``accepted`` and ``stored`` for a settings form that saves its fields to one row."""
    names = list(form_class._meta.fields or ())

    def accepted(data: Data, north: Tenant, south: Tenant) -> Data | None:
        return _cleaned(form_class(data=data, instance=row(north.payer)), names)

    def stored(north: Tenant) -> Data:
        saved = row(north.payer)
        return {name: getattr(saved, name) for name in names}

    return accepted, stored


def _setting(model: type[Any]) -> Callable[[Payer], Model | None]:
    return lambda payer: model.objects.for_payer(payer).first()


def _payer(payer: Payer) -> Payer:
    return Payer.objects.get(pk=payer.pk)


def _latest(model: type[Any], *names: str) -> Callable[[Tenant], Data]:
    """Return ``stored`` for a form that adds a row of ``model``: the newest row's ``names``
    (``consent.policy`` is read through the relation and named ``policy``)."""

    def stored(north: Tenant) -> Data:
        row = model.objects.for_payer(north.payer).order_by("-pk").first()
        return {name.rsplit(".", 1)[-1]: attrgetter(name)(row) for name in names}

    return stored


def _request_accepted(data: Data, north: Tenant, south: Tenant) -> Data | None:
    former = south.payer
    ticked = data.get("former", [])
    # As request.POST.getlist reads it: one value, or a list of them.
    if str(former.pk) not in [str(v) for v in (ticked if isinstance(ticked, list) else [ticked])]:
        return None
    coverage = FormerCoverageForm(data, prefix=f"p{former.pk}", former_plan_name=former.name)
    consent = ConsentForm(data, payer=north.payer)
    if not (coverage.is_valid() and consent.is_valid()):
        return None
    return {**coverage.cleaned_data, "policy": consent.cleaned_data["policy"]}


def _withdraw_path(north: Tenant, south: Tenant) -> str:
    opened = ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    return f"me/requests/{opened.pk}/withdraw/"


ONBOARDING_FIELDS = ("organization_name", "npi", "state", "contact_email", "note")
ONBOARDING = {
    "organization_name": "Prairie Health Plan",
    "npi": "1245319599",
    "state": "mn",
    "contact_email": "enroll@prairie.example",
    "note": "Card says Prairie PPO",
}
invite = (
    lambda data, north, south: _cleaned(OnboardingRequestForm(data), ONBOARDING_FIELDS),
    _latest(OnboardingRequest, *ONBOARDING_FIELDS),
)


def _education_accepted(data: Data, north: Tenant, south: Tenant) -> Data | None:
    cleaned = _cleaned(MemberEducationForm(data), ("title", "body", "version"))
    if cleaned is None or "preview" in data:
        return None
    expected = {name: value.strip() for name, value in cleaned.items()}
    if not expected["version"]:
        # An unlabelled version is numbered 1, 2, 3… past the labels taken.
        taken = set(
            MemberEducationText.objects.for_payer(north.payer).values_list("version", flat=True)
        )
        expected["version"] = str(
            next(n for n in itertools.count(len(taken) + 1) if str(n) not in taken)
        )
    return expected


def _unregistered_key() -> str:
    """Return the public line of a new ed25519 key (a key already registered is refused)."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def _key_accepted(data: Data, north: Tenant, south: Tenant) -> Data | None:
    cleaned = _cleaned(
        RepositoryKeyForm(data, payer=north.payer), ("label", "allowed_sources", "expires_on")
    )
    if cleaned is None:
        return None
    cleaned["expires_at"] = cleaned.pop("expires_on")
    return cleaned


def _webhook_accepted(data: Data, north: Tenant, south: Tenant) -> Data | None:
    cleaned = _cleaned(WebhookEndpointForm(data), ("url", "description", "event_types"))
    # The service keeps the event types in order.
    return cleaned and {**cleaned, "event_types": sorted(cleaned["event_types"])}


REGISTRATION_FIELDS = ("choice", "backend_client_id", "member_client_id")


def _only(path: str) -> Callable[[Tenant, Tenant], str]:
    return lambda north, south: path


FORMS = {
    "member request": PostedForm(
        "member", _only("me/requests/new/"),
        lambda south: request_form(south),
        (ExchangeRequest, Consent), _request_accepted,
        _latest(ExchangeRequest, "card_member_id", "coverage_start", "coverage_end",
                "consent.policy"),
    ),
    "member withdraw": PostedForm(
        "member", _withdraw_path, lambda south: {}, (ExchangeRequest, Consent),
        lambda data, north, south: {"status": "inactive"},
        _latest(Consent, "status"),
    ),
    "member invites a plan": PostedForm(
        "member", _only("me/plans/invite/"), lambda south: ONBOARDING, (OnboardingRequest,),
        *invite,
    ),
    "FHIR endpoint": PostedForm(
        "admin", _only("admin/settings/fhir-endpoint/"),
        lambda south: {**FHIR, "scopes": "system/*.rs", "backend_client_id": "hub-north"},
        (FhirEndpoint,), *_model_form(FhirEndpointForm, _setting(FhirEndpoint)),
    ),
    "identity provider": PostedForm(
        "admin", _only("admin/settings/identity-provider/"),
        lambda south: {
            "issuer": "https://login.example-payer.com", "client_id": "hub",
            "client_secret": "s", "token_endpoint_auth_method": ClientAuthMethod.AUTOMATIC.value,
            "scopes": "openid profile", "claim_member_id": "member_id",
            "claim_given_name": "given_name", "claim_family_name": "family_name",
            "claim_birth_date": "birthdate", "claim_gender": "gender", "claim_role": "hub_role",
            "role_claim_format": RoleClaimFormat.TEXT.value, "role_admin_value": "plan_admin",
            "role_member_value": "member",
        },
        (IdentityProvider,), *_model_form(IdentityProviderForm, _setting(IdentityProvider)),
    ),
    "SFTP destination": PostedForm(
        "admin", _only("admin/settings/sftp-destination/"), lambda south: SFTP,
        (SftpDestination,), *_model_form(SftpDestinationForm, _setting(SftpDestination)),
    ),
    "client key set URL": PostedForm(
        "admin", _only("admin/settings/client-jwks/"),
        lambda south: {"client_jwks_url": "https://keys.example-payer.com/jwks.json"},
        (Payer,), *_model_form(ClientJwksForm, _payer),
    ),
    "delivery mode": PostedForm(
        "admin", _only("admin/settings/delivery-mode/"),
        lambda south: {"delivery_mode": DeliveryMode.HUB_REPOSITORY.value},
        (Payer,), *_model_form(DeliveryModeForm, _payer),
    ),
    "recurring-pull days": PostedForm(
        "admin", _only("admin/recurring-pulls/settings/"),
        lambda south: {"concurrent_refresh_days": "30", "run_off_days": "60"},
        (Payer,), *_model_form(PullSettingsForm, _payer),
    ),
    "member education text": PostedForm(
        "admin", _only("admin/member-education/publish/"),
        lambda south: {"title": "Your records follow you", "body": "You may opt in.",
                       "version": ""},
        (MemberEducationText,), _education_accepted,
        _latest(MemberEducationText, "title", "body", "version"),
    ),
    "admin invites a payer": PostedForm(
        "admin", _only("admin/directory/onboarding/"), lambda south: ONBOARDING,
        (OnboardingRequest,), *invite,
    ),
    "registration at a former payer": PostedForm(
        "admin", _only("admin/former-payers/south/"),
        lambda south: {"choice": RegistrationChoice.MANUAL.value,
                       "backend_client_id": "north-at-south", "member_client_id": "",
                       "member_client_secret": ""},
        (HolderRegistration,),
        lambda data, north, south: _cleaned(HolderRegistrationForm(data), REGISTRATION_FIELDS),
        _latest(HolderRegistration, *REGISTRATION_FIELDS),
    ),
    "webhook endpoint": PostedForm(
        "admin", _only("admin/webhooks/new/"),
        lambda south: {"url": "https://hooks.example-payer.com/hub", "description": "enrollment",
                       "event_types": [DELIVERY_READY]},
        (WebhookEndpoint, WebhookSecret), _webhook_accepted,
        _latest(WebhookEndpoint, "url", "description", "event_types"),
    ),
    "repository key": PostedForm(
        "admin", _only("admin/repository/"),
        lambda south: {"label": "claims intake", "public_key": _unregistered_key(),
                       "allowed_sources": "203.0.113.0/24", "expires_on": "2099-01-01"},
        (RepositoryKey,), _key_accepted,
        _latest(RepositoryKey, "label", "allowed_sources", "expires_at"),
    ),
}  # fmt: skip


def _state(writes: tuple[type[Model], ...]) -> Data:
    """Return every row of every payer in ``writes``, and how long the audit log is."""
    rows: Data = {"audit events": rows_of_every_payer(AuditEvent).count()}
    for model in writes:
        every = Payer.objects.all() if model is Payer else rows_of_every_payer(model)
        rows[model.__name__] = list(every.order_by("pk").values())
    return rows


@pytest.fixture
def former_plan(south: Tenant) -> Tenant:
    """South, in North's directory: a former plan North's members can ask."""
    _holder(south.payer)
    return south


@pytest.mark.parametrize("name", list(FORMS))
@fuzz_requests
@given(data=st.data())
def test_any_post_of_a_form_is_stored_as_read_or_refused_leaving_nothing(
    north: Tenant, former_plan: Tenant, name: str, data: st.DataObject
) -> None:
    case, south = FORMS[name], former_plan
    valid = case.valid(south.payer)
    fields = sorted({*valid, "preview", "ask_again", "former", "status", "payer"})
    changes = {
        # Hostile text in place of the field, the field left out, or text after a good value
        # (which the forms may well accept: then it must read back as accepted).
        field: data.draw(
            hostile_text | st.none() | unicode_text.map(f"{valid.get(field, '')}".__add__),
            label=field,
        )
        for field in data.draw(st.sets(st.sampled_from(fields), min_size=1), label="fields")
    }
    posted = {k: v for k, v in {**valid, **changes}.items() if v is not None}
    path = case.path(north, south)
    expected = case.accepted(posted, north, south)
    before = _state(case.writes)

    client = signed_in(north.member if case.who == "member" else north.admin)
    response = client.post(f"/p/north/{path}", posted)

    assert response.status_code < 500, response.content[:2000]
    stored = expected is not None and response.status_code < 400
    event(f"{'stored' if stored else 'refused'} ({response.status_code})")
    if not stored:
        assert _state(case.writes) == before, response.status_code
    else:
        assert response.status_code in (201, 302), response.content[:2000]
        assert _state(case.writes) != before  # saved, and audited
        assert case.stored(north) == expected
