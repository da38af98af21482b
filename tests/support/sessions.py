"""Sessions of the personas: a member's or administrator's, and an operator's that has
proved her second factor (the operator console asks for it, operator_console/site.py)."""

from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP

from hub.models import OperatorAuthenticator, User


def operator_code_now(operator: User) -> str:
    """Return the code the operator's authenticator app shows at this moment."""
    device = OperatorAuthenticator.objects.get(user=operator)
    return f"{TOTP(device.bin_key, OperatorAuthenticator.STEP_SECONDS).token():06d}"


def signed_in(user: Any) -> Client:
    """Return a client signed in as ``user``; an operator's session has proved her code."""
    client = Client()
    client.force_login(user)
    device = OperatorAuthenticator.objects.filter(user=user).first()
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client
