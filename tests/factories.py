"""factory_boy factories for the hub's models; personas are built from these in conftest.py."""

import hashlib
from datetime import date, timedelta
from typing import Any

import factory
from django.utils import timezone

from api.models import IdempotencyKey
from exchange.consents.services import consent_publish
from exchange.models import (
    AuthorizationMode,
    BulkJob,
    BulkJobKind,
    Cohort,
    CohortMember,
    Consent,
    ConsentNotification,
    ConsentPolicy,
    ConsentSubscription,
    Delivery,
    DeliveryAttempt,
    ExchangeEvent,
    ExchangeRequest,
    HolderRegistration,
    MemberAuthorizationLink,
    MemberEducationText,
    MemberLaunch,
    OptInMethod,
    OptInRecord,
    PullKind,
    PullSchedule,
    RegistrationMethod,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookSecret,
)
from exchange.repository.models import RepositoryFile, RepositoryKey
from exchange.webhooks.events import REQUEST_STATUS_CHANGED, webhook_message_id
from exchange.webhooks.signing import webhook_secret_generate
from hub.models import (
    ClientCertificate,
    EndpointProbe,
    FhirEndpoint,
    FirstAdministratorLink,
    IdentityProvider,
    OnboardingRequest,
    Payer,
    PayerStatus,
    Role,
    SftpDestination,
    SigningAlgorithm,
    SigningKey,
    SigningKeyStatus,
    User,
)


class PayerFactory(factory.django.DjangoModelFactory[Payer]):
    class Meta:
        model = Payer
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Health Plan {n}")
    slug = factory.Sequence(lambda n: f"plan-{n}")
    payer_identifier = factory.Sequence(lambda n: f"P{n:05d}")
    status = PayerStatus.PARTICIPATING
    states = factory.LazyFunction(lambda: ["MN"])


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"person-{n}")
    payer = factory.SubFactory(PayerFactory)
    role = Role.MEMBER
    oidc_subject = factory.Sequence(lambda n: f"sub-{n}")


class ConsentFactory(factory.django.DjangoModelFactory[Consent]):
    class Meta:
        model = Consent
        # consent_publish saves the row itself.
        skip_postgeneration_save = True

    member = factory.SubFactory(UserFactory)
    payer = factory.SelfAttribute("member.payer")
    former_payer = factory.SubFactory(PayerFactory)
    policy = ConsentPolicy.SENSITIVE
    period_start = factory.LazyFunction(timezone.localdate)
    period_end = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=365))
    opted_in_at = factory.LazyFunction(timezone.now)

    # The HRex resource is written from the fields above, as the service does.
    fhir_resource = factory.LazyFunction(dict)

    @factory.post_generation
    def published(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        # A test may pass its own resource (e.g. naming another recipient); keep it.
        if create and not self.fhir_resource:
            consent_publish(self)


class ExchangeRequestFactory(factory.django.DjangoModelFactory[ExchangeRequest]):
    class Meta:
        model = ExchangeRequest

    consent = factory.SubFactory(ConsentFactory)
    member = factory.SelfAttribute("consent.member")
    payer = factory.SelfAttribute("consent.payer")
    former_payer = factory.SelfAttribute("consent.former_payer")
    authorization_mode = AuthorizationMode.BACKEND_SERVICES
    status_changed_at = factory.LazyFunction(timezone.now)
    opted_in_at = factory.LazyFunction(timezone.now)
    due_by = factory.LazyAttribute(lambda o: o.opted_in_at + timedelta(days=7))
    card_member_id = "CARD-0001"
    coverage_start = date(2021, 1, 1)
    coverage_end = date(2025, 12, 31)


class PullScheduleFactory(factory.django.DjangoModelFactory[PullSchedule]):
    class Meta:
        model = PullSchedule

    consent = factory.SubFactory(ConsentFactory)
    member = factory.SelfAttribute("consent.member")
    payer = factory.SelfAttribute("consent.payer")
    former_payer = factory.SelfAttribute("consent.former_payer")
    kind = PullKind.REFRESH
    next_run_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=90))


