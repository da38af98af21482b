"""Days written as ISO 8601 calendar dates, YYYY-MM-DD, by others: a roster's cells, an
identity provider's ``birthdate`` claim (OpenID Connect Core §5.1)."""

import re
from datetime import date

# Python's date.fromisoformat also reads 20260401 and 2026-W14-3; the formats the hub
# documents, and OIDC's birthdate, are YYYY-MM-DD only.
_CALENDAR_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def iso_day(value: object) -> date | None:
    """Return ``value`` as a date if it is text written YYYY-MM-DD naming a real day, else None."""
    if not isinstance(value, str) or not _CALENDAR_DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:  # 2026-02-30, or the year 0000
        return None
