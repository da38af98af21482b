"""Durations as an administrator reads them: "11 seconds", "2 days 3 hours"."""

from datetime import timedelta

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration_text(duration: timedelta | None, *, parts: int = 2) -> str:
    """Return ``duration`` in its two largest units, rounded down ("—" for none).

    Two units are precise enough for a service-level figure and short enough to scan in
    a table; a value under a second reads "under a second" rather than "0 seconds".
    """
    if duration is None:
        return "—"
    remaining = int(duration.total_seconds())
    if remaining < 1:
        return "under a second"
    words: list[str] = []
    for name, seconds in _UNITS:
        count, remaining = divmod(remaining, seconds)
        if count:
            words.append(f"{count} {name}{'' if count == 1 else 's'}")
        elif words:
            break  # "2 days 0 hours 5 minutes" reads better as "2 days".
        if len(words) == parts:
            break
    return " ".join(words)