class MemberAuthorizationLinkFactory(factory.django.DjangoModelFactory[MemberAuthorizationLink]):
    class Meta:
        model = MemberAuthorizationLink

    exchange_request = factory.SubFactory(ExchangeRequestFactory)
    payer = factory.SelfAttribute("exchange_request.payer")
    email = "member@example.com"


class OptInRecordFactory(factory.django.DjangoModelFactory[OptInRecord]):
    class Meta:
        model = OptInRecord

    member = factory.SubFactory(UserFactory)
    payer = factory.SelfAttribute("member.payer")
    obtained_at = factory.LazyFunction(timezone.now)
    method = OptInMethod.ENROLLMENT_FORM
    policy = ConsentPolicy.SENSITIVE
    new_coverage_start = date(2026, 1, 1)
    attested_by = "system:north"


class IdempotencyKeyFactory(factory.django.DjangoModelFactory[IdempotencyKey]):
    class Meta:
        model = IdempotencyKey

    payer = factory.SubFactory(PayerFactory)
    key = factory.Sequence(lambda n: f"key-{n}")
    fingerprint = "0" * 64
    response_status = 201
    response_body = factory.LazyFunction(dict)


class CohortFactory(factory.django.DjangoModelFactory[Cohort]):
    class Meta:
        model = Cohort

    payer = factory.SubFactory(PayerFactory)
    former_payer = factory.SubFactory(PayerFactory)
    name = factory.Sequence(lambda n: f"Cohort {n}")
    roster_name = "roster.csv"
    roster_format = "csv"
    chunk_size = 100


class BulkJobFactory(factory.django.DjangoModelFactory[BulkJob]):
    class Meta:
        model = BulkJob

    cohort = factory.SubFactory(CohortFactory)
    payer = factory.SelfAttribute("cohort.payer")
    kind = BulkJobKind.MEMBER_MATCH
    sequence = factory.Sequence(lambda n: n + 1)


class CohortMemberFactory(factory.django.DjangoModelFactory[CohortMember]):
    """A roster line of ``cohort`` with its own request: the cohort's payer is the new payer,
    its former payer the request's."""

    class Meta:
        model = CohortMember

    cohort = factory.SubFactory(CohortFactory)
    payer = factory.SelfAttribute("cohort.payer")
    exchange_request = factory.SubFactory(
        ExchangeRequestFactory,
        consent__member=factory.SubFactory(
            UserFactory, payer=factory.SelfAttribute("....cohort.payer"), role=Role.MEMBER
        ),
        consent__former_payer=factory.SelfAttribute("...cohort.former_payer"),
    )
    line = factory.Sequence(lambda n: n + 2)


class ExchangeEventFactory(factory.django.DjangoModelFactory[ExchangeEvent]):
    class Meta:
        model = ExchangeEvent

    exchange_request = factory.SubFactory(ExchangeRequestFactory)
    payer = factory.SelfAttribute("exchange_request.payer")
    message = "Something happened."


class DeliveryFactory(factory.django.DjangoModelFactory[Delivery]):
    class Meta:
        model = Delivery

    exchange_request = factory.SubFactory(ExchangeRequestFactory)
    payer = factory.SelfAttribute("exchange_request.payer")
    mode = "hub_repository"


class DeliveryAttemptFactory(factory.django.DjangoModelFactory[DeliveryAttempt]):
    class Meta:
        model = DeliveryAttempt

    delivery = factory.SubFactory(DeliveryFactory)
    payer = factory.SelfAttribute("delivery.payer")
    task_id = factory.Sequence(lambda n: f"task-{n}")
    started_at = factory.LazyFunction(timezone.now)


