"""Integration settings forms of the plan-admin portal; validation lives on the models."""

from django import forms

from hub.models import FhirEndpoint, IdentityProvider, SftpDestination
from hub.secret_inputs import SecretFieldsFormMixin


class FhirEndpointForm(SecretFieldsFormMixin, forms.ModelForm):
    secret_fields = ("member_client_secret",)

    class Meta:
        model = FhirEndpoint
        fields = [
            "base_url", "offers_member_authorization", "offers_backend_services", "authorize_url",
            "token_url", "member_client_id", "member_client_secret", "backend_client_id", "scopes",
        ]  # fmt: skip


class IdentityProviderForm(SecretFieldsFormMixin, forms.ModelForm):
    secret_fields = ("client_secret",)

    class Meta:
        model = IdentityProvider
        fields = [
            "issuer", "client_id", "client_secret", "scopes", "claim_member_id", "claim_given_name",
            "claim_family_name", "claim_birth_date", "claim_gender", "claim_role",
        ]  # fmt: skip


class SftpDestinationForm(SecretFieldsFormMixin, forms.ModelForm):
    secret_fields = ("private_key", "password")

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
