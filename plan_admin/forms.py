"""Forms of the plan-admin portal: integration settings, the lists' filters, a roster upload.

Field validation lives on the models (hub/validators.py); these forms add what only
makes sense at the door: refusing private network addresses typed as literals.
"""

from datetime import date
from typing import Any, cast
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from exchange.models import ExchangeStatus, RegistrationChoice
from exchange.webhooks.events import EVENT_TYPES
from hub.client_certificates import PEM_MAX_BYTES
from hub.models import (
    FhirEndpoint,
    IdentityProvider,
    Payer,
    PayerStatus,
    SftpDestination,
)
from hub.secret_inputs import SecretFieldsFormMixin, SecretInput
from hub.validators import (
    CLIENT_ID_MAX_LENGTH,
    validate_client_id,
    validate_payer_url,
    validate_public_host,
)
from plan_admin.cohort_selectors import MEMBER_GROUPS, MemberFilters
from plan_admin.schedule_selectors import SCHEDULE_STATES, ScheduleFilters
from plan_admin.selectors import REQUEST_SORTS, RequestFilters


class PublicDestinationFormMixin(forms.BaseForm):
    """Refuse private addresses in the URL fields and host fields a form names."""

    url_fields: tuple[str, ...] = ()
    host_fields: tuple[str, ...] = ()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        hosts = [
            (name, urlsplit(cleaned.get(name) or "").hostname or "") for name in self.url_fields
        ]
        hosts += [(name, cleaned.get(name) or "") for name in self.host_fields]
        for name, host in hosts:
            try:
                validate_public_host(host)
            except ValidationError as exc:
                self.add_error(name, exc)
        return cleaned


class FhirEndpointForm(PublicDestinationFormMixin, SecretFieldsFormMixin, forms.ModelForm):
    secret_fields = ("member_client_secret",)
    url_fields = ("base_url", "authorize_url", "token_url")

    class Meta:
        model = FhirEndpoint
        fields = [
            "base_url", "offers_member_authorization", "offers_backend_services", "authorize_url",
            "token_url", "member_client_id", "member_client_secret", "backend_client_id", "scopes",
        ]  # fmt: skip


def _client_id_field(label: str, help_text: str) -> forms.CharField:
    # strip=False: a pasted id with a stray space or line break is refused with a
    # sentence (validate_client_id), never trimmed into an id the holder did not issue.
    return forms.CharField(
        label=label,
        help_text=help_text,
        required=False,
        strip=False,
        max_length=CLIENT_ID_MAX_LENGTH,
        validators=[validate_client_id],
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off"}),
    )


