"""Limits that keep one misbehaving client from starving the others (issue 4, "Limits").

Per source address: simultaneous connections, and failed sign-ins within a window
(past the limit the address is refused until old failures age out). Per payer:
simultaneous signed-in sessions. One server process owns one ``RepositoryLimits``;
every method runs on its event loop, so plain counters suffice.
"""

import time
from collections import Counter, defaultdict, deque

AUTH_FAILURE_WINDOW_SECONDS = 600.0


class RepositoryLimits:
    def __init__(
        self, *, max_connections_per_address: int, max_auth_failures_per_address: int,
        max_sessions_per_payer: int,
    ) -> None:  # fmt: skip
        self.max_connections_per_address = max_connections_per_address
        self.max_auth_failures_per_address = max_auth_failures_per_address
        self.max_sessions_per_payer = max_sessions_per_payer
        self._connections: Counter[str] = Counter()
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._sessions: Counter[int] = Counter()

    def connection_opened(self, address: str) -> str | None:
        """Count a new connection from ``address``; return why it must be refused, if it must."""
        self._connections[address] += 1
        if self._connections[address] > self.max_connections_per_address:
            return (
                f"too many connections from {address} "
                f"(at most {self.max_connections_per_address} at a time)"
            )
        if self.sign_in_blocked(address):
            return f"too many failed sign-ins from {address}; try again later"
        return None

    def connection_closed(self, address: str) -> None:
        self._connections[address] -= 1
        if self._connections[address] <= 0:
            del self._connections[address]

    def sign_in_failed(self, address: str) -> None:
        self._failures[address].append(time.monotonic())

    def sign_in_blocked(self, address: str) -> bool:
        """Return whether ``address`` has used up its failed sign-ins for the current window."""
        failures = self._failures.get(address)
        if not failures:
            return False
        horizon = time.monotonic() - AUTH_FAILURE_WINDOW_SECONDS
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return False
        return len(failures) >= self.max_auth_failures_per_address

    def session_opened(self, payer_id: int) -> bool:
        """Count a signed-in session of ``payer_id``; False (and not counted) when at the limit."""
        if self._sessions[payer_id] >= self.max_sessions_per_payer:
            return False
        self._sessions[payer_id] += 1
        return True

    def session_closed(self, payer_id: int) -> None:
        self._sessions[payer_id] -= 1
        if self._sessions[payer_id] <= 0:
            del self._sessions[payer_id]
