"""Read a signing-in person's role at the hub from their provider's claims.

Each payer says, on its identity provider settings, which claim carries the role (a name,
or a dotted path into nested claims such as Keycloak's ``realm_access.roles``), whether it
is one text value or a list, and which values mean plan administrator and member.
Anything else is refused, with a page that says so: a role the hub does not know is never
guessed at.
"""

from typing import Any

from hub.models import IdentityProvider, Role, RoleClaimFormat

_MISSING = object()


class RoleRefused(Exception):
    """The claims give no role the hub knows; ``str()`` says why, for the administrator."""

    def __init__(self, message: str, *, advice: str) -> None:
        super().__init__(message)
        self.advice = advice


def claim_at(claims: dict[str, Any], name: str) -> Any:
    """Return the claim called ``name``, or at the dotted path ``name``; _MISSING if neither.

    A name is tried whole first: claim names may contain dots themselves, as the
    collision-resistant names of OIDC Core §5.1.2 (``https://hub.example/roles``) do.
    """
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _described(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def role_from_claims(*, identity_provider: IdentityProvider, claims: dict[str, Any]) -> Role:
    """Return the person's role according to the payer's role claim settings; raise RoleRefused."""
    name = identity_provider.claim_role
    admin_value = identity_provider.role_admin_value
    member_value = identity_provider.role_member_value
    value = claim_at(claims, name)
    if value is _MISSING:
        values: list[Any] = []
    elif identity_provider.role_claim_format == RoleClaimFormat.LIST:
        if not isinstance(value, list):
            raise RoleRefused(
                f"The role claim {name!r} is {_described(value)}, not a list of values.",
                advice='Set the role claim format to "A single text value", or have the '
                "provider send a list.",
            )
        values = value
    elif isinstance(value, str):
        values = [value]
    else:
        raise RoleRefused(
            f"The role claim {name!r} is {_described(value)}, not a text value.",
            advice='Set the role claim format to "A list of values", or name the claim (or '
            "dotted path) that holds one text value.",
        )
    if admin_value and admin_value in values:
        return Role.PLAN_ADMIN
    if not member_value or member_value in values:
        return Role.MEMBER
    found = f"is {_described(value)}" if values else "is not among the claims"
    raise RoleRefused(
        f"The role claim {name!r} {found}: neither the administrator value "
        f"{admin_value!r} nor the member value {member_value!r}.",
        advice="Give the person one of these values at the provider, or correct the role "
        "claim settings (claim name or path, format, values). Leave the member value empty "
        "to let in as a member everyone without the administrator value.",
    )
