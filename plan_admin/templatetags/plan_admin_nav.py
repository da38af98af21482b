"""The plan-admin portal's navigation, with the current section marked."""

from dataclasses import dataclass

from django import template
from django.http import HttpRequest
from django.urls import reverse

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
                                                             "plan_admin:webhooks"}),
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
