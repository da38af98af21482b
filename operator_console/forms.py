"""What an operator types: the console's sign-in, and the decision on an onboarding request."""

from typing import Any

from django import forms
from django.contrib.auth.signals import user_login_failed
from django_otp.admin import OTPAdminAuthenticationForm

from hub.models import OperatorAuthenticator, Payer
from hub.validators import validate_npi


class OperatorSignInForm(OTPAdminAuthenticationForm):
    """Username, password and the code of the operator's authenticator app, on one page.

    The operator has one authenticator (hub/operator_accounts.py), so it is the device asked
    for; a wrong code counts as a failed sign-in towards the lockout, like a wrong password.
    """

    otp_token = forms.CharField(
        required=False,
        label="Code from your authenticator app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": "Enter the 6-digit code your authenticator app shows for the hub.",
        "invalid_token": "That code is not the one your authenticator app shows now. Enter "
        "the current code; if it keeps failing, check the time on your phone.",
        "n_failed_attempts": "Too many wrong codes in a row: wait half a minute, then enter "
        "the code your authenticator app shows.",
        "device_required": "Your operator account has no authenticator app yet, so it "
        "cannot enter the console. Ask the hub team to issue one "
        "(manage.py operator_account <username> --new-authenticator).",
    }

    def _chosen_device(self, user: Any) -> OperatorAuthenticator | None:
        return OperatorAuthenticator.objects.filter(user=user, confirmed=True).first()

    def clean_otp(self, user: Any) -> None:
        try:
            super().clean_otp(user)
        except forms.ValidationError:
            if user is not None:
                user_login_failed.send(
                    sender=type(self),
                    credentials={"username": user.get_username()},
                    request=self.request,
                )
            raise


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
