"""Fixtures of the engine's tests: a former payer to talk to, and the hub serving its JWKS."""

from collections.abc import Iterator
from typing import Any

import pytest

from hub.signing_keys import signing_keys_ensure
from tests.conftest import Tenant
from tests.exchange.holders import hub_url
from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox


@pytest.fixture(scope="module")
def holder() -> Iterator[RunningSandbox]:
    """A sandbox payer as the former payer (data holder), one per test module."""
    with running_sandbox(FORMER, "--seed", SEED, "--members", "10", "--peer", NEW) as sandbox:
        yield sandbox


@pytest.fixture
def hub(live_server: Any, settings: Any, north: Tenant) -> Tenant:
    """North, with signing keys, its JWKS served over HTTP where holders can fetch it."""
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    signing_keys_ensure(payer=north.payer)
    return north
