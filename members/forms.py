"""The member's forms: find a former plan, describe the old coverage, consent, invite a plan."""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.utils import timezone

from directory import forms as directory_forms
from exchange.education import EducationText, member_education_text_shown
from exchange.models import ConsentPolicy
from hub.models import Payer
from hub.uswds import MARKED_BY_GROUP, uswds_control_class


class UswdsFormMixin(forms.BaseForm):
    """Give every control its USWDS class, and mark a field in error the way USWDS shows it.

    A field in error gets ``usa-input--error`` and is described by its message, whose id
    ``<field id>_error`` the templates give it (members/_field.html).
    """

    # Said before each of this form's lines in the error summary, when a page has several.
    summary_prefix = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = uswds_control_class(field.widget)

    def add_error(self, field: str | None, error: Any) -> None:
        super().add_error(field, error)
        for name in self.errors:
            if name not in self.fields:
                continue
            widget = self.fields[name].widget
            if not isinstance(widget, MARKED_BY_GROUP) and "--error" not in widget.attrs["class"]:
                widget.attrs["class"] += " usa-input--error"
            described_by = [f"{self[name].auto_id}_error"]
            if self.fields[name].help_text:
                described_by.append(f"{self[name].auto_id}_helptext")
            widget.attrs["aria-describedby"] = " ".join(described_by)


@dataclass(frozen=True)
class FormError:
    """One line of a page's error summary: the message, and the control it is about."""

    field_id: str
    message: str


def form_errors(*forms_on_page: UswdsFormMixin) -> list[FormError]:
    """Return every error of the page's forms in page order, each pointing at its control."""
    summary = []
    for form in forms_on_page:
        names = list(form.fields)
        for name, messages in form.errors.items():
            bound = form[name if name in form.fields else names[0]]
            # A group of radio buttons has no single label target; its first button is it.
            field_id = bound.id_for_label or f"{bound.auto_id}_0"
            summary += [
                FormError(field_id, f"{form.summary_prefix}{message}") for message in messages
            ]
    return summary


# What a card's member id looks like: letters, digits, dashes and spaces. Anything else —
# markup, quotes, control characters — is refused with a message, never stored.
card_member_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9 -]{0,39}$",
    "Enter the member ID exactly as printed on the card: letters, digits and dashes only.",
)

# CMS-0057-F: previous payers of the last five years (SPEC.md "The rule").
LOOKBACK_YEARS = 5


UNSURE = "If you are unsure, give your best estimate: your former plan uses it to find you."


class FormerCoverageForm(UswdsFormMixin, forms.Form):
    """One former (or concurrent) plan, as printed on the old card."""

    card_member_id = forms.CharField(
        label="Member ID on your card from this plan",
        max_length=40,
        error_messages={"required": "Enter the member ID printed on your card from this plan."},
        validators=[card_member_id_validator],
        help_text="It is printed on the front of the card. Your former plan uses it to find "
        "your records.",
    )
    coverage_start = forms.DateField(
        label="Date this plan started covering you",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={
            "required": "Enter the date this plan started covering you; an estimate will do.",
            "invalid": "Enter the date this plan started covering you as month, day and year.",
        },
        help_text=f"Your former plan looks for your records from this date. {UNSURE}",
    )
    coverage_end = forms.DateField(
        label="Date this plan stopped covering you",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={
            "invalid": "Enter the date this plan stopped covering you as month, day and year."
        },
        help_text=f"Leave it empty if this plan still covers you. {UNSURE}",
    )

    def __init__(self, *args: Any, former_plan_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.summary_prefix = f"{former_plan_name}: "

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start: date | None = cleaned.get("coverage_start")
        end: date | None = cleaned.get("coverage_end")
        today = timezone.localdate()
        if start and start > today:
            self.add_error("coverage_start", "The start date is in the future.")
        if start and end and end < start:
            self.add_error("coverage_end", "The end date is before the start date.")
        if end and end < today - timedelta(days=365 * LOOKBACK_YEARS):
            self.add_error(
                "coverage_end",
                "This coverage ended more than five years ago; the rule covers the last five years.",
            )
        return cleaned


class ConsentForm(UswdsFormMixin, forms.Form):
    policy = forms.ChoiceField(
        label="What may be shared",
        choices=[
            (
                ConsentPolicy.SENSITIVE,
                "Everything, including sensitive information (such as mental health, "
                "substance use, HIV or sexual health)",
            ),
            (ConsentPolicy.REGULAR, "Everything except sensitive information"),
        ],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose what may be shared."},
    )
    agree = forms.BooleanField(
        label="I agree that my former plan(s) named above may share my records with my current plan.",
        error_messages={"required": "Tick the box to give your consent, or go back."},
    )
    # Shown only when the member already has an open request to one of the chosen plans.
    ask_again = forms.BooleanField(
        label="Ask again anyway: I know a request is already open", required=False
    )
    # The version of the member-education text the page showed, carried back so the opt-in
    # records what the member read (42 CFR 422.121(b)); the template writes it, not the
    # field, so a page shown again carries the text it shows then.
    education_version = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, payer: Payer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payer = payer

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        shown: EducationText | None = member_education_text_shown(
            payer=self.payer, version=cleaned.get("education_version") or ""
        )
        if shown is None and "agree" not in self.errors:
            # Not a text this payer's members can have been shown: a page from elsewhere, or
            # altered. The member reads the current one and agrees again.
            self.add_error(
                "agree",
                "Read the explanation of your rights above, then tick the box again to agree.",
            )
        cleaned["education_text"] = shown
        return cleaned


class DirectorySearchForm(UswdsFormMixin, directory_forms.DirectorySearchForm):
    """The directory's search (the same checks), drawn with USWDS controls."""


class OnboardingRequestForm(UswdsFormMixin, directory_forms.OnboardingRequestForm):
    """The directory's onboarding form (the same checks), in a member's words."""

    member_labels = {
        "organization_name": "Name of your former plan",
        "npi": "NPI (if you know it)",
        "state": "State (two letters)",
        "contact_email": "Your email, if you want to hear back",
        "note": "Anything that helps us find them",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in self.member_labels.items():
            self.fields[name].label = label
