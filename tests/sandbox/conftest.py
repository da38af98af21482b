"""Fixtures: sandbox payers running as subprocesses for the tests of one module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox.harness import FORMER, NEW, SEED, RunningSandbox, running_sandbox


@pytest.fixture(scope="module")
def former_payer() -> Iterator[RunningSandbox]:
    """Run the former payer: 40 members of the shared test population."""
    with running_sandbox(FORMER, "--seed", SEED, "--members", "40", "--peer", NEW) as sandbox:
        yield sandbox
