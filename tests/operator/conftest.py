"""The hub operator Olga: staff of the hub, of no payer."""

from typing import Any

import pytest
from django.test import Client

from hub.models import User
from tests.factories import UserFactory


@pytest.fixture
def olga(db: None) -> User:
    return UserFactory(
        username="olga-operator", payer=None, role="", is_staff=True, oidc_subject=""
    )


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def console(olga: User) -> Client:
    return signed_in(olga)