class MemberLaunchFactory(factory.django.DjangoModelFactory[MemberLaunch]):
    """A SMART standalone launch the member started at the former payer, waiting for its
    callback with ``state`` (kept only as its digest, as exchange/smart/member_launch.py does)."""

    class Meta:
        model = MemberLaunch

    class Params:
        state = "launch-state"

    exchange_request = factory.SubFactory(ExchangeRequestFactory)
    payer = factory.SelfAttribute("exchange_request.payer")
    state_digest = factory.LazyAttribute(lambda o: hashlib.sha256(o.state.encode()).hexdigest())
    code_verifier = "v" * 43
    redirect_uri = factory.LazyAttribute(
        lambda o: f"http://testserver/p/{o.payer.slug}/me/launch/callback/"
    )
    started_at = factory.LazyFunction(timezone.now)


class OnboardingRequestFactory(factory.django.DjangoModelFactory[OnboardingRequest]):
    class Meta:
        model = OnboardingRequest

    requested_by = factory.SubFactory(UserFactory)
    payer = factory.SelfAttribute("requested_by.payer")
    organization_name = "Missing Health Co-op"


class EndpointProbeFactory(factory.django.DjangoModelFactory[EndpointProbe]):
    class Meta:
        model = EndpointProbe

    endpoint = factory.SubFactory("tests.factories.FhirEndpointFactory")
    payer = factory.SelfAttribute("endpoint.payer")
    checked_at = factory.LazyFunction(timezone.now)
    trigger = "radar"
    ok = True


class FirstAdministratorLinkFactory(factory.django.DjangoModelFactory[FirstAdministratorLink]):
    class Meta:
        model = FirstAdministratorLink

    payer = factory.SubFactory(PayerFactory)
    token_digest = factory.Sequence(lambda n: hashlib.sha256(f"link-{n}".encode()).hexdigest())
    issued_by = factory.SubFactory(UserFactory, payer=None, role="", is_staff=True)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=3))


class FhirEndpointFactory(factory.django.DjangoModelFactory[FhirEndpoint]):
    class Meta:
        model = FhirEndpoint

    payer = factory.SubFactory(PayerFactory)
    base_url = "https://fhir.example-payer.com/r4"
    member_client_secret = "member-client-secret-value"


class IdentityProviderFactory(factory.django.DjangoModelFactory[IdentityProvider]):
    class Meta:
        model = IdentityProvider

    payer = factory.SubFactory(PayerFactory)
    issuer = "https://login.example-payer.com"
    client_id = "hub"
    client_secret = "idp-client-secret-value"


class SftpDestinationFactory(factory.django.DjangoModelFactory[SftpDestination]):
    class Meta:
        model = SftpDestination

    payer = factory.SubFactory(PayerFactory)
    host = "sftp.example-payer.com"
    username = "hub"
    password = "sftp-password-value"
    host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class SigningKeyFactory(factory.django.DjangoModelFactory[SigningKey]):
    """A published key row without real key material; hub.signing_keys makes real ones."""

    class Meta:
        model = SigningKey

    payer = factory.SubFactory(PayerFactory)
    kid = factory.Sequence(lambda n: f"test-kid-{n}")
    algorithm = SigningAlgorithm.ES384
    private_key_pem = "not a real private key"
    public_jwk = factory.LazyAttribute(lambda o: {"kty": "EC", "crv": "P-384", "kid": o.kid})
    # Previous keys may be many per algorithm; an active one is one per payer and algorithm.
    status = SigningKeyStatus.PREVIOUS


class ClientCertificateFactory(factory.django.DjangoModelFactory[ClientCertificate]):
    """A certificate row without real key material; hub.client_certificates checks real ones
    (tests/support/pki.py makes them)."""

    class Meta:
        model = ClientCertificate

    payer = factory.SubFactory(PayerFactory)
    certificate_chain_pem = "not a real certificate"
    private_key_pem = "not a real private key"
    subject = factory.LazyAttribute(lambda o: f"CN={o.payer.name}")
    issuer = "CN=Test CA"
    serial_number = "1"
    key_type = "EC secp256r1"
    not_before = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    not_after = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
    fingerprint_sha256 = factory.Sequence(lambda n: f"{n:064x}")