class HolderRegistrationForm(forms.Form):
    """How the hub is registered at one former payer: automatic (RFC 7591) or manual ids."""

    choice = forms.ChoiceField(
        label="How the hub registers at this former payer",
        choices=RegistrationChoice.choices,
        widget=forms.RadioSelect,
    )
    backend_client_id = _client_id_field(
        "Payer-to-payer client id (SMART Backend Services)",
        "The client id the former payer issued for your JWKS URL (above). Up to 2,048 characters.",
    )
    member_client_id = _client_id_field(
        "Member sign-in client id (SMART App Launch)",
        "The client id the former payer issued for the hub's SMART launch redirect URI.",
    )
    member_client_secret = forms.CharField(
        label="Member sign-in client secret",
        required=False,
        strip=False,
        widget=SecretInput(),
        help_text="Only when the former payer issued one. Leave empty to keep the saved secret.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        manual = cleaned.get("choice") == RegistrationChoice.MANUAL
        ids = ("backend_client_id", "member_client_id")
        if manual and not self.errors and not any(cleaned.get(name) for name in ids):
            raise ValidationError(
                "Manual registration needs the client id the former payer issued: enter the "
                "payer-to-payer client id, the member sign-in client id, or both.",
                code="no_client_id",
            )
        if not manual:
            # Automatic: the hub registers its own clients; typed ids are not kept.
            for name in (*ids, "member_client_secret"):
                cleaned[name] = ""
        return cleaned


class IdentityProviderForm(PublicDestinationFormMixin, SecretFieldsFormMixin, forms.ModelForm):
    secret_fields = ("client_secret",)
    url_fields = ("issuer",)

    class Meta:
        model = IdentityProvider
        fields = [
            "issuer", "client_id", "client_secret", "token_endpoint_auth_method", "scopes",
            "claim_member_id", "claim_given_name", "claim_family_name", "claim_birth_date",
            "claim_gender", "claim_role", "role_claim_format", "role_admin_value",
            "role_member_value",
        ]  # fmt: skip


class SecretTextarea(forms.Textarea):
    """A multi-line secret such as a private key: like SecretInput, it never renders a value.

    A password input cannot hold one: browsers strip the line breaks a key needs.
    """

    def format_value(self, value: Any) -> None:
        return None


class SftpDestinationForm(PublicDestinationFormMixin, SecretFieldsFormMixin, forms.ModelForm):
    secret_fields = ("private_key", "password")
    host_fields = ("host",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["private_key"].widget = SecretTextarea(
            attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}
        )

    class Meta:
        model = SftpDestination
        fields = [
            "host",
            "port",
            "username",
            "private_key",
            "password",
            "host_key",
            "remote_directory",
        ]
        widgets = {"host_key": forms.Textarea(attrs={"rows": 2})}


def _sftp_destination_formfield(name: str) -> forms.Field | None:
    """Return the form field of an SftpDestination column, with the column's validators.

    A model field leaves its validators to model validation, which a plain form never runs.
    """
    column = cast("models.Field[Any, Any]", SftpDestination._meta.get_field(name))
    return column.formfield(validators=column.validators)


class SftpHostKeyFetchForm(PublicDestinationFormMixin, forms.Form):
    """Where to fetch a host key from, before the administrator pins it (validated as saved)."""

    host_fields = ("host",)
    host = _sftp_destination_formfield("host")
    port = _sftp_destination_formfield("port")


class ClientJwksForm(PublicDestinationFormMixin, forms.ModelForm):
    url_fields = ("client_jwks_url",)

    class Meta:
        model = Payer
        fields = ["client_jwks_url"]


class DeliveryModeForm(forms.ModelForm):
    class Meta:
        model = Payer
        fields = ["delivery_mode"]
        widgets = {"delivery_mode": forms.RadioSelect}


class RequestFilterForm(forms.Form):
    """The request list's query string: filters, search and sort."""

    status = forms.ChoiceField(
        choices=[("", "Any status"), *ExchangeStatus.choices], required=False
    )
    former_payer = forms.ModelChoiceField(
        queryset=Payer.objects.only("pk", "name"), required=False, empty_label="Any former payer"
    )
    opted_in_from = forms.DateField(
        required=False, label="Opted in from", widget=forms.DateInput(attrs={"type": "date"})
    )
    opted_in_to = forms.DateField(
        required=False, label="Opted in to", widget=forms.DateInput(attrs={"type": "date"})
    )
    overdue = forms.BooleanField(required=False, label="Only overdue")
    member = forms.CharField(required=False, max_length=100, label="Member")
    sort = forms.ChoiceField(choices=REQUEST_SORTS, required=False)

    def __init__(self, *args: Any, payer: Payer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Former payers a request of ours can name: the other participating payers.
        former_payer = cast(forms.ModelChoiceField, self.fields["former_payer"])
        former_payer.queryset = (
            Payer.objects.filter(status=PayerStatus.PARTICIPATING)
            .exclude(pk=payer.pk)
            .only("pk", "name")
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start: date | None = cleaned.get("opted_in_from")
        end: date | None = cleaned.get("opted_in_to")
        if start and end and end < start:
            self.add_error("opted_in_to", "The end of the date range is before its start.")
        return cleaned

    def filters(self) -> RequestFilters:
        """Return the filters of a valid form; an unbound one filters by nothing.

        The views list no request at all for an invalid form (views/requests.py ``_filtered``).
        """
        if not self.is_valid():
            return RequestFilters()
        data = self.cleaned_data
        former = data.get("former_payer")
        return RequestFilters(
            status=data.get("status") or "",
            former_payer_id=former.pk if former else None,
            opted_in_from=data.get("opted_in_from"),
            opted_in_to=data.get("opted_in_to"),
            overdue=bool(data.get("overdue")),
            member=(data.get("member") or "").strip(),
            sort=data.get("sort") or REQUEST_SORTS[0][0],
        )


class CohortMemberFilterForm(forms.Form):
    """The query string of a cohort's member list: a status group and a search."""

    group = forms.ChoiceField(
        choices=[("", "Any status"), *((key, label) for key, (label, _) in MEMBER_GROUPS.items())],
        required=False,
        label="Status",
    )
    member = forms.CharField(
        required=False, max_length=100, label="Name or member id",
        help_text="Words of the member's name, or the member id at your plan",
    )  # fmt: skip

    def filters(self) -> MemberFilters:
        """Return the filters of a valid form; an unbound one filters by nothing."""
        if not self.is_valid():
            return MemberFilters()
        return MemberFilters(
            group=self.cleaned_data.get("group") or "",
            member=(self.cleaned_data.get("member") or "").strip(),
        )


class ScheduleFilterForm(forms.Form):
    """The query string of the *Recurring pulls* list: state, former payer, member."""

    state = forms.ChoiceField(choices=SCHEDULE_STATES, required=False)
    former_payer = forms.ModelChoiceField(
        queryset=Payer.objects.only("pk", "name"), required=False, empty_label="Any former payer"
    )
    member = forms.CharField(
        required=False, max_length=100, label="Member", help_text="Part of the name or username"
    )

    def __init__(self, *args: Any, payer: Payer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        former_payer = cast(forms.ModelChoiceField, self.fields["former_payer"])
        former_payer.queryset = Payer.objects.exclude(pk=payer.pk).only("pk", "name")

    def filters(self) -> ScheduleFilters:
        """Return the filters of a valid form; an unbound one filters by nothing."""
        if not self.is_valid():
            return ScheduleFilters()
        former = self.cleaned_data.get("former_payer")
        return ScheduleFilters(
            state=self.cleaned_data.get("state") or "",
            former_payer_id=former.pk if former else None,
            member=(self.cleaned_data.get("member") or "").strip(),
        )


class PullSettingsForm(forms.ModelForm):
    """How often concurrent coverage is pulled again, and when the run-off comes."""

    class Meta:
        model = Payer
        fields = ["concurrent_refresh_days", "run_off_days"]


# Bigger than any roster the hub takes (20,000 members; exchange/bulk/roster.py) in any of
# its formats, small enough that the file is read whole in memory.
ROSTER_MAX_BYTES = 50 * 1024 * 1024
# What the file picker offers; the roster reader tells the format from the name, and refuses
# any other.
ROSTER_EXTENSIONS = (".csv", ".ndjson", ".json")


class RosterUploadForm(forms.Form):
    name = forms.CharField(
        max_length=150,
        label="Cohort name",
        help_text="How you will know this cohort in the list, e.g. “January 2027 enrollment”",
    )
    roster = forms.FileField(
        label="Roster file",
        help_text="CSV (.csv), NDJSON of Parameters (.ndjson) or one Parameters (.json); "
        f"at most {ROSTER_MAX_BYTES // (1024 * 1024)} MB",
        widget=forms.FileInput(attrs={"accept": ",".join(ROSTER_EXTENSIONS)}),
    )

    def clean_roster(self) -> Any:
        roster = self.cleaned_data["roster"]
        if roster.size > ROSTER_MAX_BYTES:
            raise ValidationError(
                f"The file is {roster.size / (1024 * 1024):.0f} MB; a roster may be at most "
                f"{ROSTER_MAX_BYTES // (1024 * 1024)} MB. Split it into several files.",
                code="too_large",
            )
        return roster


class WebhookEndpointForm(PublicDestinationFormMixin, forms.Form):
    """A new webhook endpoint: where the payer's systems receive events, and which ones."""

    url_fields = ("url",)

    url = forms.CharField(
        label="Endpoint URL",
        max_length=500,
        validators=[validate_payer_url],
        help_text="An https:// URL of your systems; the hub POSTs signed JSON to it.",
    )
    description = forms.CharField(label="Description", max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label="Events to send",
        choices=list(EVENT_TYPES.items()),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event to send."},
    )


class WebhookRotateForm(forms.Form):
    """How long the secret being replaced keeps signing beside the new one."""

    overlap_hours = forms.IntegerField(
        label="Keep signing with the old secret for (hours)",
        min_value=0,
        max_value=168,
        initial=24,
    )


class MemberEducationForm(forms.Form):
    """A new version of the member-education text (exchange/education.py checks the label)."""

    title = forms.CharField(
        label="Title", max_length=200, error_messages={"required": "Give the text a title."}
    )
    body = forms.CharField(
        label="Text",
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 14}),
        help_text="Plain language: the benefits of payer-to-payer exchange, the member's right "
        "to opt in and to withdraw, and how to do each. Separate paragraphs with a blank line.",
        error_messages={"required": "Write the text members will read."},
    )
    version = forms.CharField(
        label="Version label",
        max_length=50,
        required=False,
        help_text="Leave it empty to number versions 1, 2, 3…; or give your own, e.g. 2027-01.",
    )


class ClientCertificateForm(forms.Form):
    """The payer's client certificate for holders that require mutual TLS, as two PEM files.

    The files are only read here; hub.client_certificates checks them (PEM, key matches,
    valid now, RSA or EC) and says what to fix.
    """

    certificate = forms.FileField(
        label="Certificate (PEM)",
        help_text="Your payer's client certificate, followed by any intermediate certificates "
        "the former payer needs (a .pem or .crt file starting with -----BEGIN CERTIFICATE-----).",
        widget=forms.FileInput(attrs={"accept": ".pem,.crt,.cer"}),
    )
    private_key = forms.FileField(
        label="Private key (PEM)",
        help_text="The RSA or EC key the certificate was issued for, without a passphrase. The "
        "hub keeps it encrypted and never shows it again.",
        widget=forms.FileInput(attrs={"accept": ".pem,.key"}),
    )

    def _small(self, name: str, what: str) -> Any:
        upload = self.cleaned_data[name]
        if upload.size > PEM_MAX_BYTES:
            raise ValidationError(
                f"The {what} file is {upload.size // 1024} KB; a PEM {what} is at most "
                f"{PEM_MAX_BYTES // 1024} KB. Check that you chose the right file.",
                code="too_large",
            )
        return upload

    def clean_certificate(self) -> Any:
        return self._small("certificate", "certificate")

    def clean_private_key(self) -> Any:
        return self._small("private_key", "private key")

    def file_bytes(self, name: str) -> bytes:
        """Return the uploaded file's content (the check refuses anything too large to be PEM)."""
        upload = self.cleaned_data[name]
        content: bytes = upload.read(PEM_MAX_BYTES + 1)
        return content
