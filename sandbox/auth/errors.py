"""The OAuth 2.0 error every authorization endpoint raises and answers as JSON."""

from __future__ import annotations


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: a code, a human description and the HTTP status."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def as_json(self) -> dict[str, str]:
        """Return the error body."""
        return {"error": self.error, "error_description": self.description}
