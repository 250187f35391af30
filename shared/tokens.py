"""Google credentials for Calendar calls: the admin's refresh token, or a service account.

OAuth mode (the default) reads the refresh token and the OAuth client from Secret Manager
once per instance and keeps the access token until it expires. functions-framework serves
requests on threads, so a refresh happens under a lock: eight threads that find the token
expired make one token request, not eight.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import google.auth
import google.oauth2.credentials
from google.auth import credentials as ga_credentials
from google.auth import exceptions as ga_exceptions
from google.auth.transport import Request

from shared import logs
from shared.clients import lazy
from shared.config import get_settings
from shared.errors import ReauthorizationRequired, TransientUpstreamError
from shared.secrets import read_secret

CALENDAR_SCOPES: tuple[str, ...] = (
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.readonly",
)


def oauth_client_config() -> dict[str, Any]:
    """The OAuth client (id, secret, URIs) from the client JSON kept in Secret Manager."""
    raw = json.loads(read_secret(get_settings().secrets.oauth_client))
    client: dict[str, Any] = raw.get("web") or raw.get("installed") or raw
    return client


class RefreshTokenCredentials(ga_credentials.Credentials):
    """Access tokens from the stored refresh token, refreshed by one thread at a time."""

    def __init__(self, scopes: Sequence[str] = CALENDAR_SCOPES) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._scopes = list(scopes)
        self._lock = threading.Lock()

    def refresh(self, request: Request) -> None:
        seen = self.token
        with self._lock:
            if self.token != seen and self.valid:
                return  # another thread refreshed while this one waited
            settings = get_settings()
            client = oauth_client_config()
            inner = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
                token=None,
                refresh_token=read_secret(settings.secrets.refresh_token),
                token_uri=settings.oauth_token_uri,
                client_id=client["client_id"],
                client_secret=client["client_secret"],
                scopes=self._scopes,
            )
            try:
                inner.refresh(request)  # type: ignore[no-untyped-call]
            except ga_exceptions.RefreshError as exc:
                if "invalid_grant" in str(exc):
                    logs.error("calendar authorization revoked; an admin must consent again")
                    raise ReauthorizationRequired(
                        "Google authorization is no longer valid; an admin must connect again"
                    ) from exc
                raise TransientUpstreamError("Google token endpoint refused a refresh") from exc
            except ga_exceptions.TransportError as exc:
                raise TransientUpstreamError("Google token endpoint unreachable") from exc
            self.token = inner.token
            self.expiry = inner.expiry


def calendar_credentials() -> ga_credentials.Credentials:
    """The credentials every Calendar call uses, built once per instance."""

    def build() -> ga_credentials.Credentials:
        settings = get_settings()
        if settings.calendar_auth == "service_account":
            creds, _ = google.auth.default(scopes=list(CALENDAR_SCOPES))
            if settings.impersonate_subject:
                creds = creds.with_subject(settings.impersonate_subject)  # type: ignore[attr-defined]
            return creds
        return RefreshTokenCredentials()

    return lazy("calendar_credentials", build)
