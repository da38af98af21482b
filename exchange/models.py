"""The exchange's records: consents, requests and their timelines, deliveries.

``payer`` on every row is the tenant that owns it: the member's *new* payer, who
asked for the data and receives it. The *former* payer is a plain reference.
"""

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hub.fields import EncryptedTextField
from hub.models import Payer, TenantOwned
from hub.validators import CLIENT_ID_MAX_LENGTH, validate_client_id, validate_payer_url


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


class OptInMethod(models.TextChoices):
    """How the new payer obtained the member's opt-in (its attestation, CMS-0057-F)."""

    ENROLLMENT_FORM = "enrollment_form", "On the enrollment form"
    PHONE = "phone", "By phone"
    PORTAL = "portal", "In the payer's member portal"
    PAPER = "paper", "On paper"
    IN_PERSON = "in_person", "In person"


class OptInRecord(TenantOwned):
    """The record of one opt-in the new payer attests: when and how it was obtained.

    CMS-0057-F asks the request to include "an attestation of enrollment and opt-in", and
    the member's opt-in and opt-out to be recorded with the member-education text given at
    or before it (42 CFR 422.121(b)). One opt-in covers every previous and concurrent payer
    named with it: its requests point here.
    """

    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    obtained_at = models.DateTimeField()
    method = models.CharField(max_length=20, choices=OptInMethod.choices)
    # The version of the member-education text the member was shown (MemberEducationText,
    # or the hub's default; exchange/education.py).
    education_text_version = models.CharField(max_length=100, blank=True)
    policy = models.CharField(max_length=10, choices=ConsentPolicy.choices)
    # None for a member's own request in the portal: the member is not asked for it.
    new_coverage_start = models.DateField(null=True, blank=True)
    # Who attested it: the payer system's client id (the audit event's actor label), or the
    # member's username for an opt-in given in the portal.
    attested_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # The opt-out: when, and the member-education text current then (42 CFR 422.121(b)).
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawal_education_text_version = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["payer", "-created_at"], name="optin_payer_created")]

    def __str__(self) -> str:
        return f"Opt-in {self.pk}"


class MemberEducationText(TenantOwned):
    """One published version of the payer's plain-language explanation of payer-to-payer
    exchange: its benefits, the member's right to opt in and to withdraw, and how.

    CMS-0057-F has the new payer give it at or before the opt-in request, annually and on
    its website (42 CFR 422.121(b)), and opt-ins and opt-outs name the version given, so
    a version never changes once published: a new one is published instead
    (exchange/education.py). The hub's default text stands in until the first.
    """

    # "1", "2", … numbered by the hub, or the administrator's own label; unique per payer.
    version = models.CharField(max_length=50)
    title = models.CharField(max_length=200)
    # Plain text; paragraphs are separated by a blank line.
    body = models.TextField()
    published_at = models.DateTimeField()
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-published_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["payer", "version"], name="education_version_per_payer")
        ]
        indexes = [
            models.Index(fields=["payer", "-published_at"], name="education_payer_published")
        ]

    def __str__(self) -> str:
        return f"Member education version {self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError(
                "A published member-education text never changes; publish a new version."
            )
        super().save(*args, **kwargs)


