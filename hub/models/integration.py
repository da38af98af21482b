"""How the hub reaches each payer: its FHIR endpoint, its identity provider, its SFTP server.

Secrets are EncryptedTextFields: encrypted at rest, never logged, never rendered
back into a form (plan_admin/forms.py shows "set" / "replace").
"""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from hub.fields import EncryptedTextField
from hub.models.tenancy import TenantOwned
from hub.validators import (
    CLIENT_ID_MAX_LENGTH,
    validate_client_id,
    validate_payer_url,
    validate_public_host,
    validate_ssh_private_key,
    validate_ssh_public_key,
)


class FhirEndpoint(TenantOwned):
    """The payer's FHIR server as a data holder (the *former* payer's side of an exchange)."""

    base_url = models.CharField("FHIR base URL", max_length=500, validators=[validate_payer_url])
    # SMART App Launch standalone: the member signs in at the former payer.
    offers_member_authorization = models.BooleanField(
        "offers member-authorized access (SMART App Launch)", default=False
    )
    # SMART Backend Services + $member-match: payer-to-payer, no member sign-in there.
    offers_backend_services = models.BooleanField(
        "offers payer-to-payer access (SMART Backend Services)", default=True
    )
    authorize_url = models.CharField(max_length=500, blank=True, validators=[validate_payer_url])
    token_url = models.CharField(max_length=500, blank=True, validators=[validate_payer_url])
    member_client_id = models.CharField(
        "the hub's client id for member launches",
        max_length=CLIENT_ID_MAX_LENGTH,
        blank=True,
        validators=[validate_client_id],
    )
    member_client_secret = EncryptedTextField(blank=True)
    backend_client_id = models.CharField(
        "the hub's backend-services client id",
        max_length=CLIENT_ID_MAX_LENGTH,
        blank=True,
        validators=[validate_client_id],
    )
    scopes = models.CharField(max_length=500, default="system/*.rs")
    # Members per $bulk-member-match request (PDex STU 2.2): a holder may cap how many
    # MemberBundles it takes at once; a smaller chunk also fails (and retries) less at a time.
    bulk_match_chunk_size = models.PositiveIntegerField(
        "members per bulk match request",
        default=500,
        validators=[MinValueValidator(1), MaxValueValidator(20_000)],
    )
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        help_text="Operations and types found at the last test of /metadata.",
    )
    capabilities_checked_at = models.DateTimeField(null=True, blank=True)
    # The compatibility radar's claim on its next probe (a conditional UPDATE, so a probe task
    # delivered twice probes once; exchange/radar/services.py).
    radar_claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payer"], name="fhir_endpoint_one_per_payer")
        ]

    def __str__(self) -> str:
        return self.base_url


class ProbeTrigger(models.TextChoices):
    """Who asked for a probe of a FHIR endpoint."""

    RADAR = "radar", "The compatibility radar (scheduled)"
    TEST = "test", "A plan administrator's Test"
    ENGINE = "engine", "The engine, which found no recent probe"


