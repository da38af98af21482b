from hub.models.audit import AuditEvent, AuditLogIsAppendOnly
from hub.models.client_certificates import ClientCertificate
from hub.models.integration import (
    ClientAuthMethod,
    EndpointProbe,
    FhirEndpoint,
    IdentityProvider,
    ProbeTrigger,
    RoleClaimFormat,
    SftpDestination,
)
from hub.models.onboarding import FirstAdministratorLink, OnboardingRequest, OnboardingStatus
from hub.models.operator_authenticators import OperatorAuthenticator
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
from hub.models.tenant_scope import UnscopedTenantQuery

__all__ = [
    "AuditEvent",
    "AuditLogIsAppendOnly",
    "ClientAuthMethod",
    "ClientCertificate",
    "DeliveryMode",
    "EndpointProbe",
    "FhirEndpoint",
    "FirstAdministratorLink",
    "IdentityProvider",
    "OnboardingRequest",
    "OnboardingStatus",
    "OperatorAuthenticator",
    "Payer",
    "PayerStatus",
    "PlanType",
    "ProbeTrigger",
    "Role",
    "RoleClaimFormat",
    "SftpDestination",
    "SigningAlgorithm",
    "SigningKey",
    "SigningKeyStatus",
    "TenantOwned",
    "TenantQuerySet",
    "UnscopedTenantQuery",
    "User",
]
