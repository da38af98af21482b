"""How often a requesting payer's members may be looked for at one former payer.

HRex §mm asks the holder of ``$member-match`` to resist brute-force guessing: the same
demographics with many card numbers. The hub, as requester, must not become the guesser's
tool: a member opening request after request with different card numbers makes a
``$member-match`` each time. Two counts, kept with hub/rate_limits.py and checked before a
request is opened (in the member portal and by the payer-system API), so a refused attempt
sends nothing to the former payer:

- requests one member opens to one former payer (``MEMBER_MATCH_REQUESTS_PER_MEMBER`` per
  ``MEMBER_MATCH_MEMBER_WINDOW_HOURS``): each opened request counts, whatever its outcome;
- failed matches (``no_match``) of all the requesting payer's members at one former payer in
  an hour (``MEMBER_MATCH_NO_MATCHES_PER_PAYER_HOUR``): counted by the engine, the signal
  guessing leaves; matches do not count, so a payer's ordinary enrolment volume is never held.

Cohorts (PDex bulk ``$bulk-member-match``) are left out: rosters are the payer's own
enrolment records sent by its system, never typed by a member, and already paced per holder
(``BULK_JOBS_AT_ONCE_PER_HOLDER``).
"""

from datetime import datetime

from django.conf import settings

from hub.models import Payer, User
from hub.rate_limits import Allowance, rate_limit_read, rate_limit_spend

_BY_MEMBER = "exchange.member-match.requests-by-member"
_NO_MATCHES_BY_PAYER = "exchange.member-match.no-matches-by-payer"


class MemberMatchLimited(ValueError):
    """Too many attempts to find a member at a former payer; the message says when to retry."""

    def __init__(self, message: str, *, former_payer: Payer, allowance: Allowance) -> None:
        super().__init__(message)
        self.former_payer = former_payer
        self.allowance = allowance
        # Where the caller's input names the former payer (``previous_payers[0]``), if known.
        self.field = ""

    @property
    def retry_after_seconds(self) -> int:
        return self.allowance.retry_after_seconds


# Keys carry each row's creation time besides its id: ids come round again when a database
# is restored or recreated, and the counters (in Redis) outlive it.
def _row_key(pk: int, created: datetime) -> str:
    return f"{pk}@{created.timestamp()}"


def _member_key(*, member: User, former_payer: Payer) -> str:
    return (
        f"{_row_key(member.pk, member.date_joined)}"
        f"/{_row_key(former_payer.pk, former_payer.created_at)}"
    )


def _payer_key(*, new_payer: Payer, former_payer: Payer) -> str:
    return (
        f"{_row_key(new_payer.pk, new_payer.created_at)}"
        f"/{_row_key(former_payer.pk, former_payer.created_at)}"
    )


def _member_limit() -> tuple[int, int]:
    return (
        settings.MEMBER_MATCH_REQUESTS_PER_MEMBER,
        settings.MEMBER_MATCH_MEMBER_WINDOW_HOURS * 3600,
    )


def member_match_attempts_check(
    *, new_payer: Payer, member: User, former_payers: list[Payer], for_member: bool
) -> None:
    """Raise MemberMatchLimited if ``member`` may not be looked for at any of ``former_payers``
    now. ``for_member``: the message speaks to the member (portal), else to the payer system."""
    limit, window = _member_limit()
    for former_payer in former_payers:
        mine = rate_limit_read(
            group=_BY_MEMBER,
            key=_member_key(member=member, former_payer=former_payer),
            limit=limit,
            window_seconds=window,
        )
        if mine.exhausted:
            hours = settings.MEMBER_MATCH_MEMBER_WINDOW_HOURS
            message = (
                f"You have asked {former_payer.name} for your records {mine.used} times in the "
                f"last {hours} hours. To keep anyone from guessing member ids, you can ask "
                f"again {mine.when_sentence()}. If your request did not find you, check the "
                f"member id on your old card, or call {former_payer.name}."
                if for_member
                else f"The member has been looked for at {former_payer.name} {mine.used} times "
                f"within {hours} hours, the most the hub allows (HRex asks that member matching "
                f"resist guessing); send the opt-in again {mine.when_sentence()}."
            )
            raise MemberMatchLimited(message, former_payer=former_payer, allowance=mine)
        payers = rate_limit_read(
            group=_NO_MATCHES_BY_PAYER,
            key=_payer_key(new_payer=new_payer, former_payer=former_payer),
            limit=settings.MEMBER_MATCH_NO_MATCHES_PER_PAYER_HOUR,
            window_seconds=3600,
        )
        if payers.exhausted:
            message = (
                f"{former_payer.name} could not find {new_payer.name} members too many times "
                f"in the last hour, so the hub is pausing new requests there. You can ask "
                f"again {payers.when_sentence()}."
                if for_member
                else f"{payers.used} requests of {new_payer.name} found no member at "
                f"{former_payer.name} within the last hour, the most the hub allows (HRex asks "
                f"that member matching resist guessing); send the opt-in again "
                f"{payers.when_sentence()}."
            )
            raise MemberMatchLimited(message, former_payer=former_payer, allowance=payers)


def member_match_attempts_spend(*, member: User, former_payers: list[Payer]) -> None:
    """Count one opened request of ``member`` at each of ``former_payers``."""
    limit, window = _member_limit()
    for former_payer in former_payers:
        rate_limit_spend(
            group=_BY_MEMBER,
            key=_member_key(member=member, former_payer=former_payer),
            limit=limit,
            window_seconds=window,
        )


def member_match_no_match_record(*, new_payer: Payer, former_payer: Payer) -> None:
    """Count one request of ``new_payer`` that ``former_payer`` found no member for."""
    rate_limit_spend(
        group=_NO_MATCHES_BY_PAYER,
        key=_payer_key(new_payer=new_payer, former_payer=former_payer),
        limit=settings.MEMBER_MATCH_NO_MATCHES_PER_PAYER_HOUR,
        window_seconds=3600,
    )
