"""Integration settings refuse bad URLs and keys with a message; secrets are write-only."""

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from hub.models import SftpDestination
from plan_admin.forms import (
    FhirEndpointForm,
    IdentityProviderForm,
    SftpDestinationForm,
    SftpHostKeyFetchForm,
)
from tests.conftest import Tenant
from tests.factories import IdentityProviderFactory, SftpDestinationFactory

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _private_key_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def _sftp_form(**overrides: str) -> SftpDestinationForm:
    data = {"host": "sftp.example-payer.com", "port": "22", "username": "hub", "password": "pw",
            "host_key": HOST_KEY, "remote_directory": "incoming", **overrides}  # fmt: skip
    return SftpDestinationForm(data=data)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "Enter a full URL"),
        ("http://fhir.example-payer.com/r4", "must start with https://"),
        ("https://user:pw@fhir.example-payer.com/r4", "user name or password"),
        ("ftp://fhir.example-payer.com/r4", "Enter a full URL"),
    ],
)
def test_a_bad_fhir_base_url_is_refused_with_a_message(url: str, message: str) -> None:
    form = FhirEndpointForm(data={"base_url": url, "scopes": "system/*.rs"})
    assert not form.is_valid()
    assert message in " ".join(form.errors["base_url"])


def test_a_good_fhir_endpoint_is_accepted(north: Tenant) -> None:
    form = FhirEndpointForm(data={"base_url": "https://fhir.example-payer.com/r4", "scopes": "system/*.rs",
                                  "offers_backend_services": "on"})  # fmt: skip
    assert form.is_valid(), form.errors
    form.instance.payer = north.payer
    form.save()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("host_key", "ssh-ed25519 not-base64!!", "not base64"),
        ("host_key", "hello", "public key line"),
        ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----",
         "Not a usable SSH private key"),
        ("host", "sftp example com", "host name or an IP address"),
        ("port", "70000", "less than or equal to 65535"),
    ],
)  # fmt: skip
def test_bad_sftp_settings_are_refused_with_a_message(field: str, value: str, message: str) -> None:
    form = _sftp_form(**{field: value})
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("host", "sftp example com", "host name or an IP address"),
     ("port", "70000", "less than or equal to 65535"),
     ("port", "0", "greater than or equal to 1")],
)  # fmt: skip
def test_a_host_key_is_fetched_only_from_a_place_that_could_be_saved(
    field: str, value: str, message: str
) -> None:
    form = SftpHostKeyFetchForm(data={"host": "sftp.example-payer.com", "port": "22", field: value})
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


def test_weak_rsa_keys_are_refused_and_good_keys_accepted(north: Tenant) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)
    form = _sftp_form(private_key=_private_key_pem(weak))
    assert not form.is_valid()
    assert "at least 2048 bits" in " ".join(form.errors["private_key"])

    good = _sftp_form(private_key=_private_key_pem(ed25519.Ed25519PrivateKey.generate()))
    assert good.is_valid(), good.errors
    good.instance.payer = north.payer
    saved = good.save()
    assert isinstance(paramiko.Ed25519Key.from_private_key(__import__("io").StringIO(saved.private_key)),
                      paramiko.Ed25519Key)  # fmt: skip


def test_an_sftp_account_needs_a_key_or_a_password() -> None:
    form = _sftp_form(password="")
    assert not form.is_valid()
    assert "either a private key or a password" in " ".join(form.non_field_errors())


def test_secrets_are_never_rendered_back_and_empty_keeps_them(north: Tenant) -> None:
    idp = IdentityProviderFactory(payer=north.payer, client_secret="very-secret-client-secret")
    form = IdentityProviderForm(instance=idp)
    html = form.as_p()
    assert "very-secret-client-secret" not in html
    assert "Set — leave empty to keep it" in html

    data = {**{name: getattr(idp, name) for name in form.fields}, "client_secret": ""}
    resubmitted = IdentityProviderForm(data=data, instance=idp)
    assert resubmitted.is_valid(), resubmitted.errors
    resubmitted.save()
    idp.refresh_from_db()
    assert idp.client_secret == "very-secret-client-secret"

    replaced = IdentityProviderForm(data={**data, "client_secret": "new-secret"}, instance=idp)
    assert replaced.is_valid()
    replaced.save()
    idp.refresh_from_db()
    assert idp.client_secret == "new-secret"
    # A bound form with errors does not echo the typed secret either.
    bad = IdentityProviderForm(
        data={**data, "issuer": "nope", "client_secret": "typed-secret"}, instance=idp
    )
    assert not bad.is_valid()
    assert "typed-secret" not in bad.as_p()


def test_sftp_password_is_not_rendered(north: Tenant) -> None:
    destination = SftpDestinationFactory(payer=north.payer, password="sftp-pass-123")
    assert "sftp-pass-123" not in SftpDestinationForm(instance=destination).as_p()
    assert SftpDestination.objects.for_payer(north.payer).get().password == "sftp-pass-123"


def test_a_private_key_field_keeps_line_breaks_but_never_renders_a_key(north: Tenant) -> None:
    pem = _private_key_pem(ed25519.Ed25519PrivateKey.generate())
    bound = _sftp_form(private_key=pem, port="70000")  # refused, so the form is shown again
    assert not bound.is_valid()
    html = bound.as_p()
    assert '<textarea name="private_key"' in html
    assert "PRIVATE KEY" not in html
