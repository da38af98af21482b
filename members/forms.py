"""The member's forms: find a former plan, describe the old coverage, consent, invite a plan."""

from datetime import date, timedelta
from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.utils import timezone

from directory import forms as directory_forms
from exchange.models import ConsentPolicy

# What a card's member id looks like: letters, digits, dashes and spaces. Anything else —
# markup, quotes, control characters — is refused with a message, never stored.
card_member_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9 -]{0,39}$",
    "Enter the member id exactly as printed on the card: letters, digits and dashes only.",
)

# CMS-0057-F: previous payers of the last five years (SPEC.md "The rule").
LOOKBACK_YEARS = 5


class FormerCoverageForm(forms.Form):
    """One former (or concurrent) plan, as printed on the old card."""

    card_member_id = forms.CharField(
        label="Member id on your old card", max_length=40, validators=[card_member_id_validator]
    )
    coverage_start = forms.DateField(
        label="Coverage started", widget=forms.DateInput(attrs={"type": "date"})
    )
    coverage_end = forms.DateField(
        label="Coverage ended",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Leave empty if you are still covered by this plan.",
    )

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


class ConsentForm(forms.Form):
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
    )
    agree = forms.BooleanField(
        label="I agree that my former plan(s) named above may share my records with my current plan.",
        error_messages={"required": "Tick the box to give your consent, or go back."},
    )


class OnboardingRequestForm(directory_forms.OnboardingRequestForm):
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
