"""Template filters of the member pages: a request's status in words, the menu's sections."""

from django import template

from members import request_steps

register = template.Library()

# The member menu's section of each page (templates/members/layout.html marks it current).
_SECTIONS = {
    "home": "requests",
    "request-list": "requests",
    "request-detail": "requests",
    "directory": "ask",
    "request-new": "ask",
    "invite-plan": "invite",
}


@register.filter
def status_words(status: str) -> str:
    return request_steps.status_words(status)


@register.filter
def status_tag_class(status: str) -> str:
    return request_steps.status_tag_class(status)


@register.filter
def member_section(url_name: str | None) -> str:
    return _SECTIONS.get(url_name or "", "")
