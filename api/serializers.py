"""What the payer-system API takes and gives (parsing only; the services decide)."""

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from api.selectors import payer_by_reference
from exchange.bulk.roster import CONSENT_CHOICES, CSV_COLUMN_HELP, MAX_MEMBERS
from exchange.enrollment import Enrollee, OptInAttestation, OtherCoverage
from exchange.member_match import ADMINISTRATIVE_GENDERS
from exchange.models import (
    BulkJob,
    Cohort,
    ConsentPolicy,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
    MemberAuthorizationLink,
    OptInMethod,
    OptInRecord,
    PullSchedule,
)
from hub.models import Payer

# The consent choices as the API names them (hub/settings.py names their OpenAPI enum).
CONSENT_CHOICE_NAMES = list(CONSENT_CHOICES)
_CONSENT_CHOICE_OF_POLICY = {policy: choice for choice, policy in CONSENT_CHOICES.items()}
# Where the email with a member's authorization link stands (MemberAuthorizationLink.status;
# hub/settings.py names their OpenAPI enum).
AUTHORIZATION_LINK_STATUSES = ["pending", "sent", "not_sent"]
# Other payers one opt-in may name, of each kind: a member's last five years and today.
MAX_OTHER_PAYERS = 20
# ISO 8601 with its UTC offset: when the member opted in is a moment, not a wall-clock time.
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


@extend_schema_field(OpenApiTypes.STR)
class PayerReferenceField(serializers.Field[Payer, str, str, Any]):
    """A payer named by its 10-digit NPI or its hub slug."""

    default_error_messages = {"invalid": "Give the payer's 10-digit NPI or its hub slug."}

    def to_internal_value(self, data: Any) -> Payer:
        # Printable only: a NUL or a lone surrogate would reach PostgreSQL, which refuses it.
        if (
            not isinstance(data, str)
            or not data.strip()
            or len(data) > 100
            or not data.isprintable()
        ):
            self.fail("invalid")
        reference = data.strip()
        payer = payer_by_reference(reference)
        if payer is None:
            kind = "NPI" if reference.isdigit() else "slug"
            raise serializers.ValidationError(
                f"No payer with the {kind} {reference!r} is known to the hub."
            )
        return payer

    def to_representation(self, value: Payer) -> str:
        return value.slug


class OffsetDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that must carry its UTC offset."""

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str) and not _OFFSET.search(value.strip()):
            raise serializers.ValidationError(
                "Give the UTC offset, e.g. 2026-11-20T14:03:00-05:00 or 2026-11-20T19:03:00Z."
            )
        return super().to_internal_value(value)


class MemberInSerializer(serializers.Serializer[Any]):
    member_id = serializers.CharField(
        max_length=100, help_text="The member's id at your plan (the member-id claim at sign-in)."
    )
    family_name = serializers.CharField(max_length=150)
    given_names = serializers.ListField(
        child=serializers.CharField(max_length=150), min_length=1, max_length=5
    )
    birth_date = serializers.DateField()
    gender = serializers.ChoiceField(choices=ADMINISTRATIVE_GENDERS)
    email = serializers.EmailField(
        required=False,
        allow_blank=True,
        default="",
        max_length=254,
        help_text="Where the hub emails the member a link to allow the transfer at a previous "
        "or concurrent payer that offers only member-authorized access (the member signs in "
        "there; no payer-to-payer path). Required when the opt-in names such a payer; its "
        "request then awaits the member's authorization (`awaiting_authorization`).",
    )


class NewCoverageInSerializer(serializers.Serializer[Any]):
    start = serializers.DateField(
        help_text="First day of the coverage at your plan; it starts the rule's one-week clock."
    )


class OtherPayerInSerializer(serializers.Serializer[Any]):
    payer = PayerReferenceField(help_text="The payer's 10-digit NPI or its hub slug.")
    member_id = serializers.CharField(
        max_length=100, help_text="The member id printed on the card of that plan."
    )
    coverage_start = serializers.DateField()
    coverage_end = serializers.DateField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Last day of that coverage; null or absent while it goes on (concurrent).",
    )


class ConsentInSerializer(serializers.Serializer[Any]):
    choice = serializers.ChoiceField(
        choices=CONSENT_CHOICE_NAMES,
        help_text="everything (sensitive data included: HRex #sensitive) or non_sensitive "
        "(HRex #regular).",
    )
    ends_on = serializers.DateField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Last day of the consent, if the member set one; otherwise PDex §pdex-208's "
        "suggestion (90 days after the new coverage starts, a year for concurrent coverage).",
    )


class AttestationInSerializer(serializers.Serializer[Any]):
    obtained_at = OffsetDateTimeField(help_text="When the member opted in, with its UTC offset.")
    method = serializers.ChoiceField(choices=OptInMethod.choices)
    education_text_version = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="The version of the member-education text the member was shown at or before "
        "the opt-in (CMS-0057-F). Once your plan publishes its texts in the hub, one of their "
        "versions (or hub-default-1, the hub's text shown before the first); left out, the "
        "version current at obtained_at is recorded.",
    )


class OptInInSerializer(serializers.Serializer[Any]):
    """An opt-in obtained at enrollment: the member, the other payers, the consent, the
    attestation (CMS-0057-F, 42 CFR 422.121(b))."""

    member = MemberInSerializer()
    new_coverage = NewCoverageInSerializer()
    previous_payers: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=OtherPayerInSerializer(), required=False, default=list, max_length=MAX_OTHER_PAYERS
    )
    concurrent_payers: serializers.ListSerializer[Any] = serializers.ListSerializer(
        child=OtherPayerInSerializer(), required=False, default=list, max_length=MAX_OTHER_PAYERS
    )
    consent = ConsentInSerializer()
    attestation = AttestationInSerializer()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs["previous_payers"] and not attrs["concurrent_payers"]:
            raise serializers.ValidationError(
                {"previous_payers": ["Name at least one previous or concurrent payer."]}
            )
        return attrs

    def opt_in_arguments(self) -> dict[str, Any]:
        """Return the keyword arguments of exchange/enrollment.py ``opt_in_create``."""
        data = self.validated_data
        member = data["member"]
        coverages = [
            OtherCoverage(
                where=f"{listed}[{index}]",
                former_payer=other["payer"],
                card_member_id=other["member_id"].strip(),
                coverage_start=other["coverage_start"],
                coverage_end=other["coverage_end"],
                concurrent=listed == "concurrent_payers",
            )
            for listed in ("previous_payers", "concurrent_payers")
            for index, other in enumerate(data[listed])
        ]
        attestation = data["attestation"]
        return {
            "enrollee": Enrollee(
                member_id=member["member_id"].strip(),
                family=member["family_name"].strip(),
                given=tuple(name.strip() for name in member["given_names"]),
                birth_date=member["birth_date"],
                gender=member["gender"],
                new_coverage_start=data["new_coverage"]["start"],
                email=member["email"].strip(),
            ),
            "coverages": coverages,
            "policy": CONSENT_CHOICES[data["consent"]["choice"]],
            "consent_ends_on": data["consent"]["ends_on"],
            "attestation": OptInAttestation(
                obtained_at=attestation["obtained_at"],
                method=OptInMethod(attestation["method"]),
                education_text_version=attestation["education_text_version"].strip(),
            ),
        }


# --- Answers ------------------------------------------------------------------------------


def _absolute(context: dict[str, Any], name: str, **kwargs: Any) -> str:
    return str(context["request"].build_absolute_uri(reverse(name, kwargs=kwargs)))


class PayerOutSerializer(serializers.Serializer[Payer]):
    slug = serializers.CharField()
    npi = serializers.CharField()
    name = serializers.CharField()


class RequestSummarySerializer(serializers.ModelSerializer[ExchangeRequest]):
    former_payer = PayerOutSerializer()
    concurrent = serializers.BooleanField(source="is_concurrent")
    links = serializers.SerializerMethodField()

    class Meta:
        model = ExchangeRequest
        fields = ["id", "former_payer", "concurrent", "status", "due_by", "links"]

    @extend_schema_field(
        inline_serializer(
            "RequestLinks",
            fields={"self": serializers.URLField(), "deliveries": serializers.URLField()},
        )
    )
    def get_links(self, obj: ExchangeRequest) -> dict[str, str]:
        return {
            "self": _absolute(self.context, "api:request-detail", request_id=obj.pk),
            "deliveries": _absolute(self.context, "api:request-deliveries", request_id=obj.pk),
        }


class EventOutSerializer(serializers.ModelSerializer[ExchangeEvent]):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ExchangeEvent
        fields = ["at", "status", "message"]


class ReasonOutSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()


class RecordsWindowSerializer(serializers.Serializer[ExchangeRequest]):
    changed_since = serializers.DateTimeField(
        source="records_since",
        allow_null=True,
        help_text="Only records changed after this were asked for (_since: the last pull "
        "delivered); null for the whole record.",
    )
    as_of = serializers.DateTimeField(
        source="records_as_of",
        allow_null=True,
        help_text="When the records were read; the next pull asks for what changed since. "
        "Null until retrieval begins.",
    )


class ScheduleOutSerializer(serializers.ModelSerializer[PullSchedule]):
    next_pull_at = serializers.DateTimeField(source="next_run_at", allow_null=True)
    changed_since = serializers.DateTimeField(
        source="watermark",
        allow_null=True,
        help_text="The next pull asks for what changed since this (null: nothing delivered yet).",
    )

    class Meta:
        model = PullSchedule
        fields = [
            "id",
            "kind",
            "runs",
            "next_pull_at",
            "changed_since",
            "paused_at",
            "ended_at",
            "end_reason",
        ]


class AuthorizationLinkOutSerializer(serializers.Serializer[MemberAuthorizationLink]):
    """The email that sends the member the link to allow the transfer (exchange/member_links/)."""

    status = serializers.ChoiceField(
        choices=AUTHORIZATION_LINK_STATUSES,
        help_text="`pending`: not sent yet, tries go on; `sent`; `not_sent`: no more tries "
        "(see `problem`), reach the member another way.",
    )
    sent_at = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField(help_text="Tries made so far.")
    problem = serializers.CharField(
        source="last_error", help_text="Why the last try failed, or why none is made; or empty."
    )


class RequestDetailSerializer(RequestSummarySerializer):
    opt_in = serializers.IntegerField(source="opt_in_record_id", allow_null=True)
    member_id = serializers.CharField(source="member.plan_member_id")
    reason = serializers.SerializerMethodField()
    authorization_link = serializers.SerializerMethodField()
    events = EventOutSerializer(many=True, source="events.all")
    records_window = RecordsWindowSerializer(source="*")
    schedule = ScheduleOutSerializer(
        allow_null=True,
        help_text="The recurring pulls this request belongs to (CMS-0057-F: concurrent coverage "
        "at least quarterly, a run-off after coverage ends); null when not scheduled.",
    )
    schedule_run = serializers.IntegerField(
        allow_null=True, help_text="Which pull of the schedule this is: 0 the first."
    )

    class Meta(RequestSummarySerializer.Meta):
        fields = [
            *RequestSummarySerializer.Meta.fields,
            "opt_in",
            "member_id",
            "status_changed_at",
            "opted_in_at",
            "created_at",
            "coverage_start",
            "coverage_end",
            "reason",
            "records_window",
            "schedule",
            "schedule_run",
            "authorization_link",
            "events",
        ]

    @extend_schema_field(ReasonOutSerializer(allow_null=True))
    def get_reason(self, obj: ExchangeRequest) -> dict[str, str] | None:
        """Why a request failed or ended, in words a person can act on."""
        if not obj.reason_code:
            return None
        return {"code": obj.reason_code, "message": obj.reason_message}

    @extend_schema_field(AuthorizationLinkOutSerializer(allow_null=True))
    def get_authorization_link(self, obj: ExchangeRequest) -> dict[str, Any] | None:
        """Whether and when the member was emailed the link to allow the transfer: for a
        request of an opt-in whose former payer offers only member-authorized access (the
        request awaits the member's authorization); null for any other request."""
        link: MemberAuthorizationLink | None = getattr(obj, "member_link", None)
        if link is None:
            return None
        return dict(AuthorizationLinkOutSerializer(link).data)


class FileOutSerializer(serializers.Serializer[Any]):
    path = serializers.CharField(help_text="Where the file landed, on the SFTP destination.")
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class DeliveryOutSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    status = serializers.CharField()
    mode = serializers.CharField()
    remote_directory = serializers.CharField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    files = FileOutSerializer(many=True)


class AttestationOutSerializer(serializers.Serializer[OptInRecord]):
    obtained_at = serializers.DateTimeField()
    method = serializers.CharField()
    education_text_version = serializers.CharField()
    attested_by = serializers.CharField()


class OptInOutSerializer(serializers.ModelSerializer[OptInRecord]):
    member_id = serializers.CharField(source="member.plan_member_id")
    withdrawal_education_text_version = serializers.CharField(
        help_text="Once withdrawn: the version of the member-education text current then."
    )
    consent = serializers.SerializerMethodField()
    attestation = AttestationOutSerializer(source="*")
    requests = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = OptInRecord
        fields = [
            "id",
            "member_id",
            "new_coverage_start",
            "consent",
            "attestation",
            "created_at",
            "withdrawn_at",
            "withdrawal_education_text_version",
            "requests",
            "links",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=CONSENT_CHOICE_NAMES))
    def get_consent(self, obj: OptInRecord) -> str:
        return _CONSENT_CHOICE_OF_POLICY[ConsentPolicy(obj.policy)]

    @extend_schema_field(RequestSummarySerializer(many=True))
    def get_requests(self, obj: OptInRecord) -> list[dict[str, Any]]:
        """One request per previous or concurrent payer, opened by the payer-to-payer path, or
        awaiting the member's authorization where that payer offers only member sign-in."""
        return list(
            RequestSummarySerializer(
                self.context["exchange_requests"], many=True, context=self.context
            ).data
        )

    @extend_schema_field(
        inline_serializer(
            "OptInLinks",
            fields={"self": serializers.URLField(), "withdraw": serializers.URLField()},
        )
    )
    def get_links(self, obj: OptInRecord) -> dict[str, str]:
        return {
            "self": _absolute(self.context, "api:opt-in-detail", opt_in_id=obj.pk),
            "withdraw": _absolute(self.context, "api:opt-in-withdraw", opt_in_id=obj.pk),
        }


