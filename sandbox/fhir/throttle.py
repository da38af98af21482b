"""Resist brute-force $member-match guessing (HRex: servers must resist guessing).

Failed matches are counted per set of demographics (family, given, birth date,
gender), whoever asks. After ``limit`` failures within ``window_s`` seconds every
further attempt with those demographics, right card or not, is refused with 429
and a Retry-After until the window has passed. A successful match clears the count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DemographicsKey = tuple[str, ...]


class MatchThrottle:
    """Count failed matches per demographics and lock out guessers."""

    def __init__(
        self, *, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[DemographicsKey, list[float]] = {}

    def retry_after(self, key: DemographicsKey) -> float | None:
        """Return seconds until key may try again, or None if it may try now."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self._window_s]
            self._failures[key] = recent
            if len(recent) < self._limit:
                return None
            return self._window_s - (now - recent[0])

    def record_failure(self, key: DemographicsKey) -> None:
        """Count one failed match for key."""
        with self._lock:
            self._failures.setdefault(key, []).append(self._clock())

    def clear(self, key: DemographicsKey) -> None:
        """Forget the failures of key after a successful match."""
        with self._lock:
            self._failures.pop(key, None)
