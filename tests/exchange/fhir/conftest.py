"""Fixtures of the FHIR client tests: the hub's one HTTP client for payers."""

from collections.abc import Iterator

import pytest

from hub.outbound import PayerHttpClient


@pytest.fixture
def http(settings: object) -> Iterator[PayerHttpClient]:
    """A PayerHttpClient under the test settings (plain HTTP to 127.0.0.1 allowed)."""
    with PayerHttpClient() as client:
        yield client