class RequestFilterSerializer(serializers.Serializer[Any]):
    """The filters of the request list (query parameters)."""

    status = serializers.ChoiceField(choices=ExchangeStatus.choices, required=False)
    former_payer = PayerReferenceField(
        required=False, help_text="The former payer's 10-digit NPI or its hub slug."
    )
    member_id = serializers.CharField(
        required=False, max_length=100, help_text="The member's id at your plan."
    )
    opt_in = serializers.IntegerField(required=False, min_value=1)
    cohort = serializers.IntegerField(
        required=False, min_value=1, help_text="Only the members' requests of this cohort."
    )


# --- Cohorts ------------------------------------------------------------------------------


class CohortMemberInSerializer(serializers.Serializer[Any]):
    """One member of a cohort: a roster row (exchange/bulk/roster.py) without the former payer,
    which the cohort names once. Documents the shape; the roster's own checks read it."""

    member_id = serializers.CharField(max_length=100, help_text=CSV_COLUMN_HELP["member_id"])
    family_name = serializers.CharField(max_length=150)
    given_names = serializers.CharField(
        max_length=150, help_text="The member's given names, separated by spaces."
    )
    birth_date = serializers.DateField()
    gender = serializers.ChoiceField(choices=ADMINISTRATIVE_GENDERS)
    former_member_id = serializers.CharField(
        max_length=100, help_text=CSV_COLUMN_HELP["former_member_id"]
    )
    former_coverage_start = serializers.DateField(
        help_text=CSV_COLUMN_HELP["former_coverage_start"]
    )
    former_coverage_end = serializers.DateField(
        required=False, allow_null=True, help_text=CSV_COLUMN_HELP["former_coverage_end"]
    )
    new_coverage_start = serializers.DateField(help_text=CSV_COLUMN_HELP["new_coverage_start"])
    consent = serializers.ChoiceField(
        choices=CONSENT_CHOICE_NAMES, help_text=CSV_COLUMN_HELP["consent"]
    )
    opted_in_at = serializers.DateTimeField(help_text=CSV_COLUMN_HELP["opted_in_at"])


