"""Invitations of payers that are not yet in the directory."""

from django.conf import settings
from django.db import models

from hub.models.tenancy import Payer, TenantOwned
from hub.validators import validate_npi


class OnboardingStatus(models.TextChoices):
    OPEN = "open", "Open"
    CONTACTED = "contacted", "Contacted"
    ONBOARDED = "onboarded", "Onboarded"
    DECLINED = "declined", "Declined"


class OnboardingRequest(TenantOwned):
    """A member's or administrator's request that the hub bring a missing payer on board.

    ``payer`` is the tenant who asked (the member's new payer); its administrators
    and the hub operators see it.
    """

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    organization_name = models.CharField(max_length=200)
    npi = models.CharField("NPI", max_length=10, blank=True, validators=[validate_npi])
    # The payer id (claims) the requester knew, if any; checked against existing payers at approval.
    payer_identifier = models.CharField("payer id", max_length=40, blank=True)
    state = models.CharField(max_length=2, blank=True)
    contact_email = models.EmailField(blank=True)
    note = models.TextField(blank=True)
    status = models.CharField(
        max_length=20, choices=OnboardingStatus.choices, default=OnboardingStatus.OPEN
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The operator's decision (operator/services.py), shown to the requester where they see
    # their invitations: the payer it created or activated, or the reason it was declined.
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision_reason = models.TextField("reason", blank=True)
    onboarded_payer = models.ForeignKey(
        Payer, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.organization_name


class FirstAdministratorLink(TenantOwned):
    """A one-time link with which a new payer's first plan administrator sets up sign-in.

    Nobody at a new payer can sign in to the portal before its identity provider is set up,
    and only a plan administrator can set it up: an operator breaks the circle by issuing
    this link (hub/first_admin_links.py). It expires, works once, and a newer link replaces
    it. Only the SHA-256 of its token is kept, as with passwords.
    """

    token_digest = models.CharField(max_length=64, unique=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    issued_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    replaced_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return (
            f"First administrator link of payer {self.payer_id}, issued {self.issued_at:%Y-%m-%d}"
        )