class EndpointProbe(TenantOwned):
    """One probe of a payer's FHIR endpoint by the compatibility radar (exchange/radar/).

    The payer is the probed one (the endpoint's). ``summary`` is what the engine decides
    by: FHIR version, operations, searchable types, bulk output formats, whether the SMART
    and Da Vinci configurations were read and a token obtained. ``changes`` are the
    differences from the endpoint's previous probe, as sentences; a probe with changes is
    kept for ever, one without is pruned after ``RADAR_PROBE_RETENTION_DAYS`` unless it is
    the endpoint's latest.
    """

    endpoint = models.ForeignKey(FhirEndpoint, on_delete=models.CASCADE, related_name="probes")
    checked_at = models.DateTimeField()
    trigger = models.CharField(max_length=8, choices=ProbeTrigger.choices)
    ok = models.BooleanField()
    summary = models.JSONField(default=dict, blank=True)
    # The steps of the probe as the Test shows them: [{"name", "ok", "detail"}].
    steps = models.JSONField(default=list, blank=True)
    changes = models.JSONField(default=list, blank=True)
    # When the operator's and administrators' alert about the changes was sent (claimed once).
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "compatibility radar probe"
        verbose_name_plural = "compatibility radar"
        indexes = [
            models.Index(fields=["endpoint", "-checked_at"], name="endpoint_probe_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} at {self.checked_at:%Y-%m-%d %H:%M}"

    @property
    def headline(self) -> str:
        """Return the first failed step's sentence, or that every step passed."""
        failed = next((s for s in self.steps if not s.get("ok")), None)
        return str(failed["detail"]) if failed else "Every check passed."


class ClientAuthMethod(models.TextChoices):
    """How the hub proves at the provider's token endpoint that it is the payer's client.

    OpenID Connect Core §9 names the methods; OpenID Connect Discovery §3 says a provider
    that advertises none in ``token_endpoint_auth_methods_supported`` takes
    ``client_secret_basic``.
    """

    AUTOMATIC = "automatic", "Automatic (from the provider's discovery document)"
    CLIENT_SECRET_BASIC = "client_secret_basic", "client_secret_basic (secret in a Basic header)"
    CLIENT_SECRET_POST = "client_secret_post", "client_secret_post (secret in the request body)"
    PRIVATE_KEY_JWT = "private_key_jwt", "private_key_jwt (signed with this payer's signing key)"
    NONE = "none", "none (a public client: no secret, the code is bound by PKCE alone)"


class RoleClaimFormat(models.TextChoices):
    """The shape of the claim that says whether a person is a plan administrator."""

    TEXT = "text", "A single text value"
    LIST = "list", "A list of values (the role is one of them)"


class IdentityProvider(TenantOwned):
    """The payer's OpenID Connect provider, through which its members and admins sign in here."""

    issuer = models.CharField(
        max_length=500,
        validators=[validate_payer_url],
        help_text="Exactly as the provider's discovery document names it, including any "
        "trailing slash (OpenID Connect Discovery §4.3).",
    )
    client_id = models.CharField(max_length=255)
    client_secret = EncryptedTextField(blank=True)
    token_endpoint_auth_method = models.CharField(
        "client authentication",
        max_length=32,
        choices=ClientAuthMethod.choices,
        default=ClientAuthMethod.AUTOMATIC,
        help_text="How the hub authenticates at your provider's token endpoint. Automatic "
        "uses what the provider's discovery document advertises: client_secret_basic (or "
        "client_secret_post when that is all it takes) when a client secret is saved, "
        "private_key_jwt (or none, for a public client) when no secret is. Choose one when "
        "your client was registered for a specific method. private_key_jwt signs with this "
        "payer's signing keys: register the JWKS URL shown above at the provider.",
    )
    scopes = models.CharField(max_length=255, default="openid profile")
    # Which id_token / userinfo claim carries each fact the hub needs for $member-match.
    claim_member_id = models.CharField(max_length=100, default="member_id")
    claim_given_name = models.CharField(max_length=100, default="given_name")
    claim_family_name = models.CharField(max_length=100, default="family_name")
    claim_birth_date = models.CharField(max_length=100, default="birthdate")
    claim_gender = models.CharField(max_length=100, default="gender")
    claim_role = models.CharField(
        "role claim",
        max_length=200,
        default="hub_role",
        help_text="The claim that carries the person's role: its name (such as "
        "https://hub.example/roles), or a dotted path into nested claims (such as "
        "realm_access.roles).",
    )
    role_claim_format = models.CharField(
        max_length=8,
        choices=RoleClaimFormat.choices,
        default=RoleClaimFormat.TEXT,
        help_text="Whether the role claim is one text value or a list of values.",
    )
    role_admin_value = models.CharField(
        "administrator role value",
        max_length=200,
        default="plan_admin",
        help_text="The value that makes a person a plan administrator at the hub.",
    )
    role_member_value = models.CharField(
        "member role value",
        max_length=200,
        default="member",
        blank=True,
        help_text="The value that makes a person a member. A person with neither value is "
        "refused with a page that says so. Leave empty to let in as a member everyone "
        "without the administrator value.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payer"], name="identity_provider_one_per_payer")
        ]

    def __str__(self) -> str:
        return self.issuer


class SftpDestination(TenantOwned):
    """The payer's own SFTP server, when it wants deliveries pushed rather than collected."""

    host = models.CharField(
        max_length=253,
        validators=[
            RegexValidator(r"^[A-Za-z0-9.:\-\[\]]+$", "Enter a host name or an IP address."),
            validate_public_host,
        ],
    )
    port = models.PositiveIntegerField(
        default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    username = models.CharField(max_length=100)
    private_key = EncryptedTextField(blank=True, validators=[validate_ssh_private_key])
    password = EncryptedTextField(blank=True)
    host_key = models.TextField(
        "pinned host key",
        validators=[validate_ssh_public_key],
        help_text="The server's public host key line; connections to any other key are refused.",
    )
    remote_directory = models.CharField(max_length=500, default="incoming")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payer"], name="sftp_destination_one_per_payer")
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"

    def clean(self) -> None:
        if not self.private_key and not self.password:
            raise ValidationError("Give either a private key or a password for the SFTP account.")
