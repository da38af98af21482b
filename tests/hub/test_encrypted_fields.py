"""Secrets are encrypted at rest and survive a key rotation."""

import io

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from hub.models import IdentityProvider, SftpDestination
from tests.conftest import Tenant
from tests.factories import IdentityProviderFactory, SftpDestinationFactory


def _raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_secret_columns_hold_ciphertext_not_the_secret(north: Tenant) -> None:
    idp = IdentityProviderFactory(payer=north.payer, client_secret="s3cret-idp-value")
    sftp = SftpDestinationFactory(payer=north.payer, password="s3cret-sftp-value")

    raw_idp = _raw("hub_identityprovider", "client_secret", idp.pk)
    raw_sftp = _raw("hub_sftpdestination", "password", sftp.pk)
    assert "s3cret" not in raw_idp and "s3cret" not in raw_sftp
    assert raw_idp.startswith("gAAAA")  # a Fernet token
    # ...and the application reads the plaintext back.
    assert (
        IdentityProvider.objects.for_payer(north.payer).get(pk=idp.pk).client_secret
        == "s3cret-idp-value"
    )
    assert (
        SftpDestination.objects.for_payer(north.payer).get(pk=sftp.pk).password
        == "s3cret-sftp-value"
    )


def test_secrets_survive_a_key_rotation(north: Tenant) -> None:
    old_keys = list(django_settings.FIELD_ENCRYPTION_KEYS)
    idp = IdentityProviderFactory(payer=north.payer, client_secret="rotate-me")
    token_under_old_key = _raw("hub_identityprovider", "client_secret", idp.pk)
    new_key = Fernet.generate_key().decode()

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, *old_keys]):
        # The new key is first; the old one still decrypts until the rotation has run.
        assert (
            IdentityProvider.objects.for_payer(north.payer).get(pk=idp.pk).client_secret
            == "rotate-me"
        )
        call_command("rotate_field_encryption", stdout=io.StringIO())
    rotated_token = _raw("hub_identityprovider", "client_secret", idp.pk)
    assert rotated_token != token_under_old_key
    assert Fernet(new_key.encode()).decrypt(rotated_token.encode()) == b"rotate-me"

    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
        # The old key is gone and the secret is still readable.
        assert (
            IdentityProvider.objects.for_payer(north.payer).get(pk=idp.pk).client_secret
            == "rotate-me"
        )

    with (
        override_settings(FIELD_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"),
    ):
        # With no key that fits, the failure names the configuration, not a cryptic token error.
        IdentityProvider.objects.for_payer(north.payer).get(pk=idp.pk)