class ExchangeRequest(TenantOwned):
    """One member's request for their records held by one former (or concurrent) payer."""

    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    former_payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="exchange_requests")
    # The opt-in it was opened with: posted by a payer system (exchange/enrollment.py) or
    # given by the member in the portal (exchange/services.py); none for a roster's.
    opt_in_record = models.ForeignKey(
        OptInRecord,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="exchange_requests",
    )
    authorization_mode = models.CharField(max_length=20, choices=AuthorizationMode.choices)
    status = models.CharField(
        max_length=30, choices=ExchangeStatus.choices, default=ExchangeStatus.CONSENTED
    )
    status_changed_at = models.DateTimeField()
    # Moves with every state change and every page retrieved; the reaper resumes requests
    # whose work has not moved for a while (exchange/tasks.py, STYLE.md #5).
    last_progress_at = models.DateTimeField(null=True, blank=True)
    resume_count = models.PositiveSmallIntegerField(default=0)
    # On a failed/ended request: a stable code and a sentence the member can act on.
    reason_code = models.CharField(max_length=50, blank=True)
    reason_message = models.TextField(blank=True)
    # CMS-0057-F: the request is due no later than one week after opt-in.
    opted_in_at = models.DateTimeField()
    due_by = models.DateTimeField()
    # When the plan administrators were told the request is due soon / overdue (once each).
    due_soon_alerted_at = models.DateTimeField(null=True, blank=True)
    overdue_alerted_at = models.DateTimeField(null=True, blank=True)
    # What the member typed from the old card (HRex CoverageToMatch), and coverage dates.
    card_member_id = EncryptedTextField()
    coverage_start = models.DateField()
    coverage_end = models.DateField(null=True, blank=True)
    is_concurrent = models.BooleanField(default=False)
    # The former payer's answer to $member-match (HRex MemberIdentifier / MemberId).
    matched_member_identifier = EncryptedTextField(blank=True)
    matched_patient_id = models.CharField(max_length=64, blank=True)
    resource_counts = models.JSONField(default=dict, blank=True)
    # Where retrieval stands (exchange/retrieval.py): mode, next URL or search position,
    # pages staged. Saved after every page so a restarted worker resumes from it.
    retrieval_cursor = models.JSONField(default=dict, blank=True)
    # A cohort member whose match or retrieval a bulk job of its cohort drives (exchange/bulk/):
    # the single-request steps and their reaper leave it alone until the job hands it over.
    awaits_bulk_job = models.BooleanField(default=False)
    screened_out_counts = models.JSONField(default=dict, blank=True)
    # A recurring pull (exchange/schedules.py): the schedule it belongs to and its run (0 for
    # the request that opened the schedule), unique together so no run is made twice.
    schedule = models.ForeignKey(
        "PullSchedule", on_delete=models.PROTECT, null=True, blank=True, related_name="pulls"
    )
    schedule_run = models.PositiveIntegerField(null=True, blank=True)
    # The window of the records asked for: changed since ``records_since`` (``_since``, the
    # hub's watermark; None for the whole record) up to ``records_as_of`` (when retrieval
    # began, or the bulk export's transactionTime). PDex STU 2.2 §pdex-180.
    records_since = models.DateTimeField(null=True, blank=True)
    records_as_of = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-opted_in_at"]
        indexes = [
            models.Index(fields=["payer", "status"], name="exchange_payer_status"),
            models.Index(fields=["payer", "-opted_in_at"], name="exchange_payer_optin"),
            models.Index(fields=["payer", "due_by"], name="exchange_payer_due"),
            models.Index(fields=["former_payer", "status"], name="exchange_former_status"),
            # The plan-admin portal: "requests to us" newest first, and sort by last change.
            models.Index(fields=["former_payer", "-opted_in_at"], name="exchange_former_optin"),
            models.Index(fields=["payer", "-status_changed_at"], name="exchange_payer_changed"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(due_by__gt=models.F("opted_in_at")), name="exchange_due_after_optin"
            ),
            models.UniqueConstraint(
                fields=["schedule", "schedule_run"],
                condition=Q(schedule__isnull=False),
                name="exchange_schedule_run_once",
            ),
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


class RegistrationChoice(models.TextChoices):
    """How the plan administrator wants the hub registered at one former payer."""

    AUTOMATIC = "automatic", "Automatic: the hub registers itself (RFC 7591)"
    MANUAL = "manual", "Manual: client ids the former payer issued out of band"


class RegistrationMethod(models.TextChoices):
    """How the clients the hub uses now came to be."""

    DYNAMIC = "dynamic", "Registered by the hub (RFC 7591)"
    CONFIGURED = "configured", "Client ids entered in the former payer's FHIR endpoint settings"
    MANUAL = "manual", "Client ids entered by your administrator"


class HolderRegistration(TenantOwned):
    """The hub's clients at one data holder, acting for one new payer (the tenant).

    A data holder binds a backend-services client to the organization it acts for
    (the sandbox's ``organization_identifier``), and honours a Consent only for the
    client whose organization is the Consent's recipient (HRex §Consent, IRCP actor).
    So each (new payer, former payer) pair has its own clients.

    ``choice`` is the administrator's; ``method`` says how the clients in use were
    obtained (blank until there are any). SPEC.md "Authorization": a holder registers
    clients out of band or by RFC 7591, so a manual choice wins even where the holder
    advertises a registration endpoint.
    """

    former_payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    choice = models.CharField(
        max_length=12, choices=RegistrationChoice.choices, default=RegistrationChoice.AUTOMATIC
    )
    method = models.CharField(max_length=12, choices=RegistrationMethod.choices, blank=True)
    backend_client_id = models.CharField(
        max_length=CLIENT_ID_MAX_LENGTH, blank=True, validators=[validate_client_id]
    )
    member_client_id = models.CharField(
        max_length=CLIENT_ID_MAX_LENGTH, blank=True, validators=[validate_client_id]
    )
    member_client_secret = EncryptedTextField(blank=True)
    member_redirect_uri = models.CharField(max_length=500, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    # Why the last registration or token request with these clients failed, for the
    # administrator's page; cleared by the next success.
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # The last SMART Backend Services access token, reused until shortly before it expires.
    backend_access_token = EncryptedTextField(blank=True)
    backend_token_scope = models.CharField(max_length=500, blank=True)
    backend_token_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["payer", "former_payer"], name="holder_registration_per_pair"
            )
        ]

    def __str__(self) -> str:
        return f"Registration of payer {self.payer_id} at payer {self.former_payer_id}"


