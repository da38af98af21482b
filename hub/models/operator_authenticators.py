"""An operator's authenticator app: a TOTP device (RFC 6238) whose secret is encrypted at rest.

django-otp's own TOTPDevice keeps its secret in a plain column; every other secret of the
hub is encrypted with FIELD_ENCRYPTION_KEYS and re-encrypted by ``rotate_field_encryption``,
so this device is django-otp's documented extension point (a Device subclass) with an
encrypted key, checked by django-otp's own TOTP arithmetic.
"""

import time

from django.conf import settings
from django.db import models
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP
from django_otp.util import random_hex

from hub.fields import EncryptedTextField
from hub.models.tenancy import User


class OperatorAuthenticator(TimestampMixin, ThrottlingMixin, Device):
    """The one authenticator of a hub operator: 6 digits every 30 s, one step of clock skew."""

    STEP_SECONDS = 30
    DIGITS = 6
    TOLERANCE_STEPS = 1

    user: "models.ForeignKey[User, User]" = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    key = EncryptedTextField(default=random_hex, help_text="The hex secret (20 bytes).")
    drift: "models.SmallIntegerField[int, int]" = models.SmallIntegerField(default=0)
    # The time step of the last code accepted: a code is good once (RFC 6238 §5.2).
    last_t: "models.BigIntegerField[int, int]" = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = "operator authenticator"

    @property
    def bin_key(self) -> bytes:
        return bytes.fromhex(self.key)

    def verify_token(self, token: object) -> bool:
        """Return whether ``token`` is this step's code (or a neighbour's); throttle failures."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        verified = False
        if isinstance(token, str | int) and str(token).strip().isdigit():
            totp = TOTP(self.bin_key, self.STEP_SECONDS, 0, self.DIGITS, self.drift)
            totp.time = time.time()
            verified = totp.verify(int(str(token).strip()), self.TOLERANCE_STEPS, self.last_t + 1)
            if verified:
                self.last_t = totp.t()
                self.drift = totp.drift
                self.throttle_reset(commit=False)
                self.set_last_used_timestamp(commit=False)
                self.save()
        if not verified:
            self.throttle_increment(commit=True)
        return verified

    def get_throttle_factor(self) -> int:
        # Each failure doubles the wait before the next try (django-otp's ThrottlingMixin).
        return int(getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1))
