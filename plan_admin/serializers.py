"""Read-only representations for plan administrators. Secrets appear only as "set" flags."""

from typing import Any

from rest_framework import serializers

from exchange.models import (
    Consent,
    Delivery,
    DeliveryAttempt,
    ExchangeEvent,
    ExchangeRequest,
)
from hub.models import (
    AuditEvent,
    FhirEndpoint,
    IdentityProvider,
    OnboardingRequest,
    SftpDestination,
    SigningKey,
)


class ExchangeRequestSerializer(serializers.ModelSerializer[ExchangeRequest]):
    former_payer = serializers.CharField(source="former_payer.slug", read_only=True)

    class Meta:
        model = ExchangeRequest
        fields = [
            "id",
            "member",
            "former_payer",
            "consent",
            "authorization_mode",
            "status",
            "status_changed_at",
            "reason_code",
            "reason_message",
            "opted_in_at",
            "due_by",
            "coverage_start",
            "coverage_end",
            "is_concurrent",
            "resource_counts",
            "screened_out_counts",
            "created_at",
        ]


class ConsentSerializer(serializers.ModelSerializer[Consent]):
    class Meta:
        model = Consent
        fields = [
            "id",
            "member",
            "former_payer",
            "policy",
            "period_start",
            "period_end",
            "status",
            "opted_in_at",
            "revoked_at",
            "fhir_resource",
        ]


class ExchangeEventSerializer(serializers.ModelSerializer[ExchangeEvent]):
    class Meta:
        model = ExchangeEvent
        fields = ["id", "exchange_request", "status", "message", "data", "created_at"]


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "exchange_request",
            "mode",
            "status",
            "manifest",
            "remote_directory",
            "created_at",
            "delivered_at",
        ]


class DeliveryAttemptSerializer(serializers.ModelSerializer[DeliveryAttempt]):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "delivery",
            "task_id",
            "started_at",
            "finished_at",
            "succeeded",
            "error_code",
            "error_message",
        ]


class OnboardingRequestSerializer(serializers.ModelSerializer[OnboardingRequest]):
    class Meta:
        model = OnboardingRequest
        fields = [
            "id",
            "organization_name",
            "npi",
            "state",
            "contact_email",
            "note",
            "status",
            "created_at",
        ]


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "changes",
            "client_address",
            "request_id",
            "occurred_at",
        ]


class SigningKeySerializer(serializers.ModelSerializer[SigningKey]):
    class Meta:
        model = SigningKey
        fields = [
            "id",
            "kid",
            "algorithm",
            "public_jwk",
            "status",
            "created_at",
            "rotated_at",
            "retire_after",
        ]


class _SecretsAsFlags(serializers.ModelSerializer[Any]):
    """Replace each secret field by ``<name>_set``: whether a value is stored, never the value."""

    secret_fields: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = dict(super().to_representation(instance))
        for name in self.secret_fields:
            data[f"{name}_set"] = bool(getattr(instance, name))
        return data


class FhirEndpointSerializer(_SecretsAsFlags):
    secret_fields = ("member_client_secret",)

    class Meta:
        model = FhirEndpoint
        fields = [
            "id",
            "base_url",
            "offers_member_authorization",
            "offers_backend_services",
            "authorize_url",
            "token_url",
            "member_client_id",
            "backend_client_id",
            "scopes",
            "capabilities",
            "capabilities_checked_at",
        ]


class IdentityProviderSerializer(_SecretsAsFlags):
    secret_fields = ("client_secret",)

    class Meta:
        model = IdentityProvider
        fields = [
            "id",
            "issuer",
            "client_id",
            "scopes",
            "claim_member_id",
            "claim_given_name",
            "claim_family_name",
            "claim_birth_date",
            "claim_gender",
            "claim_role",
        ]


class SftpDestinationSerializer(_SecretsAsFlags):
    secret_fields = ("private_key", "password")

    class Meta:
        model = SftpDestination
        fields = ["id", "host", "port", "username", "host_key", "remote_directory"]
