"""Fixtures of the plan-admin portal tests: signed-in clients and portal URLs."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from hub.models import User


@pytest.fixture
def signed_in() -> Callable[[User], Client]:
    """Return a test client signed in as the given person."""

    def sign_in(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


def admin_url(name: str, slug: str = "north", **kwargs: Any) -> str:
    return reverse(f"plan_admin:{name}", kwargs={"payer_slug": slug, **kwargs})
