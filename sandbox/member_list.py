"""Publish who can sign in here, so demos and tests can act as members (/sandbox/members.json)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, JsonResponse

from sandbox.data.population import (
    ADMIN_USERNAME,
    DEMO_PASSWORD,
    ROLE_FORMER,
    ROLE_NEW,
    ROLE_NONE,
    Member,
    coverage_period,
)
from sandbox.runtime import Sandbox, current


def _overlap(member: Member, peer_role: str) -> bool:
    """Return whether a peer in peer_role covered the member's person while this payer did."""
    if peer_role == ROLE_NONE:
        return False
    start, end = coverage_period(member.person, peer_role)
    mine_end = member.coverage_end or dt.date.max
    return start <= mine_end and member.coverage_start <= (end or dt.date.max)


def _entry(sandbox: Sandbox, member: Member) -> dict[str, Any]:
    person = member.person
    peers = sandbox.population.peer_roles(member, sandbox.config.peers)
    came_from = [p for p, role in peers.items() if member.role == ROLE_NEW and role == ROLE_FORMER]
    moved_to = [p for p, role in peers.items() if member.role == ROLE_FORMER and role == ROLE_NEW]
    concurrent = [p for p, role in peers.items() if _overlap(member, role)]
    return {
        "username": member.username,
        "password": DEMO_PASSWORD,
        "patient_id": member.patient_id,
        "member_id": member.member_number,
        "card_number": member.card_number,
        "given": list(person.given),
        "family": person.family,
        "birth_date": person.birth_date.isoformat(),
        "gender": person.gender,
        "person": person.key,
        "role": member.role,
        "coverage_start": member.coverage_start.isoformat(),
        "coverage_end": member.coverage_end.isoformat() if member.coverage_end else None,
        "came_from": came_from,
        "moved_to": moved_to,
        "concurrent_with": concurrent,
        "note": member.note,
    }


def members_json(request: HttpRequest) -> JsonResponse:
    """Return the payer, its accounts and every member's sign-in and card details."""
    sandbox = current()
    identity, config = sandbox.identity, sandbox.config
    members = sandbox.population.members
    return JsonResponse(
        {
            "payer": {
                "name": identity.name,
                "identifiers": identity.identifiers(),
                "member_identifier_system": identity.member_system,
                "card_identifier_system": identity.card_system,
                "fhir_base": config.fhir_base,
                "issuer": config.issuer,
                "seed": config.seed,
                "as_of": config.as_of.isoformat(),
                "peers": list(config.peers),
            },
            "admins": [
                {"username": ADMIN_USERNAME, "password": DEMO_PASSWORD, "hub_role": "plan_admin"}
            ],
            "oidc_client": {
                "client_id": config.oidc_client_id,
                "client_secret": config.oidc_client_secret,
                "redirect_uris": list(config.redirect_uris),
            },
            "members": [_entry(sandbox, m) for m in members],
        }
    )
