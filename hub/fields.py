"""Model fields whose values are encrypted at rest with ``FIELD_ENCRYPTION_KEYS``.

Fernet (AES-128-CBC + HMAC-SHA256) through MultiFernet: the first key encrypts,
every listed key decrypts, so a key is rotated by putting a new one first and
running ``manage.py rotate_field_encryption`` before the old one is dropped.
"""

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def field_fernet() -> MultiFernet:
    """Return the MultiFernet of the configured keys (first one encrypts)."""
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_text(plaintext: str) -> str:
    """Return the Fernet token of ``plaintext`` under the primary key."""
    return field_fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_text(token: str) -> str:
    """Return the plaintext of a stored token, or fail naming the configuration at fault."""
    try:
        return field_fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise ImproperlyConfigured(
            "a stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS "
            "(was a key removed before `manage.py rotate_field_encryption` ran?)"
        ) from None


class EncryptedTextField(models.TextField):
    """A text value stored as a Fernet token; empty stays empty (meaning "not set")."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return decrypt_text(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt_text(str(value))
