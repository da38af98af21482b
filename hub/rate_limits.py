"""Counters of attempts in fixed windows, shared by every web process and worker.

django-ratelimit keeps the counts in the ``rate_limits`` cache (hub/settings.py): Redis in
production, so a guesser spreading requests over several web processes or workers meets one
count; the demo's single machine keeps them in memory. Callers name what they count
(``group``) and whose attempts (``key``); the answer says when the window ends, which is
what a refused caller is told (RFC 6585 §4: ``Retry-After``).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.timesince import timeuntil
from django_ratelimit.core import get_usage


@dataclass(frozen=True)
class Allowance:
    """How much of a limit is used, and when its window ends."""

    used: int
    limit: int
    retry_after_seconds: int

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    @property
    def retry_at(self) -> datetime:
        return timezone.now() + timedelta(seconds=self.retry_after_seconds)

    def when_sentence(self) -> str:
        """Return "in 2 hours, 5 minutes (at 14:32 UTC)" for people to read."""
        retry_at = self.retry_at
        return f"in {timeuntil(retry_at)} (at {retry_at:%H:%M} UTC on {retry_at:%B} {retry_at.day})"


def _usage(*, group: str, key: str, limit: int, window_seconds: int, spend: bool) -> Allowance:
    # django-ratelimit's counting takes a request only to derive the key from it; the key
    # here is already known (a client id, a member), so none is passed, and the count can
    # be read and spent from a worker as well as from a view.
    usage = get_usage(
        None,
        group=group,
        key=lambda _group, _request: key,
        rate=(limit, window_seconds),
        increment=spend,
    )
    if usage is None:  # RATELIMIT_ENABLE is off
        return Allowance(used=0, limit=limit, retry_after_seconds=0)
    return Allowance(
        used=int(usage["count"]),
        limit=limit,
        # The window ends at a whole second; a caller told "0" would come back too early.
        retry_after_seconds=max(1, int(usage["time_left"])),
    )


def rate_limit_read(*, group: str, key: str, limit: int, window_seconds: int) -> Allowance:
    """Return how much of ``limit`` ``key`` has used in the current window, spending nothing."""
    return _usage(group=group, key=key, limit=limit, window_seconds=window_seconds, spend=False)


def rate_limit_spend(*, group: str, key: str, limit: int, window_seconds: int) -> Allowance:
    """Count one attempt of ``key`` and return the allowance after it."""
    return _usage(group=group, key=key, limit=limit, window_seconds=window_seconds, spend=True)
