"""Template filters for the administrator's words (plan_admin/labels.py, durations.py)."""

from datetime import datetime, timedelta

from django import template

from plan_admin import labels
from plan_admin.durations import duration_text

register = template.Library()

register.filter("status_label", labels.status_label)
register.filter("status_tone", labels.status_tone)
register.filter("reason_label", labels.reason_label)
register.filter("removal_reason_label", labels.removal_reason_label)
register.filter("delivery_mode_label", labels.delivery_mode_label)
register.filter("match_outcome_label", labels.match_outcome_label)
register.filter("cohort_status_label", labels.cohort_status_label)
register.filter("cohort_status_tone", labels.cohort_status_tone)
register.filter("bulk_job_kind_label", labels.bulk_job_kind_label)
register.filter("bulk_job_state_label", labels.bulk_job_state_label)
register.filter("bulk_job_state_tone", labels.bulk_job_state_tone)


@register.filter
def duration(value: timedelta | None) -> str:
    return duration_text(value)


@register.filter
def duration_since(end: datetime | None, start: datetime | None) -> str:
    """Return the time from ``start`` to ``end`` in words ("—" when either is missing)."""
    return duration_text(end - start if end and start else None)
