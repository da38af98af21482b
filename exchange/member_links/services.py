"""Owe the member the email with their link, in the transaction that opens the requests.

The rows are handed to a worker only once it commits: a rolled-back opt-in mails nobody, and
a committed one is never lost, even if the broker is down then (the beat sweep of
exchange/member_links/tasks.py sends what no task took).
"""

from collections.abc import Sequence
from functools import partial

from django.db import transaction

from exchange.member_links.tasks import member_authorization_link_send
from exchange.models import ExchangeRequest, ExchangeStatus, MemberAuthorizationLink
from exchange.state_machine import Move, exchange_requests_transition
from hub.models import Payer


def member_authorization_links_create(
    *,
    payer: Payer,
    exchange_requests: Sequence[ExchangeRequest],
    email: str,
    actor_label: str,
    client_address: str | None = None,
) -> list[MemberAuthorizationLink]:
    """Have each (just consented) request wait for the member's authorization at its former
    payer, as a member's own request does (exchange/services.py), and owe the member one
    email per request linking to its page; sent once the caller's transaction commits."""
    exchange_requests_transition(
        payer=payer,
        moves=[
            Move(
                exchange_request.pk,
                f"Waiting for you to sign in at {exchange_request.former_payer.name} and allow "
                "the transfer.",
            )
            for exchange_request in exchange_requests
        ],
        from_status=ExchangeStatus.CONSENTED,
        to_status=ExchangeStatus.AWAITING_AUTHORIZATION,
        actor=None,
        actor_label=actor_label,
        client_address=client_address,
    )
    links = MemberAuthorizationLink.objects.bulk_create(
        [
            MemberAuthorizationLink(payer=payer, exchange_request=exchange_request, email=email)
            for exchange_request in exchange_requests
        ]
    )
    for link in links:
        transaction.on_commit(
            partial(member_authorization_link_send.delay, link.pk, payer.pk),
            # A broker that is down must not undo the committed opt-in: the sweep sends.
            robust=True,
        )
    return links