@extend_schema_field(CohortMemberInSerializer(many=True))
class CohortMembersField(serializers.ListField):
    """The members, read whole by the roster's checks, which name each one at fault."""


class CohortNameField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_length=150,
            required=False,
            allow_blank=True,
            default="",
            help_text="How you and your plan administrators will know the cohort; "
            "by default the day it was posted.",
            **kwargs,
        )


class CohortInSerializer(serializers.Serializer[Any]):
    """A cohort posted as JSON: one former payer, its members."""

    former_payer = PayerReferenceField(
        help_text="The former (or concurrent) payer's 10-digit NPI or its hub slug; it must "
        "take part in the hub and offer payer-to-payer bulk access."
    )
    name = CohortNameField()
    members = CohortMembersField(min_length=1, max_length=MAX_MEMBERS)


class CohortQuerySerializer(serializers.Serializer[Any]):
    """What a cohort posted as NDJSON says in its query: the former payer and a name."""

    former_payer = PayerReferenceField(
        help_text="For an NDJSON body: the former payer's 10-digit NPI or its hub slug."
    )
    name = CohortNameField()


class CohortJobOutSerializer(serializers.ModelSerializer[BulkJob]):
    reason = serializers.SerializerMethodField()

    class Meta:
        model = BulkJob
        fields = ["kind", "sequence", "state", "state_changed_at", "finished_at", "reason"]

    @extend_schema_field(ReasonOutSerializer(allow_null=True))
    def get_reason(self, obj: BulkJob) -> dict[str, str] | None:
        """Why the job failed or was cancelled."""
        if not obj.reason_code:
            return None
        return {"code": obj.reason_code, "message": obj.reason_message}


