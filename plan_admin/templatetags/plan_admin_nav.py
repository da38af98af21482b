"""The plan-admin portal's frame: its navigation, with the current section marked, and the
rule's clock alert on every page."""

from dataclasses import dataclass

from django import template
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from exchange.deadlines import DeadlinesOwed, deadlines_owed
from hub.models import Payer

register = template.Library()


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    current: bool


# (label, route of the section's page, routes of the pages inside that section)
_SECTIONS = (
    ("Integration settings", "plan_admin:settings", {"plan_admin:settings", "sftp_repository:keys",
                                                             "plan_admin:webhooks", "plan_admin:former-payers",
                                                             "plan_admin:former-payer"}),
    ("Directory", "plan_admin:directory", {"plan_admin:directory"}),
    ("Requests", "plan_admin:request-list", {"plan_admin:request-list", "plan_admin:request-detail"}),
    ("Cohorts", "plan_admin:cohort-list", {"plan_admin:cohort-list", "plan_admin:cohort-detail",
                                           "plan_admin:cohort-upload"}),
    ("Recurring pulls", "plan_admin:schedule-list", {"plan_admin:schedule-list"}),
    ("Compliance", "plan_admin:compliance", {"plan_admin:compliance"}),
    ("Member education", "plan_admin:member-education", {"plan_admin:member-education",
                                                         "plan_admin:member-education-publish"}),
    ("Requests to us", "plan_admin:as-former-payer", {"plan_admin:as-former-payer"}),
)  # fmt: skip


@register.simple_tag
def admin_nav(request: HttpRequest, payer: Payer) -> list[NavItem]:
    """Return the portal's sections; the one the page belongs to is current."""
    match = request.resolver_match
    here = match.view_name if match else ""
    return [
        NavItem(label, reverse(route, kwargs={"payer_slug": payer.slug}), here in pages)
        for label, route, pages in _SECTIONS
    ]


@register.inclusion_tag("plan_admin/_deadline_alert.html")
def deadline_alert(payer: Payer) -> dict[str, DeadlinesOwed | Payer | int]:
    """Tell the administrator, on every page, of requests due soon or overdue (CMS-0057-F's
    week; exchange/deadlines.py also mails and sends webhooks, once each)."""
    return {
        "payer": payer,
        "owed": deadlines_owed(payer=payer, now=timezone.now()),
        "hours": settings.EXCHANGE_DUE_SOON_HOURS,
    }
