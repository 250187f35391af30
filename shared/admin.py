"""Who may call the admin functions: a Google-signed ID token of an allowed admin, or a key.

People come with an ID token (`Authorization: Bearer ...`) that Google signed for our
audience; scripts come with the admin API key kept in Secret Manager (`X-API-Key`).
No credential -> 401; a valid credential without admin rights -> 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import id_token

from shared.clients import http_session, lazy
from shared.config import get_settings
from shared.errors import Forbidden, Unauthenticated
from shared.secrets import read_secret


@dataclass(frozen=True)
class Admin:
    """The caller, once authenticated: an email for people, "api-key" for scripts."""

    identity: str
    method: str


def _google_request() -> google.auth.transport.requests.Request:
    # google-auth caches Google's certificates by their Cache-Control through this session.
    return lazy("id_token_request", lambda: google.auth.transport.requests.Request(http_session()))


def require_admin(headers: dict[str, str]) -> Admin:
    """Authenticate an admin call from its (lower-cased) headers, or raise 401/403."""
    settings = get_settings()
    api_key = headers.get("x-api-key", "")
    if api_key:
        expected = read_secret(settings.secrets.admin_api_key)
        if not hmac.compare_digest(api_key.encode(), expected.encode()):
            raise Unauthenticated("invalid API key")
        return Admin("api-key", "api_key")
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if not authorization:
        raise Unauthenticated("send an ID token (Authorization: Bearer) or an X-API-Key")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <ID token>'")
    claims = _verify(token.strip())
    email = str(claims.get("email") or "").lower()
    if not email or claims.get("email_verified") is not True:
        raise Forbidden("the ID token carries no verified email")
    if email not in settings.admin_emails:
        raise Forbidden("this account is not an admin")
    return Admin(email, "id_token")


def _verify(token: str) -> Mapping[str, Any]:
    settings = get_settings()
    if not settings.id_token_audience:
        raise Unauthenticated("ID tokens are not accepted: no audience is configured")
    try:
        claims = id_token.verify_token(
            token,
            _google_request(),
            audience=settings.id_token_audience,
            certs_url=settings.google_certs_url,
        )
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise Unauthenticated("invalid ID token") from exc
    if claims.get("iss") not in ("accounts.google.com", "https://accounts.google.com"):
        raise Unauthenticated("ID token not issued by Google")
    return claims