class HolderRegistrationFactory(factory.django.DjangoModelFactory[HolderRegistration]):
    class Meta:
        model = HolderRegistration

    payer = factory.SubFactory(PayerFactory)
    former_payer = factory.SubFactory(PayerFactory)
    method = RegistrationMethod.CONFIGURED
    backend_client_id = "hub-backend-client"
    registered_at = factory.LazyFunction(timezone.now)


class ConsentSubscriptionFactory(factory.django.DjangoModelFactory[ConsentSubscription]):
    class Meta:
        model = ConsentSubscription

    consent = factory.SubFactory(ConsentFactory)
    payer = factory.SelfAttribute("consent.payer")
    subscriber = factory.SelfAttribute("consent.former_payer")
    criteria = factory.LazyAttribute(lambda o: f"Consent?_id={o.consent.pk}")
    endpoint = "https://subscriber.example-payer.com/consent-notifications"


class ConsentNotificationFactory(factory.django.DjangoModelFactory[ConsentNotification]):
    class Meta:
        model = ConsentNotification

    subscription = factory.SubFactory(ConsentSubscriptionFactory)
    payer = factory.SelfAttribute("subscription.payer")
    consent_status = "active"


class RepositoryKeyFactory(factory.django.DjangoModelFactory[RepositoryKey]):
    class Meta:
        model = RepositoryKey

    payer = factory.SubFactory(PayerFactory)
    label = factory.Sequence(lambda n: f"system {n}")
    public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    fingerprint = factory.Sequence(lambda n: f"SHA256:test-fingerprint-{n}")


class RepositoryFileFactory(factory.django.DjangoModelFactory[RepositoryFile]):
    class Meta:
        model = RepositoryFile

    payer = factory.SubFactory(PayerFactory)
    path = factory.Sequence(lambda n: f"former/{n}/bundle.json")
    size = 2
    sha256 = "0" * 64
    delivered_at = factory.LazyFunction(timezone.now)


class WebhookEndpointFactory(factory.django.DjangoModelFactory[WebhookEndpoint]):
    class Meta:
        model = WebhookEndpoint

    payer = factory.SubFactory(PayerFactory)
    url = factory.Sequence(lambda n: f"https://hooks.example-payer.com/{n}")
    event_types = factory.LazyFunction(lambda: [REQUEST_STATUS_CHANGED])


class MemberEducationTextFactory(factory.django.DjangoModelFactory[MemberEducationText]):
    class Meta:
        model = MemberEducationText

    published_by = factory.SubFactory(UserFactory, role=Role.PLAN_ADMIN)
    payer = factory.SelfAttribute("published_by.payer")
    version = factory.Sequence(lambda n: str(n + 1))
    title = "Bringing your records with you"
    body = "Your former plan can send us your records.\n\nYou may opt in, and withdraw."
    published_at = factory.LazyFunction(timezone.now)


class WebhookSecretFactory(factory.django.DjangoModelFactory[WebhookSecret]):
    class Meta:
        model = WebhookSecret

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    payer = factory.SelfAttribute("endpoint.payer")
    secret = factory.LazyFunction(webhook_secret_generate)


class WebhookMessageFactory(factory.django.DjangoModelFactory[WebhookMessage]):
    class Meta:
        model = WebhookMessage

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    payer = factory.SelfAttribute("endpoint.payer")
    message_id = factory.LazyFunction(webhook_message_id)
    event_type = REQUEST_STATUS_CHANGED
    payload = factory.LazyAttribute(
        lambda o: {"type": o.event_type, "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}
    )


class WebhookAttemptFactory(factory.django.DjangoModelFactory[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt

    message = factory.SubFactory(WebhookMessageFactory)
    payer = factory.SelfAttribute("message.payer")
    number = 1
    attempted_at = factory.LazyFunction(timezone.now)
    status_code = 500
    error = "the endpoint answered HTTP 500"
    duration_ms = 12
    succeeded = False
