"""The link with which a new payer's first plan administrator sets up sign-in (issue 14 item 2).

A payer's people sign in through the payer's own identity provider, and only a plan
administrator may set that provider up: a new payer has neither. A hub operator issues a
link; whoever opens it saves and tests the identity provider, then signs in through it. A
sign-in whose role claim makes the person a plan administrator uses the link up. From then
on the link is dead, and the portal is reached only by signing in through the provider.

The link is one-time (used once, by a conditional UPDATE), expiring (FIRST_ADMIN_LINK_HOURS)
and single (issuing another replaces it); only its token's SHA-256 is stored.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from hub.audit import audit_record
from hub.models import FirstAdministratorLink, Payer, PayerStatus, Role, User


class LinkRefused(Exception):
    """The link cannot be issued or used; ``str()`` says why and what to do instead."""

    def __init__(self, message: str, *, status: int = 410) -> None:
        super().__init__(message)
        self.status = status


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def plan_administrators_count(payer: Payer) -> int:
    """Return how many active plan administrators ``payer`` has (a link is for none)."""
    return User.objects.filter(payer=payer, role=Role.PLAN_ADMIN, is_active=True).count()


def first_admin_link_outstanding(payer: Payer) -> FirstAdministratorLink | None:
    """Return ``payer``'s link that is neither used nor replaced (it may have expired)."""
    return _outstanding_links(payer).first()


def _outstanding_links(payer: Payer) -> "QuerySet[FirstAdministratorLink]":
    return FirstAdministratorLink.objects.for_payer(payer).filter(
        used_at__isnull=True, replaced_at__isnull=True
    )


def first_admin_link_issue(
    *, payer: Payer, operator: User, client_address: str | None = None
) -> tuple[FirstAdministratorLink, str]:
    """Issue a new link for ``payer`` (replacing any earlier one); return it and its token.

    The token is returned this once, for the operator to pass on; it is not kept.
    """
    if payer.status == PayerStatus.SUSPENDED:
        raise LinkRefused(
            f"{payer.name} is suspended; lift the suspension before inviting its administrator.",
            status=400,
        )
    administrators = plan_administrators_count(payer)
    if administrators:
        raise LinkRefused(
            f"{payer.name} already has {administrators} active plan administrator(s); they "
            "manage its sign-in. If none of them can sign in any more, deactivate them under "
            "Users first, then issue a link.",
            status=400,
        )
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        replaced = _outstanding_links(payer).update(replaced_at=now)
        link = FirstAdministratorLink.objects.create(
            payer=payer,
            token_digest=_digest(token),
            issued_by=operator,
            expires_at=now + timedelta(hours=settings.FIRST_ADMIN_LINK_HOURS),
        )
        audit_record(
            action="payer.first_admin_link_issued",
            obj=link,
            payer=payer,
            actor=operator,
            changes={"expires_at": link.expires_at.isoformat(), "replaced_links": replaced},
            client_address=client_address,
        )
    return link, token


def first_admin_link_open(*, payer: Payer, token: str) -> FirstAdministratorLink:
    """Return the live link of ``payer`` with ``token``; raise LinkRefused saying why not."""
    link = (
        FirstAdministratorLink.objects.for_payer(payer).filter(token_digest=_digest(token)).first()
    )
    sign_in = f"/p/{payer.slug}/sign-in/"
    if link is None:
        raise LinkRefused(
            "This link is not a valid invitation of the hub. Check that it was copied whole, "
            "or ask the hub team for a new one.",
            status=404,
        )
    if link.used_at is not None:
        raise LinkRefused(
            f"This link was used on {link.used_at:%Y-%m-%d at %H:%M} UTC to set up {payer.name}'s "
            f"first plan administrator, and works only once. Sign in at {sign_in} through "
            f"{payer.name}'s identity provider."
        )
    if link.replaced_at is not None:
        raise LinkRefused(
            "A newer link replaced this one. Use the latest link the hub team sent, or ask "
            "them for a new one."
        )
    if link.expires_at <= timezone.now():
        raise LinkRefused(
            f"This link expired on {link.expires_at:%Y-%m-%d at %H:%M} UTC. Ask the hub team "
            "for a new one."
        )
    if payer.status == PayerStatus.SUSPENDED:
        raise LinkRefused(
            f"{payer.name} is suspended; the hub team will tell you when it is lifted."
        )
    return link


def first_admin_link_redeem(
    *, link: FirstAdministratorLink, administrator: User, client_address: str | None = None
) -> None:
    """Use ``link`` up for ``administrator``, who just signed in as its payer's plan
    administrator; raise LinkRefused if another sign-in used it, or it died, meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        used = (
            FirstAdministratorLink.objects.for_payer(link.payer)
            .filter(pk=link.pk, used_at__isnull=True, replaced_at__isnull=True, expires_at__gt=now)
            .update(used_at=now, used_by=administrator)
        )
        if not used:
            raise LinkRefused("This link was used or replaced a moment ago; it works only once.")
        audit_record(
            action="payer.first_admin_signed_in",
            obj=link,
            payer=link.payer,
            actor=administrator,
            client_address=client_address,
        )