class MemberLaunch(TenantOwned):
    """One SMART standalone launch of a member at the former payer, and the tokens it earned.

    ``state`` is kept only as its SHA-256 (looked up on the callback); the PKCE verifier
    and the tokens are encrypted at rest.
    """

    exchange_request = models.ForeignKey(
        ExchangeRequest, on_delete=models.CASCADE, related_name="member_launches"
    )
    state_digest = models.CharField(max_length=64, unique=True)
    code_verifier = EncryptedTextField()
    redirect_uri = models.CharField(max_length=500)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    scope = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["exchange_request", "completed_at"], name="launch_request_done")
        ]

    def __str__(self) -> str:
        return f"Member launch {self.pk}"


class SubscriptionStatus(models.TextChoices):
    """FHIR R4 Subscription.status."""

    ACTIVE = "active", "Active"
    ERROR = "error", "Error"
    OFF = "off", "Off"


class ConsentSubscription(TenantOwned):
    """A former payer's FHIR Subscription to one Consent (seed 000 step 5).

    ``payer`` is the tenant that holds the Consent (the new payer); ``subscriber`` is the
    former payer named in it, the only one that may subscribe.
    """

    consent = models.ForeignKey(Consent, on_delete=models.CASCADE, related_name="subscriptions")
    subscriber = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=10, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    reason = models.CharField(max_length=500, blank=True)
    criteria = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=500)
    payload = models.CharField(max_length=100, blank=True)
    # "Name: value" lines sent with every notification; they usually carry a bearer token.
    headers = EncryptedTextField(blank=True)
    end = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"Subscription {self.pk} to {self.criteria}"


class ConsentNotification(TenantOwned):
    """One notification owed to a subscriber for one change of a Consent; retried until sent.

    An outbox row: written in the same transaction as the Consent's change, so a broker
    that is down when it commits loses nothing — the beat sweep re-sends every row still
    undelivered once its ``next_attempt_at`` has passed (exchange/consents/tasks.py).
    """

    subscription = models.ForeignKey(
        ConsentSubscription, on_delete=models.CASCADE, related_name="notifications"
    )
    consent_status = models.CharField(max_length=10)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # When a task is expected to have tried again; a row past it has no live task.
    next_attempt_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(delivered_at__isnull=True),
                name="consent_notification_owed",
            )
        ]

    def __str__(self) -> str:
        return f"Notification {self.pk} ({self.consent_status})"


class UsedClientAssertion(models.Model):
    """A client assertion's ``jti`` already spent at the hub's token endpoint (replay guard,
    SMART Backend Services §Authenticating: the server SHALL reject a reused jti)."""

    issuer = models.CharField(max_length=100)
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "jti"], name="client_assertion_jti_once")
        ]

    def __str__(self) -> str:
        return self.jti


