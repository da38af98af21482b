"""Issue and look up access tokens, refresh tokens and used assertion ids, in memory."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace

CONTEXT_SYSTEM = "system"
CONTEXT_PATIENT = "patient"
CONTEXT_OIDC = "oidc"


@dataclass(frozen=True)
class Grant:
    """What one token lets its bearer do."""

    client_id: str
    context: str
    scopes: tuple[str, ...]
    expires_at: float
    patient_id: str | None = None
    username: str | None = None

    @property
    def scope_text(self) -> str:
        """Return the scopes as the OAuth scope string."""
        return " ".join(self.scopes)


class TokenStore:
    """Opaque bearer tokens with expiry; refresh tokens rotate on every use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._assertion_ids: dict[tuple[str, str], float] = {}

    def issue(self, grant: Grant) -> str:
        """Store grant under a new access token and return the token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._purge()
            self._access[token] = grant
        return token

    def lookup(self, token: str) -> Grant | None:
        """Return the live grant of an access token."""
        with self._lock:
            grant = self._access.get(token)
        if grant is None or grant.expires_at <= time.time():
            return None
        return grant

    def issue_refresh(self, grant: Grant) -> str:
        """Store grant (without expiry) under a new refresh token and return it."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[token] = replace(grant, expires_at=float("inf"))
        return token

    def redeem_refresh(self, token: str, client_id: str) -> Grant | None:
        """Consume a refresh token issued to client_id and return its grant."""
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None or grant.client_id != client_id:
                return None
            del self._refresh[token]
            return grant

    def first_use_of_assertion(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record an assertion's jti; return False if it was seen before (a replay)."""
        with self._lock:
            self._purge()
            if (issuer, jti) in self._assertion_ids:
                return False
            self._assertion_ids[(issuer, jti)] = expires_at
            return True

    def _purge(self) -> None:
        now = time.time()
        for key in [k for k, g in self._access.items() if g.expires_at <= now]:
            del self._access[key]
        for jkey in [k for k, exp in self._assertion_ids.items() if exp <= now]:
            del self._assertion_ids[jkey]
