"""The plan administrators' read API under ``/p/<payer_slug>/api/`` (tenant-scoped, read-only).

Every viewset reads through ``for_payer``: another payer's object is a 404.
"""

from typing import Any

from django.db.models import QuerySet
from rest_framework import viewsets
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.routers import SimpleRouter

from exchange.models import Consent, Delivery, DeliveryAttempt, ExchangeEvent, ExchangeRequest
from hub.models import (
    AuditEvent,
    FhirEndpoint,
    IdentityProvider,
    OnboardingRequest,
    Role,
    SftpDestination,
    SigningKey,
)
from hub.tenancy import TenantScopedAPIMixin
from plan_admin import serializers


class BoundedLimitOffset(LimitOffsetPagination):
    """Pages of at most ``max_limit`` items: a larger ``limit`` is clamped (DRF's own rule for
    ``max_limit``), so no request asks PostgreSQL for a LIMIT beyond its bigint. An offset
    past the last item is an empty page before any query uses it."""

    max_limit = 200


class _TenantReadOnlyViewSet(TenantScopedAPIMixin, viewsets.ReadOnlyModelViewSet[Any]):
    tenant_role = Role.PLAN_ADMIN
    pagination_class = BoundedLimitOffset
    model: Any

    def get_queryset(self) -> QuerySet[Any]:
        return self.model.objects.for_payer(self.payer).order_by("-pk")


class ExchangeRequestViewSet(_TenantReadOnlyViewSet):
    model = ExchangeRequest
    serializer_class = serializers.ExchangeRequestSerializer

    def get_queryset(self) -> QuerySet[Any]:
        return super().get_queryset().select_related("former_payer")


class ConsentViewSet(_TenantReadOnlyViewSet):
    model = Consent
    serializer_class = serializers.ConsentSerializer


class ExchangeEventViewSet(_TenantReadOnlyViewSet):
    model = ExchangeEvent
    serializer_class = serializers.ExchangeEventSerializer


class DeliveryViewSet(_TenantReadOnlyViewSet):
    model = Delivery
    serializer_class = serializers.DeliverySerializer


class DeliveryAttemptViewSet(_TenantReadOnlyViewSet):
    model = DeliveryAttempt
    serializer_class = serializers.DeliveryAttemptSerializer


class OnboardingRequestViewSet(_TenantReadOnlyViewSet):
    model = OnboardingRequest
    serializer_class = serializers.OnboardingRequestSerializer


class AuditEventViewSet(_TenantReadOnlyViewSet):
    model = AuditEvent
    serializer_class = serializers.AuditEventSerializer


class SigningKeyViewSet(_TenantReadOnlyViewSet):
    model = SigningKey
    serializer_class = serializers.SigningKeySerializer


class FhirEndpointViewSet(_TenantReadOnlyViewSet):
    model = FhirEndpoint
    serializer_class = serializers.FhirEndpointSerializer


class IdentityProviderViewSet(_TenantReadOnlyViewSet):
    model = IdentityProvider
    serializer_class = serializers.IdentityProviderSerializer


class SftpDestinationViewSet(_TenantReadOnlyViewSet):
    model = SftpDestination
    serializer_class = serializers.SftpDestinationSerializer


router = SimpleRouter()
router.register("exchange-requests", ExchangeRequestViewSet, basename="exchange-request")
router.register("consents", ConsentViewSet, basename="consent")
router.register("exchange-events", ExchangeEventViewSet, basename="exchange-event")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("delivery-attempts", DeliveryAttemptViewSet, basename="delivery-attempt")
router.register("onboarding-requests", OnboardingRequestViewSet, basename="onboarding-request")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("signing-keys", SigningKeyViewSet, basename="signing-key")
router.register("fhir-endpoints", FhirEndpointViewSet, basename="fhir-endpoint")
router.register("identity-providers", IdentityProviderViewSet, basename="identity-provider")
router.register("sftp-destinations", SftpDestinationViewSet, basename="sftp-destination")