class CohortStatus(models.TextChoices):
    """Where a cohort as a whole stands; each member's own state is its ExchangeRequest's."""

    PREPARING = "preparing", "Reading what the former payer supports"
    MATCHING = "matching", "Matching members at the former payer"
    EXPORTING = "exporting", "Fetching the matched members' records"
    DELIVERING = "delivering", "Screening and delivering members' records"
    COMPLETED = "completed", "Every member has an outcome"
    CANCELLED = "cancelled", "Cancelled"


class CohortPath(models.TextChoices):
    """How the hub gets a cohort's data from its holder, decided from its CapabilityStatement."""

    DAVINCI_DATA_EXPORT = (
        "davinci_data_export",
        "$bulk-member-match, then Group $davinci-data-export (PDex payer-to-payer bulk)",
    )
    GROUP_EXPORT = "group_export", "$bulk-member-match, then Group $export (Bulk Data)"
    SINGLE_MEMBER = (
        "single_member",
        "One member at a time: $member-match, then $everything or searches",
    )


class Cohort(TenantOwned):
    """Members of the new payer (the tenant) whose records are asked of one former payer together.

    Each member has its own Consent and ExchangeRequest (through CohortMember), so the rule's
    clock, the timeline, the audit log and withdrawal work per member as for one request.
    """

    former_payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=20, choices=CohortStatus.choices, default=CohortStatus.PREPARING
    )
    status_changed_at = models.DateTimeField(default=timezone.now)
    # When the cohort's next check on its members is due: one chain of checks owns it, and
    # the job reaper restarts the checks of a cohort whose chain was lost with its worker.
    next_check_at = models.DateTimeField(null=True, blank=True)
    # The roster it came from: the uploaded file's name and format (csv, ndjson, parameters).
    roster_name = models.CharField(max_length=255, blank=True)
    roster_format = models.CharField(max_length=20, blank=True)
    member_count = models.PositiveIntegerField(default=0)
    # Members per $bulk-member-match request (the holder endpoint's setting when created).
    chunk_size = models.PositiveIntegerField()
    path = models.CharField(max_length=30, choices=CohortPath.choices, blank=True)
    # Why that path: what the CapabilityStatement offered, in a sentence.
    path_reason = models.CharField(max_length=500, blank=True)
    # The cohort manifest as delivered (every member's outcome and files).
    manifest = models.JSONField(default=dict, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["payer", "-created_at"], name="cohort_payer_created")]

    def __str__(self) -> str:
        return f"Cohort {self.pk} ({self.status})"


class BulkJobKind(models.TextChoices):
    MEMBER_MATCH = "member_match", "Member match ($bulk-member-match)"
    DATA_EXPORT = "data_export", "Data export"


class BulkJobState(models.TextChoices):
    """A Bulk Data request at the holder (Bulk Data STU2 §Async), as the hub follows it."""

    WAITING = "waiting", "Not yet sent"
    RUNNING = "running", "Running at the former payer"
    DOWNLOADING = "downloading", "Downloading its files"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class BulkJob(TenantOwned):
    """One asynchronous request of a cohort at its holder: a chunk's match, or a Group's export.

    The status URL is saved as soon as the holder gives it, so a restarted worker polls it
    again instead of kicking off a second time; polls are scheduled tasks, never sleeps.
    """

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=BulkJobKind.choices)
    # Chunk number within the cohort, from 1 (a match chunk and its export share it).
    sequence = models.PositiveIntegerField()
    state = models.CharField(
        max_length=20, choices=BulkJobState.choices, default=BulkJobState.WAITING
    )
    state_changed_at = models.DateTimeField(default=timezone.now)
    # What was asked: operation path and parameters (no PHI: exportType, _typeFilter, _since).
    operation = models.CharField(max_length=300, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    # The export's Group at the holder (the matched Group of this chunk's match).
    group_id = models.CharField(max_length=200, blank=True)
    status_url = models.CharField(max_length=2000, blank=True)
    kick_offs = models.PositiveSmallIntegerField(default=0)
    kicked_off_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    # The holder's X-Progress, as it said it.
    progress = models.CharField(max_length=200, blank=True)
    # Moves with every poll and every file downloaded; the job reaper resumes the others.
    last_progress_at = models.DateTimeField(null=True, blank=True)
    resume_count = models.PositiveSmallIntegerField(default=0)
    # Transient failures (429, 5xx, network) in a row; the job fails after too many.
    consecutive_errors = models.PositiveSmallIntegerField(default=0)
    manifest = models.JSONField(default=dict, blank=True)
    transaction_time = models.DateTimeField(null=True, blank=True)
    # One entry per output file: type, url, count, lines read, bytes, done.
    files = models.JSONField(default=list, blank=True)
    # The holder's error files (OperationOutcome NDJSON): how many issues, and their words.
    holder_errors = models.JSONField(default=list, blank=True)
    reason_code = models.CharField(max_length=50, blank=True)
    reason_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cohort", "kind", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["cohort", "kind", "sequence"], name="bulk_job_per_chunk"
            )
        ]
        indexes = [models.Index(fields=["state", "last_progress_at"], name="bulk_job_state")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.sequence} ({self.state})"