class CohortSummarySerializer(serializers.ModelSerializer[Cohort]):
    former_payer = PayerOutSerializer()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Cohort
        fields = [
            "id",
            "name",
            "former_payer",
            "status",
            "status_changed_at",
            "created_at",
            "finished_at",
            "member_count",
            "links",
        ]

    @extend_schema_field(
        inline_serializer(
            "CohortLinks",
            fields={"self": serializers.URLField(), "requests": serializers.URLField()},
        )
    )
    def get_links(self, obj: Cohort) -> dict[str, str]:
        requests = f"{_absolute(self.context, 'api:requests')}?{urlencode({'cohort': obj.pk})}"
        return {
            "self": _absolute(self.context, "api:cohort-detail", cohort_id=obj.pk),
            "requests": requests,
        }


class CohortDetailSerializer(CohortSummarySerializer):
    members_by_status = serializers.SerializerMethodField()
    jobs = serializers.SerializerMethodField()

    class Meta(CohortSummarySerializer.Meta):
        fields = [*CohortSummarySerializer.Meta.fields, "path", "members_by_status", "jobs"]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_members_by_status(self, obj: Cohort) -> dict[str, int]:
        """How many members' requests are in each state (a state no member is in is left out)."""
        return dict(self.context["members_by_status"])

    @extend_schema_field(CohortJobOutSerializer(many=True))
    def get_jobs(self, obj: Cohort) -> list[dict[str, Any]]:
        """Its $bulk-member-match and export jobs at the former payer, by chunk."""
        return list(CohortJobOutSerializer(self.context["jobs"], many=True).data)


class FieldErrorSerializer(serializers.Serializer[Any]):
    field = serializers.CharField(
        help_text="The path of the field in the body (a.b[0].c), or the header's name."
    )
    message = serializers.CharField()
    line = serializers.IntegerField(
        required=False,
        help_text="For an NDJSON body: the line of the member at fault (from 1).",
    )


# An RFC 9457 problem document (api/problems.py). Declared by fields: a Serializer cannot
# have a field named ``errors``.
PROBLEM = inline_serializer(
    "Problem",
    fields={
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "errors": FieldErrorSerializer(many=True),
    },
)
