"""Personas and guards shared by every test (STYLE.md #9).

Two payers, North and South, each with a plan administrator and a member:
"Nora at North must never see Sam's stuff at South". Network traffic beyond
loopback is refused for the whole run.
"""

import ipaddress
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from unittest import mock

import django_ratelimit.core
import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings

from hub.models import Payer, PayerStatus, Role, User
from hub.operator_accounts import operator_authenticator_issue
from tests.factories import PayerFactory, UserFactory
from tests.sandbox.harness import NEW, SEED, RunningSandbox, running_sandbox
from tests.support.sessions import signed_in
from tests.support.sshd import SftpServer, running_sshd
from tests.support.table_flush import tables_emptied_by_delete

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _refuse_beyond_loopback(address: Any) -> None:
    if isinstance(address, tuple) and address:
        try:
            ip = ipaddress.ip_address(address[0])
        except ValueError:
            raise ConnectionRefusedError(
                f"tests connect to IP literals only, not {address[0]}"
            ) from None
        if not ip.is_loopback:
            raise ConnectionRefusedError(f"tests may not leave loopback (tried {address[0]})")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _refuse_beyond_loopback(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _refuse_beyond_loopback(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _network_stays_on_loopback() -> Any:
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex


@pytest.fixture(autouse=True)
def _counters_and_copies_of_this_case() -> Iterator[None]:
    """Give each case rate-limit counters of its own and an empty Django cache.

    The counters live in Redis and outlast a case, and every request of Django's test
    client comes from 127.0.0.1: refusals counted in one case would lock the token endpoint
    in the next (hub/rate_limits.py). Key sets and discovery documents kept in the cache
    belong to the case that fetched them: the next case's stub serves other keys. (Not
    pytest-django's ``settings`` fixture: a case may name a parameter ``settings``.)

    The counters' clock stands still for the case: django-ratelimit's windows are fixed
    (each key's ends at its own second), and one ending while a case spends its allowance
    would start the count again at zero halfway through.
    """
    case_began = time.time()
    stopped_clock = SimpleNamespace(time=lambda: case_began)
    with (
        override_settings(RATELIMIT_CACHE_PREFIX=f"rate-limit:test-{uuid.uuid4().hex}:"),
        mock.patch.object(django_ratelimit.core, "time", stopped_clock),
    ):
        cache.clear()
        yield


@pytest.fixture(autouse=True, scope="session")
def _transactional_tests_end_by_delete() -> Any:
    """Empty the tables after each transactional test by DELETE, not TRUNCATE (faster)."""
    with tables_emptied_by_delete():
        yield


@dataclass
class Tenant:
    payer: Payer
    admin: User
    member: User


def _tenant(slug: str, name: str, npi: str, initial: str) -> Tenant:
    payer = PayerFactory(slug=slug, name=name, npi=npi, status=PayerStatus.PARTICIPATING)
    return Tenant(
        payer=payer,
        admin=UserFactory(username=f"{initial}-admin", payer=payer, role=Role.PLAN_ADMIN),
        member=UserFactory(username=f"{initial}-member", payer=payer, role=Role.MEMBER),
    )


@pytest.fixture
def north(db: None) -> Tenant:
    """North Star Health: administrator Nora, member Ned."""
    return _tenant("north", "North Star Health", "1234567893", "nora")


@pytest.fixture
def south(db: None) -> Tenant:
    """Southern Cross Health: administrator Sam, member Sue."""
    return _tenant("south", "Southern Cross Health", "1245319599", "sam")


@pytest.fixture
def olga(db: None) -> User:
    """Olga, a hub operator: staff of the hub, of no payer, with her authenticator app."""
    operator = UserFactory(
        username="olga-operator", payer=None, role="", is_staff=True, oidc_subject=""
    )
    operator_authenticator_issue(operator=operator)
    return operator


@pytest.fixture
def console(olga: User) -> Client:
    """Olga's session in the operator console, second factor proved."""
    return signed_in(olga)


@pytest.fixture(scope="module")
def sftp_server() -> Iterator[SftpServer]:
    """A real OpenSSH sshd with a chrooted SFTP account, on a free loopback port."""
    with running_sshd() as server:
        yield server


# Where the sandbox identity provider sends a member back: the hub's callback, as the test
# client (http://testserver) reaches it.
SIGN_IN_CALLBACK = "http://testserver/oidc/callback/"


@pytest.fixture(scope="module")
def new_payer_idp() -> Iterator[RunningSandbox]:
    """The sandbox as a new payer's OpenID Provider: where its members and administrators
    sign in."""
    with running_sandbox(
        NEW, "--seed", SEED, "--members", "20", "--redirect-uri", SIGN_IN_CALLBACK
    ) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-speaking object store (moto's server) on a free loopback port, its bucket made."""
    # Imported here: moto and boto3 load only in runs that use the object store.
    from tests.support.object_store import object_store_server

    with object_store_server() as endpoint:
        yield endpoint


@pytest.fixture
def empty_broker() -> Iterator[None]:
    """Start and end on an empty test broker: a SIGKILLed worker's task stays unacked in
    Redis until the visibility timeout, and a retry scheduled far ahead goes back to the
    queue when its worker stops; neither may reach a later case's worker."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    yield
    broker.flushdb()
    broker.close()
