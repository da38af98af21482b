"""The hub operator Olga: staff of the hub, of no payer, with her authenticator app."""

from typing import Any

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP

from hub.models import OperatorAuthenticator, User
from hub.operator_accounts import operator_authenticator_issue
from tests.factories import UserFactory


@pytest.fixture
def olga(db: None) -> User:
    operator = UserFactory(
        username="olga-operator", payer=None, role="", is_staff=True, oidc_subject=""
    )
    operator_authenticator_issue(operator=operator)
    return operator


def code_now(operator: User) -> str:
    """Return the code Olga's authenticator app shows at this moment."""
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


@pytest.fixture
def console(olga: User) -> Client:
    return signed_in(olga)
