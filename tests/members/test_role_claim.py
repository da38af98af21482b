"""The role a person gets at the hub, read from the claim their payer configured."""

from typing import Any

import pytest

from hub.models import IdentityProvider, Role, RoleClaimFormat
from members.role_claim import RoleRefused, role_from_claims


def _role(claims: dict[str, Any], **settings: Any) -> Role:
    return role_from_claims(identity_provider=IdentityProvider(**settings), claims=claims)


@pytest.mark.parametrize(
    ("claims", "settings", "role"),
    [
        ({"hub_role": "plan_admin"}, {}, Role.PLAN_ADMIN),
        ({"hub_role": "member"}, {}, Role.MEMBER),
        ({"groups": ["a", "hub-admins"]},
         {"claim_role": "groups", "role_claim_format": RoleClaimFormat.LIST,
          "role_admin_value": "hub-admins"}, Role.PLAN_ADMIN),
        ({"realm_access": {"roles": ["member", "x"]}},
         {"claim_role": "realm_access.roles", "role_claim_format": RoleClaimFormat.LIST},
         Role.MEMBER),
        # A claim named with a URL (OIDC Core §5.1.2) is found whole, dots and all.
        ({"https://hub.example/role": "plan_admin"},
         {"claim_role": "https://hub.example/role"}, Role.PLAN_ADMIN),
        # With no member value, everyone without the administrator value is a member.
        ({}, {"role_member_value": ""}, Role.MEMBER),
        ({"hub_role": "anything"}, {"role_member_value": ""}, Role.MEMBER),
    ],
)  # fmt: skip
def test_roles_are_read_as_configured(
    claims: dict[str, Any], settings: dict[str, Any], role: Role
) -> None:
    assert _role(claims, **settings) == role


@pytest.mark.parametrize(
    ("claims", "settings", "message"),
    [
        ({"hub_role": "contractor"}, {}, "'hub_role' is 'contractor': neither"),
        ({}, {}, "'hub_role' is not among the claims"),
        ({"hub_role": ["plan_admin"]}, {}, "not a text value"),
        ({"groups": "hub-admins"},
         {"claim_role": "groups", "role_claim_format": RoleClaimFormat.LIST}, "not a list"),
        ({"realm_access": {"roles": ["offline_access"]}},
         {"claim_role": "realm_access.roles", "role_claim_format": RoleClaimFormat.LIST},
         "neither the administrator value"),
    ],
)  # fmt: skip
def test_a_role_the_hub_does_not_know_is_refused_with_the_reason(
    claims: dict[str, Any], settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(RoleRefused, match=message) as refused:
        _role(claims, **settings)
    assert refused.value.advice
