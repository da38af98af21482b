"""What an operator types to decide an onboarding request."""

from django import forms

from hub.models import Payer
from hub.validators import validate_npi


class OnboardingApproveForm(forms.Form):
    existing_payer = forms.ModelChoiceField(
        queryset=Payer.objects.order_by("name"),
        required=False,
        label="Existing payer",
        help_text="Choose one when the payer is known to the hub already (e.g. invited); "
        "leave empty to create it.",
    )
    name = forms.CharField(max_length=200, required=False, label="Name of the new payer")
    slug = forms.SlugField(max_length=60, required=False, label="URL name (/p/<name>/)")
    npi = forms.CharField(max_length=10, required=False, label="NPI", validators=[validate_npi])
    payer_identifier = forms.RegexField(
        regex=r"^[A-Za-z0-9-]+$",
        max_length=40,
        required=False,
        label="Payer id",
        error_messages={"invalid": "Letters, digits and dashes only."},
    )


class OnboardingRejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=2000,
        label="Why it is declined (the requester reads this)",
    )
