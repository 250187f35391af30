"""Google's OAuth endpoints for the admin's consent: the consent screen's URL and the code's
exchange for tokens, with google-auth-oauthlib and PKCE (S256, from our verifier).
"""

from __future__ import annotations

from typing import Any

import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from shared.adapters.google_credentials import oauth_client_config
from shared.config import get_settings
from shared.errors import GrantRefused, TransientUpstreamError

__all__ = ["consent_url", "exchange_code"]


def consent_url(
    scopes: list[str], verifier: str, state: str, redirect_uri: str, *, login_hint: str = ""
) -> str:
    """Google's consent screen for our client: offline access, asked again every time."""
    extra = {"login_hint": login_hint} if login_hint else {}
    url, _ = _flow(scopes, verifier, redirect_uri).authorization_url(
        access_type="offline",
        prompt="consent",
        include_granted_scopes="true",
        state=state,
        **extra,
    )
    return str(url)


def exchange_code(code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
    """The tokens for an authorization code; `GrantRefused` naming Google's error when it
    refuses the code, `TransientUpstreamError` when it cannot answer."""
    # No scopes here: Google may grant fewer (unticked boxes) or more
    # (include_granted_scopes) than asked, and the caller checks the granted ones.
    flow = _flow(None, verifier, redirect_uri)
    try:
        token: dict[str, Any] = flow.fetch_token(
            code=code, timeout=get_settings().upstream_timeout_seconds
        )
    except OAuth2Error as exc:
        if exc.error in ("server_error", "temporarily_unavailable"):
            raise TransientUpstreamError("Google token endpoint unavailable") from exc
        raise GrantRefused("Google refused the code", error=str(exc.error or "")) from exc
    except requests.RequestException as exc:
        raise TransientUpstreamError("Google token endpoint unreachable") from exc
    return token


def _flow(scopes: list[str] | None, verifier: str, redirect_uri: str) -> Flow:
    """google-auth-oauthlib's Flow for our client, redirect URI and PKCE verifier."""
    settings = get_settings()
    client = oauth_client_config()
    config = {
        "web": {
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "auth_uri": settings.oauth_auth_uri,
            "token_uri": settings.oauth_token_uri,
        }
    }
    return Flow.from_client_config(
        config,
        scopes=scopes,
        redirect_uri=redirect_uri,
        code_verifier=verifier,
        autogenerate_code_verifier=False,
    )
