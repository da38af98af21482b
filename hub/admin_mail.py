"""Mail a payer's plan administrators: the one way the hub writes to them (deadline alerts,
the compatibility radar's changes)."""

from django.conf import settings
from django.core.mail import send_mass_mail

from hub.models import Payer, Role, User


def plan_admins_mail(*, payer: Payer, subject: str, body: str) -> int:
    """Send one message to each of ``payer``'s active plan administrators with an address;
    return how many were sent. Callers pass no PHI: ids, states, dates, sentences only."""
    recipients = list(
        User.objects.filter(payer=payer, role=Role.PLAN_ADMIN, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return 0
    return send_mass_mail(
        [(subject, body, settings.DEFAULT_FROM_EMAIL, [email]) for email in recipients]
    )


def operators_mail(*, subject: str, body: str) -> int:
    """Send one message to each active hub operator (staff of no payer) with an address."""
    recipients = list(
        User.objects.filter(is_staff=True, is_active=True, payer__isnull=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return 0
    return send_mass_mail(
        [(subject, body, settings.DEFAULT_FROM_EMAIL, [email]) for email in recipients]
    )
