"""Register OAuth clients (RFC 7591 dynamic registration, out of band, or configuration).

A payer client (grant type ``client_credentials``) acts for one organization, and HRex
consents are honoured only for the client whose organization is the consent's recipient
(IRCP actor). The client is bound to it, in this order:

1. the optional extension field ``organization_identifier`` ``{"system", "value"}`` (the
   payer's NPI or payer id) of its registration, when sent;
2. otherwise, on first use: the recipient of the first consent the client presents to
   ``$member-match`` (trust on first use). A plain RFC 7591 request therefore needs no
   field of the sandbox's own; from then on the client is that organization's only.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from sandbox.auth.errors import OAuthError

GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
AUTH_METHODS = ("private_key_jwt", "none", "client_secret_basic", "client_secret_post")
ASSERTION_ALGORITHMS = ("RS384", "ES384")


@dataclass
class Client:
    """A registered OAuth client."""

    client_id: str
    grant_types: list[str]
    token_endpoint_auth_method: str
    client_name: str = ""
    client_secret: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    scope: str | None = None
    organization_identifier: dict[str, str] | None = None
    client_id_issued_at: int = 0

    @property
    def is_public(self) -> bool:
        """Return whether the client has no credentials of its own (RFC 7591 method none)."""
        return self.token_endpoint_auth_method == "none"  # noqa: S105 - a method name

    def registration_response(self) -> dict[str, Any]:
        """Return the RFC 7591 §3.2.1 response body."""
        body = {k: v for k, v in asdict(self).items() if v not in (None, [], "")}
        if self.client_secret:
            body["client_secret_expires_at"] = 0
        return body

    def organization_matches(self, system: str | None, value: str | None) -> bool:
        """Return whether (system, value) identifies this client's organization."""
        org = self.organization_identifier
        return bool(
            org and value and org["value"] == value and (not system or org["system"] == system)
        )


def _metadata_error(description: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", description)


def _check_uri(uri: object, *, what: str) -> str:
    if not isinstance(uri, str):
        raise _metadata_error(f"{what} must be a string")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise OAuthError(
            "invalid_redirect_uri" if what == "redirect_uris" else "invalid_client_metadata",
            f"{what}: {uri!r} is not an absolute URL",
        )
    return uri


def _check_jwks(jwks: object) -> dict[str, Any]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise _metadata_error("jwks must be an object with a non-empty keys array")
    for key in jwks["keys"]:
        try:
            parsed = jwt.PyJWK(key)
        except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError) as exc:
            raise _metadata_error(f"jwks holds a key that cannot be used: {exc}") from None
        if "kid" not in key:
            raise _metadata_error("every key in jwks needs a kid (SMART Backend Services)")
        if hasattr(parsed.key, "private_numbers"):
            raise _metadata_error("jwks must hold public keys only")
    return jwks


def validate_metadata(body: object) -> dict[str, Any]:
    """Return the checked client metadata of an RFC 7591 request, or raise OAuthError."""
    if not isinstance(body, dict):
        raise _metadata_error("the registration request must be a JSON object")
    grant_types = body.get("grant_types", ["authorization_code"])
    if (
        not isinstance(grant_types, list)
        or not grant_types
        or any(g not in GRANT_TYPES for g in grant_types)
    ):
        raise _metadata_error(f"grant_types must be a list drawn from {', '.join(GRANT_TYPES)}")
    default_method = "private_key_jwt" if "client_credentials" in grant_types else "none"
    method = body.get("token_endpoint_auth_method", default_method)
    if method not in AUTH_METHODS:
        raise _metadata_error(
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}"
        )
    metadata: dict[str, Any] = {"grant_types": grant_types, "token_endpoint_auth_method": method}
    if "client_credentials" in grant_types and method != "private_key_jwt":
        raise _metadata_error("client_credentials clients authenticate with private_key_jwt")
    if method == "private_key_jwt":
        if ("jwks" in body) == ("jwks_uri" in body):
            raise _metadata_error("private_key_jwt needs exactly one of jwks and jwks_uri")
        if "jwks" in body:
            metadata["jwks"] = _check_jwks(body["jwks"])
        else:
            metadata["jwks_uri"] = _check_uri(body["jwks_uri"], what="jwks_uri")
    if "authorization_code" in grant_types:
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not uris:
            raise OAuthError(
                "invalid_redirect_uri", "authorization_code clients need redirect_uris"
            )
        metadata["redirect_uris"] = [_check_uri(u, what="redirect_uris") for u in uris]
    if "client_credentials" in grant_types and "organization_identifier" in body:
        org = body["organization_identifier"]
        if not (
            isinstance(org, dict)
            and isinstance(org.get("system"), str)
            and isinstance(org.get("value"), str)
            and org["system"]
            and org["value"]
        ):
            raise _metadata_error(
                "organization_identifier, when sent, is {system, value}: the payer the client "
                "acts for (NPI or payer id)"
            )
        metadata["organization_identifier"] = {"system": org["system"], "value": org["value"]}
    for name in ("client_name", "scope"):
        if name in body:
            if not isinstance(body[name], str):
                raise _metadata_error(f"{name} must be a string")
            metadata[name] = body[name]
    return metadata


class ClientRegistry:
    """The clients of one sandbox, kept in memory (and in data_dir when given)."""

    def __init__(self, data_dir: Path | None) -> None:
        self._path = data_dir / "clients.json" if data_dir else None
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        if self._path and self._path.exists():
            for raw in json.loads(self._path.read_text()):
                client = Client(**raw)
                self._clients[client.client_id] = client

    def register(self, metadata: dict[str, Any], *, client_id: str = "") -> Client:
        """Create a client from checked metadata (with ``client_id`` when given) and return it."""
        method = metadata["token_endpoint_auth_method"]
        client = Client(
            client_id=client_id or f"client-{secrets.token_hex(8)}",
            client_secret=secrets.token_urlsafe(24) if method.startswith("client_secret") else None,
            client_id_issued_at=int(time.time()),
            **metadata,
        )
        self.add(client)
        return client

    def add(self, client: Client) -> None:
        """Store client (registration or configuration)."""
        with self._lock:
            self._clients[client.client_id] = client
            self._save()

    def _save(self) -> None:
        if self._path:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_text(json.dumps([asdict(c) for c in self._clients.values()]))

    def organization_bind(self, client: Client, recipients: list[dict[str, str]]) -> None:
        """Bind an unbound payer client to the first recipient of its first consent."""
        if not recipients or "client_credentials" not in client.grant_types:
            return
        with self._lock:
            if client.organization_identifier is None:
                first = recipients[0]
                client.organization_identifier = {
                    "system": first.get("system", ""),
                    "value": first["value"],
                }
                self._save()

    def get(self, client_id: str | None) -> Client | None:
        """Return the client with this id."""
        if not client_id:
            return None
        with self._lock:
            return self._clients.get(client_id)
