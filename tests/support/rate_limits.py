"""Counters of their own for every case (hub/rate_limits.py).

The counters live in Redis and outlast a case, and every request of Django's test client
comes from 127.0.0.1: without this, refusals counted in one case would lock the token
endpoint in the next. A conftest imports the fixture to make it apply to its cases.
"""

import uuid
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def rate_limits_of_this_case(settings: Any) -> None:
    settings.RATELIMIT_CACHE_PREFIX = f"rate-limit:test-{uuid.uuid4().hex}:"
