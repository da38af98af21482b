"""The directory's forms: its search, and the request to bring a missing payer on board.

Both portals use them as they are (the member portal relabels the onboarding form in a
member's words), so a search or an invitation is checked the same way wherever it is made.
"""

from django import forms
from django.core.validators import RegexValidator

from hub.models import OnboardingRequest, PlanType


class DirectorySearchForm(forms.Form):
    """The directory's search, for members and administrators alike."""

    q = forms.CharField(label="Plan name", required=False, max_length=100)
    state = forms.CharField(
        label="State",
        required=False,
        max_length=2,
        validators=[RegexValidator(r"^[A-Za-z]{2}$", "Use the two-letter state code, like MN.")],
    )
    plan_type = forms.ChoiceField(
        label="Kind of plan", required=False, choices=[("", "Any"), *PlanType.choices]
    )


class OnboardingRequestForm(forms.ModelForm):
    state = forms.RegexField(
        regex=r"^[A-Za-z]{2}$",
        required=False,
        max_length=2,
        error_messages={"invalid": "Enter the two-letter code of a state, such as MN."},
    )

    class Meta:
        model = OnboardingRequest
        fields = ["organization_name", "npi", "state", "contact_email", "note"]
        widgets = {"note": forms.Textarea(attrs={"rows": 3})}

    def clean_state(self) -> str:
        return str(self.cleaned_data.get("state") or "").upper()