class MatchOutcome(models.TextChoices):
    """PdexMultiMemberMatchResultCS, the Group a member landed in (PDex STU 2.2)."""

    MATCH = "match", "Matched"
    NO_MATCH = "nomatch", "Not matched"
    CONSENT_CONSTRAINT = "consentconstraint", "Consent constraint"


class CohortMember(TenantOwned):
    """One roster line of a cohort, with its own request (and so its own consent and clock)."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="members")
    exchange_request = models.OneToOneField(
        ExchangeRequest, on_delete=models.CASCADE, related_name="cohort_member"
    )
    # The roster's line (CSV) or record (NDJSON) number, from 1, to name it in every report.
    line = models.PositiveIntegerField()
    match_job = models.ForeignKey(
        BulkJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    export_job = models.ForeignKey(
        BulkJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    match_outcome = models.CharField(max_length=20, choices=MatchOutcome.choices, blank=True)
    group_id = models.CharField(max_length=200, blank=True)
    # The MemberBundle as sent to $bulk-member-match (demographics, card: PHI, so encrypted),
    # shown to the administrator when the member is not matched.
    submitted = EncryptedTextField(blank=True)

    class Meta:
        ordering = ["cohort", "line"]
        constraints = [
            models.UniqueConstraint(fields=["cohort", "line"], name="cohort_member_line")
        ]
        indexes = [
            models.Index(fields=["cohort", "match_outcome"], name="cohort_member_outcome"),
            models.Index(fields=["match_job"], name="cohort_member_match_job"),
            models.Index(fields=["export_job"], name="cohort_member_export_job"),
        ]

    def __str__(self) -> str:
        return f"Cohort {self.cohort_id} line {self.line}"


class WebhookEndpoint(TenantOwned):
    """A URL of the payer's systems that receives signed webhooks (exchange/webhooks/).

    ``event_types`` lists the event types it subscribed to (exchange/webhooks/events.py);
    an inactive endpoint is sent nothing, and its messages still owed are given up.
    """

    url = models.CharField("URL", max_length=500, validators=[validate_payer_url])
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Webhook endpoint {self.pk}"


class WebhookSecret(TenantOwned):
    """A signing secret of an endpoint, ``whsec_<base64>`` (Standard Webhooks §Signature scheme).

    Encrypted at rest and shown only when created. A rotated secret keeps signing beside
    its successor until ``expires_at``, so the receiver can switch without losing messages.
    """

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="secrets")
    secret = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # None: the current secret; a time: signs until then, then never again.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Webhook secret {self.pk}"


class WebhookMessageStatus(models.TextChoices):
    PENDING = "pending", "Sending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookMessage(TenantOwned):
    """One event owed to one endpoint; its ``message_id`` is the ``webhook-id`` of every try.

    An outbox row, written in the transaction of the change it reports and sent once that
    commits (exchange/webhooks/tasks.py); ``next_attempt_at`` is when a try is next due.
    """

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    message_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=60)
    # The Standard Webhooks envelope: {"type", "timestamp", "data"}; ids, states and
    # checksums only, never PHI.
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=10, choices=WebhookMessageStatus.choices, default=WebhookMessageStatus.PENDING
    )
    # Tries of the current schedule: a manual redelivery starts the schedule again.
    scheduled_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_message_owed",
            ),
            models.Index(fields=["payer", "-created_at"], name="webhook_message_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} ({self.event_type})"


class WebhookAttempt(TenantOwned):
    """One POST of a message: when, what the endpoint answered (or the error), how long it took."""

    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField()
    succeeded = models.BooleanField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="webhook_attempt_number")
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of message {self.message_id}"


class PullKind(models.TextChoices):
    """Why a member's records are pulled again (CMS-0057-F, 42 CFR 422.121(b))."""

    # Concurrent coverage: "at least quarterly" while both coverages last.
    REFRESH = "refresh", "Concurrent coverage, at least quarterly"
    # Previous coverage that ended lately: claims still arrive after it ends.
    RUN_OFF = "run_off", "Run-off after coverage ended"


