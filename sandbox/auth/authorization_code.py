"""Authorization codes with PKCE (RFC 7636, S256 only) for member sign-in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

CODE_LIFETIME_S = 60


@dataclass(frozen=True)
class CodeGrant:
    """What an authorization code will be exchanged for."""

    realm: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    username: str
    code_challenge: str | None
    nonce: str | None
    expires_at: float


def s256(verifier: str) -> str:
    """Return the PKCE S256 challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class CodeStore:
    """Single-use authorization codes that live one minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, CodeGrant] = {}

    def issue(self, grant: CodeGrant) -> str:
        """Store grant under a new code and return the code."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = grant
        return code

    def redeem(self, code: str) -> CodeGrant | None:
        """Consume a code and return its grant if it has not expired."""
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None or grant.expires_at <= time.time():
            return None
        return grant


def new_code_grant(
    *,
    realm: str,
    client_id: str,
    redirect_uri: str,
    scopes: tuple[str, ...],
    username: str,
    code_challenge: str | None,
    nonce: str | None,
) -> CodeGrant:
    """Return a CodeGrant that expires CODE_LIFETIME_S from now."""
    return CodeGrant(
        realm=realm,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        username=username,
        code_challenge=code_challenge,
        nonce=nonce,
        expires_at=time.time() + CODE_LIFETIME_S,
    )


def verifier_matches(challenge: str | None, verifier: str | None) -> bool:
    """Return whether verifier answers challenge (both absent counts as a match)."""
    if challenge is None:
        return verifier is None
    if not verifier:
        return False
    return hmac.compare_digest(s256(verifier), challenge)
