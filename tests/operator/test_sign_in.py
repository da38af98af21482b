"""Operators sign in with a password and their authenticator's code; nothing else opens the
console: no second factor, a locked-out name or address, a member's or administrator's
session, an idle session (issue 14 item 3)."""

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.test import Client

from hub.models import AuditEvent, OperatorAuthenticator, User
from tests.conftest import Tenant
from tests.factories import UserFactory
from tests.support.every_payer import rows_of_every_payer
from tests.support.sessions import operator_code_now, signed_in

SIGN_IN = "/operator/login/"
PASSWORD = "a long operator passphrase 7"


@pytest.fixture
def operator(olga: User) -> User:
    olga.set_password(PASSWORD)
    olga.save()
    return olga


def _post(client: Client, username: str, password: str, code: str) -> HttpResponse:
    return client.post(
        SIGN_IN,
        {"username": username, "password": password, "otp_token": code, "next": "/operator/"},
    )


def _sign_in(client: Client, username: str, password: str, code: str) -> str:
    response = _post(client, username, password, code)
    return response.content.decode() if response.status_code != 302 else "redirected"


def test_the_password_and_the_current_code_open_the_console_for_a_short_session(
    operator: User,
) -> None:
    client = Client()
    code = operator_code_now(operator)
    assert _sign_in(client, operator.username, PASSWORD, code) == "redirected"

    assert client.get("/operator/").status_code == 200
    # Each console page starts a 15-minute idle clock (OPERATOR_SESSION_IDLE_MINUTES).
    assert 14 * 60 < client.session.get_expiry_age() <= 15 * 60
    # A code is good once (RFC 6238 §5.2): signed out, the same code is refused (the very
    # same: a code asked for anew may belong to the next 30-second step, and be good).
    client.post("/operator/logout/")
    page = _sign_in(client, operator.username, PASSWORD, code)
    assert "is not the one your authenticator app shows now" in page


def test_a_password_alone_or_a_wrong_code_does_not_open_it(operator: User) -> None:
    client = Client()

    page = _sign_in(client, operator.username, PASSWORD, "")
    assert "Enter the 6-digit code your authenticator app shows" in page
    page = _sign_in(client, operator.username, PASSWORD, "000000")
    assert "is not the one your authenticator app shows now" in page
    assert client.get("/operator/").status_code == 302


def test_an_operator_without_an_authenticator_cannot_enter(operator: User) -> None:
    OperatorAuthenticator.objects.filter(user=operator).delete()
    client = Client()

    page = _sign_in(client, operator.username, PASSWORD, "123456")

    assert "has no authenticator app yet, so it cannot enter the console" in page
    assert client.get("/operator/").status_code == 302
    # A session signed in some other way, without the second factor, is not enough either.
    assert signed_in(operator).get("/operator/").status_code == 302


def test_repeated_failures_lock_the_name_and_the_address_and_say_when_to_try_again(
    operator: User,
) -> None:
    client = Client()
    for _ in range(4):
        assert "Please enter the correct username" in _sign_in(
            client, operator.username, "wrong", "123456"
        )
    # The fifth failure locks (OPERATOR_LOCKOUT_FAILURES); then even the right ones wait.
    assert _post(client, operator.username, "wrong", "123456").status_code == 429

    locked = _post(client, operator.username, PASSWORD, operator_code_now(operator))

    assert locked.status_code == 429
    assert locked["Retry-After"] == str(15 * 60)
    assert "Try again in 15 minutes" in locked.content.decode()
    assert client.get("/operator/").status_code == 302
    # The same address trying another name is locked too; another address with the right
    # password and code is not held back by the guesser.
    other = UserFactory(username="oscar-operator", payer=None, role="", is_staff=True)
    assert _post(client, other.username, "x", "1").status_code == 429
    elsewhere = Client(REMOTE_ADDR="192.0.2.7")
    assert "Please enter the correct username" in _sign_in(elsewhere, other.username, "x", "1")


def test_a_wrong_code_counts_towards_the_lockout(operator: User) -> None:
    client = Client()
    for _ in range(4):
        page = _sign_in(client, operator.username, PASSWORD, "000000")
        # django-otp also makes each next try wait longer (1 s, 2 s, 4 s...), and says so.
        assert "is not the one" in page or "Too many wrong codes in a row" in page

    assert _post(client, operator.username, PASSWORD, "000000").status_code == 429
    assert (
        _post(client, operator.username, PASSWORD, operator_code_now(operator)).status_code == 429
    )


def test_a_health_plans_session_is_told_the_console_is_for_the_hubs_staff(
    north: Tenant,
) -> None:
    for person in (north.admin, north.member):
        client = signed_in(person)
        assert client.get("/operator/")["Location"].startswith(SIGN_IN)
        page = client.get(SIGN_IN).content.decode()
        assert "only for the hub's own staff" in page
    # Django's password pages are not a second way in without the code.
    assert Client().get("/accounts/login/").status_code == 404


def test_the_command_makes_an_operator_whose_printed_key_signs_in(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    out = io.StringIO()

    call_command("operator_account", "omar", "--password-stdin", stdout=out)

    printed = out.getvalue()
    uri = re.search(r"otpauth://totp/\S+", printed)
    assert uri is not None and "issuer=Payer-to-payer%20hub" in uri.group()
    omar = User.objects.get(username="omar")
    assert omar.is_staff and omar.payer_id is None and not omar.is_superuser
    assert _sign_in(Client(), "omar", PASSWORD, operator_code_now(omar)) == "redirected"
    assert (
        rows_of_every_payer(AuditEvent)
        .filter(action__in=["operator.account_created", "operator.authenticator_issued"])
        .count()
        == 2
    )
    # A new authenticator replaces the old one: a lost phone's codes stop working.
    old_key = OperatorAuthenticator.objects.get(user=omar).key
    call_command("operator_account", "omar", "--new-authenticator", stdout=io.StringIO())
    assert OperatorAuthenticator.objects.get(user=omar).key != old_key


def test_the_command_refuses_a_health_plans_account_and_a_weak_password(
    north: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    with pytest.raises(CommandError, match="not an operator; choose another username"):
        call_command("operator_account", north.admin.username, "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("password\n"))
    with pytest.raises(CommandError, match="too common"):
        call_command("operator_account", "weak", "--password-stdin")
    assert not User.objects.filter(username="weak").exists()