class PullScheduleEnd(models.TextChoices):
    RUN_OFF_DONE = "run_off_done", "The run-off pull was made"
    CONSENT_WITHDRAWN = "consent_withdrawn", "The member withdrew the consent"
    CONSENT_ENDED = "consent_ended", "The consent's period ended"
    HOLDER_GONE = "holder_gone", "The former payer no longer takes part in the hub"


class PullSchedule(TenantOwned):
    """Recurring pulls of one member's records from one former or concurrent payer.

    Opened with the member's first request (run 0); each later run is a request of its own,
    asked with ``_since`` = ``watermark``, the ``records_as_of`` of the last pull delivered
    (PDex STU 2.2 §pdex-180: the requester keeps its own watermark). ``next_run_at`` is when
    the next run is due; an ended schedule keeps none.
    """

    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    former_payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+")
    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="pull_schedules")
    kind = models.CharField(max_length=10, choices=PullKind.choices)
    # The coverage at the former payer: the refresh stops, and the run-off is counted, from
    # its end (None while concurrent coverage goes on).
    coverage_end = models.DateField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)
    watermark = models.DateTimeField(null=True, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=200, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=PullScheduleEnd.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The scheduler's one question, across payers: which runs are due now. Only live
            # schedules are in it, so its size is the work pending, not the history.
            models.Index(
                fields=["next_run_at"],
                name="schedule_due",
                condition=Q(ended_at__isnull=True, paused_at__isnull=True),
            ),
            models.Index(fields=["payer", "member"], name="schedule_payer_member"),
            models.Index(fields=["payer", "former_payer"], name="schedule_payer_former"),
        ]
        constraints = [
            # One live schedule of a kind per member and former payer.
            models.UniqueConstraint(
                fields=["payer", "member", "former_payer", "kind"],
                condition=Q(ended_at__isnull=True),
                name="schedule_live_once",
            )
        ]

    def __str__(self) -> str:
        return f"Schedule {self.pk} ({self.kind})"


class MemberAuthorizationLink(TenantOwned):
    """The email that sends a member the link to allow a transfer at their former payer.

    An opt-in opens requests with no member sign-in (exchange/enrollment.py); when a former
    payer offers only member-authorized access (SMART App Launch standalone), the member must
    sign in there, so the hub mails them the link to the request's page in their plan's
    portal. An outbox row, written with the request in the opt-in's transaction and sent once
    that commits (exchange/member_links/); ``next_attempt_at`` is when a try is next due.
    """

    exchange_request = models.OneToOneField(
        ExchangeRequest, on_delete=models.CASCADE, related_name="member_link"
    )
    # The address the payer system gave with the opt-in: a personal identifier, encrypted.
    email = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Not sent, and no more tries: the mail server refused the address, every try failed, or
    # the request no longer awaited the member (``last_error`` says which).
    given_up_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(sent_at__isnull=True, given_up_at__isnull=True),
                name="member_link_owed",
            )
        ]

    def __str__(self) -> str:
        return f"Authorization link of request {self.exchange_request_id}"

    @property
    def status(self) -> str:
        """``sent``; ``not_sent`` once no more tries are made; ``pending`` until then."""
        if self.sent_at is not None:
            return "sent"
        return "not_sent" if self.given_up_at is not None else "pending"
