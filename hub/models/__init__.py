from hub.models.audit import AuditEvent, AuditLogIsAppendOnly
from hub.models.integration import FhirEndpoint, IdentityProvider, SftpDestination
from hub.models.onboarding import OnboardingRequest, OnboardingStatus
from hub.models.signing_keys import SigningAlgorithm, SigningKey, SigningKeyStatus
from hub.models.tenancy import (
    DeliveryMode,
    Payer,
    PayerStatus,
    PlanType,
    Role,
    TenantOwned,
    TenantQuerySet,
    User,
)

__all__ = [
    "AuditEvent",
    "AuditLogIsAppendOnly",
    "DeliveryMode",
    "FhirEndpoint",
    "IdentityProvider",
    "OnboardingRequest",
    "OnboardingStatus",
    "Payer",
    "PayerStatus",
    "PlanType",
    "Role",
    "SftpDestination",
    "SigningAlgorithm",
    "SigningKey",
    "SigningKeyStatus",
    "TenantOwned",
    "TenantQuerySet",
    "User",
]
