"""Hub operators' accounts: staff of the hub, of no payer, with a password and an authenticator.

The operator console sees every payer, so it admits only a person who proves two factors:
a password and a time-based one-time code (TOTP, RFC 6238) from an authenticator app —
NIST SP 800-63B's AAL2, which privileged access to health data calls for. Accounts and
their authenticators are made out of band, by someone with shell access to the hub
(``manage.py operator_account``), never through a web page a stolen password could reach.
"""

from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from hub.audit import audit_record
from hub.models import OperatorAuthenticator, User
from hub.totp_secrets import totp_secret_base32

AUTHENTICATOR_NAME = "Authenticator app"


class OperatorAccountRefused(Exception):
    """The account cannot be made as asked; ``str()`` says why."""


def _refusal_unless_operator(user: User) -> None:
    if not (user.is_staff and user.payer_id is None):
        raise OperatorAccountRefused(
            f"{user.username!r} is the account of a member or a plan administrator of a payer, "
            "not an operator; choose another username."
        )


def operator_find(*, username: str) -> User | None:
    """Return the operator called ``username``, None if nobody is; refuse a payer's person."""
    user = User.objects.filter(username=username).first()
    if user is not None:
        _refusal_unless_operator(user)
    return user


def operator_account_save(*, username: str, password: str, email: str = "") -> User:
    """Create the operator ``username``, or set a new password on it; audit either.

    Refused for a name that belongs to a member or a plan administrator: an operator is of
    no payer, and a tenant's account never gains the console by a change of flags.
    """
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=username).first()
        if user is not None:
            _refusal_unless_operator(user)
        created = user is None
        if user is None:
            user = User(username=username, is_staff=True, payer=None, role="")
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise OperatorAccountRefused(" ".join(exc.messages)) from None
        user.set_password(password)
        if email:
            user.email = email
        user.save()
        audit_record(
            action="operator.account_created" if created else "operator.password_set",
            obj=user,
            payer=None,
            actor_label="manage.py operator_account",
        )
    return user


def authenticator_setup_uri(device: OperatorAuthenticator) -> str:
    """Return the ``otpauth://`` URI an authenticator app scans (Google's Key Uri Format)."""
    issuer = settings.OPERATOR_AUTHENTICATOR_ISSUER.replace(":", "")
    label = quote(f"{issuer}:{device.user.get_username()}")
    parameters = urlencode(
        {
            "secret": totp_secret_base32(device.bin_key),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": OperatorAuthenticator.DIGITS,
            "period": OperatorAuthenticator.STEP_SECONDS,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{parameters}"


def operator_authenticator_issue(
    *, operator: User, key_hex: str | None = None
) -> OperatorAuthenticator:
    """Give ``operator`` a new authenticator, replacing any earlier one; audit it.

    The old one stops working at once: a lost phone is dealt with by issuing a new one.
    """
    _refusal_unless_operator(operator)
    with transaction.atomic():
        OperatorAuthenticator.objects.filter(user=operator).delete()
        device = OperatorAuthenticator(user=operator, name=AUTHENTICATOR_NAME, confirmed=True)
        if key_hex is not None:
            device.key = key_hex
        device.save()
        audit_record(
            action="operator.authenticator_issued",
            obj=operator,
            payer=None,
            actor_label="manage.py operator_account",
        )
    return device
