"""OAuth 2.0 errors of the token endpoint (RFC 6749 §5.2): they leave as `{"error", "error_description"}`
JSON, the form SMART clients parse, not as the API's problem documents."""

from __future__ import annotations


class OAuthError(Exception):
    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, status=401)
