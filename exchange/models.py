"""The exchange's records: consents, requests and their timelines, deliveries.

``payer`` on every row is the tenant that owns it: the member's *new* payer, who
asked for the data and receives it. The *former* payer is a plain reference.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from hub.fields import EncryptedTextField
from hub.models import Payer, TenantOwned


class ConsentPolicy(models.TextChoices):
    """HRex Consent ``policy[0].uri`` choices (HRex STU 1.2 §Consent)."""

    # Everything may be shared, sensitive data included.
    SENSITIVE = "sensitive", "Everything, including sensitive data"
    # Only non-sensitive data may be shared.
    REGULAR = "regular", "Only non-sensitive data"


class ConsentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Withdrawn"


class Consent(TenantOwned):
    """The member's opt-in for one former payer to disclose to the new payer (the tenant)."""

    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    former_payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    policy = models.CharField(max_length=10, choices=ConsentPolicy.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(
        max_length=10, choices=ConsentStatus.choices, default=ConsentStatus.ACTIVE
    )
    # The HRex Consent resource exactly as sent to the former payer.
    fhir_resource = models.JSONField()
    opted_in_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")), name="consent_period_ordered"
            ),
            models.CheckConstraint(
                condition=Q(status="active", revoked_at__isnull=True)
                | Q(status="inactive", revoked_at__isnull=False),
                name="consent_revocation_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"Consent {self.pk} ({self.status})"


class ExchangeStatus(models.TextChoices):
    """Request states (ARCHITECTURE.md "Request states"); moves only via exchange/state_machine.py."""

    CONSENTED = "consented", "Consented"
    AWAITING_AUTHORIZATION = "awaiting_authorization", "Waiting for the member to authorize"
    AUTHORIZED = "authorized", "Authorized"
    MATCHING = "matching", "Matching the member at the former payer"
    MATCHED = "matched", "Member found at the former payer"
    RETRIEVING = "retrieving", "Retrieving records"
    SCREENING = "screening", "Screening records"
    PACKAGING = "packaging", "Packaging records"
    DELIVERING = "delivering", "Delivering records"
    DELIVERED = "delivered", "Delivered"
    NO_MATCH = "no_match", "Member not found at the former payer"
    CONSENT_CONSTRAINED = "consent_constrained", "The former payer cannot honour the consent"
    AUTHORIZATION_DENIED = "authorization_denied", "Authorization was denied"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    REVOKED = "revoked", "Consent withdrawn"


class AuthorizationMode(models.TextChoices):
    MEMBER_AUTHORIZED = (
        "member_authorized",
        "Member signs in at the former payer (SMART App Launch)",
    )
    BACKEND_SERVICES = "backend_services", "Payer-to-payer match (SMART Backend Services)"


class ExchangeRequest(TenantOwned):
    """One member's request for their records held by one former (or concurrent) payer."""

    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    former_payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="exchange_requests")
    authorization_mode = models.CharField(max_length=20, choices=AuthorizationMode.choices)
    status = models.CharField(
        max_length=30, choices=ExchangeStatus.choices, default=ExchangeStatus.CONSENTED
    )
    status_changed_at = models.DateTimeField()
    # On a failed/ended request: a stable code and a sentence the member can act on.
    reason_code = models.CharField(max_length=50, blank=True)
    reason_message = models.TextField(blank=True)
    # CMS-0057-F: the request is due no later than one week after opt-in.
    opted_in_at = models.DateTimeField()
    due_by = models.DateTimeField()
    # What the member typed from the old card (HRex CoverageToMatch), and coverage dates.
    card_member_id = EncryptedTextField()
    coverage_start = models.DateField()
    coverage_end = models.DateField(null=True, blank=True)
    is_concurrent = models.BooleanField(default=False)
    # The former payer's answer to $member-match (HRex MemberIdentifier / MemberId).
    matched_member_identifier = EncryptedTextField(blank=True)
    matched_patient_id = models.CharField(max_length=64, blank=True)
    resource_counts = models.JSONField(default=dict, blank=True)
    screened_out_counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-opted_in_at"]
        indexes = [
            models.Index(fields=["payer", "status"], name="exchange_payer_status"),
            models.Index(fields=["payer", "-opted_in_at"], name="exchange_payer_optin"),
            models.Index(fields=["payer", "due_by"], name="exchange_payer_due"),
            models.Index(fields=["former_payer", "status"], name="exchange_former_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(due_by__gt=models.F("opted_in_at")), name="exchange_due_after_optin"
            )
        ]

    def __str__(self) -> str:
        return f"Request {self.pk} ({self.status})"


class ExchangeEvent(TenantOwned):
    """One line of a request's timeline, shown to the member and the plan administrators."""

    exchange_request = models.ForeignKey(
        ExchangeRequest, on_delete=models.CASCADE, related_name="events"
    )
    status = models.CharField(max_length=30, choices=ExchangeStatus.choices, blank=True)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["exchange_request", "created_at"], name="event_request_time")
        ]

    def __str__(self) -> str:
        return self.message


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(TenantOwned):
    """The package of one request on its way to the new payer (pushed, or into the hub repository)."""

    exchange_request = models.OneToOneField(
        ExchangeRequest, on_delete=models.CASCADE, related_name="delivery"
    )
    mode = models.CharField(max_length=20)
    status = models.CharField(
        max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    # manifest.json as delivered: files with sha256 and size, counts, what was screened out.
    manifest = models.JSONField(default=dict, blank=True)
    remote_directory = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.status})"


class DeliveryAttempt(TenantOwned):
    """One try at a delivery; one row per task id, so a redelivered task is recognised (STYLE.md #4)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    task_id = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    succeeded = models.BooleanField(null=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "task_id"], name="delivery_attempt_per_task"
            )
        ]

    def __str__(self) -> str:
        return f"Attempt {self.task_id}"
