"""Build the identity claims of the sandbox's accounts: members and the plan administrator."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sandbox.data.population import ADMIN_USERNAME, Member
from sandbox.runtime import Sandbox

ID_TOKEN_LIFETIME_S = 3600
ROLE_MEMBER = "member"
ROLE_PLAN_ADMIN = "plan_admin"


@dataclass(frozen=True)
class Account:
    """Someone who can sign in at this sandbox."""

    username: str
    member: Member | None

    @property
    def subject(self) -> str:
        """Return the stable OpenID Connect subject."""
        return self.member.patient_id if self.member else f"admin-{self.username}"


def find_account(sandbox: Sandbox, username: str) -> Account | None:
    """Return the account signing in as username."""
    name = username.strip().lower()
    if name == ADMIN_USERNAME:
        return Account(username=name, member=None)
    member = sandbox.population.by_username(name)
    return Account(username=member.username, member=member) if member else None


def identity_claims(sandbox: Sandbox, account: Account) -> dict[str, Any]:
    """Return the userinfo claims the hub maps (sub, member_id, names, birthdate, hub_role)."""
    claims: dict[str, Any] = {
        "sub": account.subject,
        "preferred_username": account.username,
        "payer_name": sandbox.identity.name,
    }
    member = account.member
    if member is None:
        return claims | {
            "given_name": "Plan",
            "family_name": "Administrator",
            "name": f"{sandbox.identity.name} Plan Administrator",
            "hub_role": ROLE_PLAN_ADMIN,
        }
    person = member.person
    return claims | {
        "given_name": person.given[0],
        "family_name": person.family,
        "name": f"{' '.join(person.given)} {person.family}",
        "birthdate": person.birth_date.isoformat(),
        "gender": person.gender,
        "member_id": member.member_number,
        "hub_role": ROLE_MEMBER,
        "fhirUser": f"{sandbox.config.fhir_base}/Patient/{member.patient_id}",
    }


def id_token(sandbox: Sandbox, account: Account, *, client_id: str, nonce: str | None) -> str:
    """Return a signed RS256 id_token for account, addressed to client_id."""
    now = int(time.time())
    claims = identity_claims(sandbox, account) | {
        "iss": sandbox.config.issuer,
        "aud": client_id,
        "iat": now,
        "auth_time": now,
        "exp": now + ID_TOKEN_LIFETIME_S,
    }
    if nonce:
        claims["nonce"] = nonce
    return sandbox.signing_key.sign(claims)
