"""Google credentials for Calendar calls: the admin's refresh token, or a service account.

OAuth mode (the default) reads the refresh token and the OAuth client (id and secret) from
Secret Manager at each refresh, through `read_secret`'s short cache, so a new consent made
on another instance is picked up within that cache's lifetime; each access token is kept
until it expires.
functions-framework serves requests on threads, so refreshes happen under a lock: eight
threads that find the token expired make one token request, not eight.

When Google rotates the refresh token, the new one becomes a new Secret Manager version.
When Google answers `invalid_grant` (access revoked, token unused for six months, a Testing
app's seven days over) the grant is gone: the integration status document says
`needs_reconsent`, one ERROR line is logged per instance, and every call raises
`ReauthorizationRequired` (503) until an admin connects again. Bookings stay `paid`, so the
reconcile step creates their events once the new grant works.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import google.auth
import google.auth.transport.requests
import google.oauth2.credentials
import google.oauth2.service_account
from google.auth import credentials as ga_credentials
from google.auth import exceptions as ga_exceptions
from google.auth import iam
from google.auth.transport import Request

from shared import logs
from shared.adapters import firestore
from shared.adapters.boundary import Upstream, translate
from shared.adapters.clients import lazy
from shared.adapters.secret_manager import add_secret_version, read_secret
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.writes import SERVER_TIME
from shared.errors import PlatformError, ReauthorizationRequired

__all__ = [
    "CALENDAR_SCOPES",
    "RefreshTokenCredentials",
    "ServiceAccountCredentials",
    "calendar_credentials",
    "forget_calendar_grant",
    "oauth_client_config",
    "record_integration_status",
]

CALENDAR_SCOPES: tuple[str, ...] = (
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.readonly",
)
STATUS_BUDGET_SECONDS = 3.0
"""The status document is best effort: it must not hold up the call that reports it."""
RECHECK_SECONDS = 5.0
"""After `invalid_grant`, how long calls fail fast before looking for a newer stored grant."""


def oauth_client_config() -> dict[str, Any]:
    """The OAuth client (id, secret, URIs) from the client JSON kept in Secret Manager."""
    raw = json.loads(read_secret(get_settings().secrets.oauth_client))
    client: dict[str, Any] = raw.get("web") or raw.get("installed") or raw
    return client


def record_integration_status(fields: dict[str, Any]) -> None:
    """Merge `fields` into the status document; best effort, a failure only logs."""
    try:
        firestore.set_document(
            firestore.integration_status_ref(),
            {**fields, "updatedAt": SERVER_TIME},
            Deadline(STATUS_BUDGET_SECONDS),
            "record integration status",
            merge=True,
        )
    except PlatformError:
        logs.warning(
            "could not update the calendar integration status", status=fields.get("status")
        )


def _error_code(exc: ga_exceptions.RefreshError) -> str:
    """The OAuth `error` of a token endpoint answer ("invalid_grant"...), or ""."""
    details = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(details, dict):
        return str(details.get("error") or "")
    return str(exc.args[0]).split(":", 1)[0].strip() if exc.args else ""


class _InvalidGrant(Exception):
    """The token endpoint refused the refresh token itself."""


class _OneRefreshAtATime(ga_credentials.Credentials):
    """Credentials whose refresh runs in one thread while the others wait for its token.

    Each thread remembers the token it last sent. A thread asked to refresh (before a call,
    or after a 401) skips the token request when another thread has already replaced that
    token with a valid one.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._sent = threading.local()
        self._reported = False

    def apply(self, headers: dict[str, str], token: str | None = None) -> None:
        super().apply(headers, token)  # type: ignore[no-untyped-call]
        self._sent.token = token or self.token

    def refresh(self, request: Request) -> None:
        sent = getattr(self._sent, "token", None)
        with self._lock:
            if self.valid and self.token != sent:
                return  # another thread refreshed while this one waited
            self._refresh_locked(request)

    def _refresh_locked(self, request: Request) -> None:
        raise NotImplementedError

    def _unusable(self, message: str, **status: Any) -> ReauthorizationRequired:
        """Log and record a broken authorization once per instance; the error to raise."""
        self.token = None
        self.expiry = None
        if not self._reported:
            self._reported = True
            logs.error(message, integration="google_calendar", **status)
            record_integration_status({**status, "unusableSince": SERVER_TIME, "detail": message})
        return ReauthorizationRequired(message)

    def _usable_again(self, **status: Any) -> None:
        if self._reported:
            self._reported = False
            logs.info("Google Calendar authorization works again", integration="google_calendar")
            record_integration_status({**status, "unusableSince": None, "detail": None})


class RefreshTokenCredentials(_OneRefreshAtATime):
    """Access tokens from the stored refresh token of the admin who connected the calendar."""

    def __init__(self, scopes: Sequence[str] = CALENDAR_SCOPES) -> None:
        super().__init__()
        self._scopes = list(scopes)
        self._refresh_token: str | None = None
        self._rejected: str | None = None
        self._recheck_at = 0.0
        self._unsaved = False

    def forget(self) -> None:
        """Drop every token held in memory: the next call loads the stored grant again."""
        with self._lock:
            self.token = None
            self.expiry = None
            self._refresh_token = None
            self._rejected = None
            self._unsaved = False
            self._reported = False

    def _refresh_locked(self, request: Request) -> None:
        secret_id = get_settings().secrets.refresh_token
        if self._unsaved and self._refresh_token:
            self._store_rotated(self._refresh_token)
        token = self._load(secret_id)
        try:
            inner = self._grant(request, token)
        except _InvalidGrant:
            stored = read_secret(secret_id, fresh=True)
            if stored == token:
                raise self._reject(token) from None
            token = self._refresh_token = stored  # rotated or reconnected by another instance
            try:
                inner = self._grant(request, token)
            except _InvalidGrant:
                raise self._reject(token) from None
        self.token = inner.token
        self.expiry = inner.expiry
        self._rejected = None
        self._usable_again(status="connected")
        if inner.refresh_token and inner.refresh_token != token:
            self._refresh_token = inner.refresh_token
            self._store_rotated(inner.refresh_token)

    def _load(self, secret_id: str) -> str:
        """The refresh token to use: the stored one (cached briefly), or a rotated one this
        instance could not store yet, which only it knows."""
        if self._rejected is not None:
            if time.monotonic() < self._recheck_at:
                raise ReauthorizationRequired(
                    "Google authorization is no longer valid; an admin must connect again"
                )
            stored = read_secret(secret_id, fresh=True)
            if stored == self._rejected:
                raise self._reject(stored)
            self._refresh_token = stored
        elif not (self._unsaved and self._refresh_token):
            self._refresh_token = read_secret(secret_id)
        return self._refresh_token

    def _grant(self, request: Request, refresh_token: str) -> google.oauth2.credentials.Credentials:
        client = oauth_client_config()
        inner = google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=refresh_token,
            token_uri=get_settings().oauth_token_uri,
            client_id=client["client_id"],
            client_secret=client["client_secret"],
            scopes=self._scopes,
        )
        try:
            inner.refresh(request)  # type: ignore[no-untyped-call]
        except ga_exceptions.RefreshError as exc:
            code = _error_code(exc)
            if code == "invalid_grant":
                raise _InvalidGrant from None
            if code in ("invalid_client", "unauthorized_client"):
                logs.error("Google rejected the OAuth client; check its Secret Manager JSON")
            raise translate(exc, Upstream.GOOGLE_OAUTH, f"refresh ({code or 'unknown'})") from exc
        except ga_exceptions.TransportError as exc:
            raise translate(exc, Upstream.GOOGLE_OAUTH, "refresh") from exc
        return inner

    def _reject(self, refresh_token: str) -> ReauthorizationRequired:
        self._rejected = refresh_token
        self._recheck_at = time.monotonic() + RECHECK_SECONDS
        return self._unusable(
            "Google refused the calendar refresh token (invalid_grant); an admin must connect "
            "Google Calendar again",
            status="needs_reconsent",
            reason="invalid_grant",
        )

    def _store_rotated(self, refresh_token: str) -> None:
        """Keep a refresh token Google rotated; until stored, it lives only in this instance."""
        try:
            version = add_secret_version(get_settings().secrets.refresh_token, refresh_token)
        except PlatformError as exc:
            self._unsaved = True
            logs.error("could not store the rotated refresh token", detail=exc.message)
            return
        self._unsaved = False
        logs.info("Google rotated the calendar refresh token", version=version)
        record_integration_status({"secretVersion": version, "rotatedAt": SERVER_TIME})


class ServiceAccountCredentials(_OneRefreshAtATime):
    """Application Default Credentials of a service account, refreshed one thread at a time."""

    def __init__(self, inner: ga_credentials.Credentials) -> None:
        super().__init__()
        self._inner = inner

    def _refresh_locked(self, request: Request) -> None:
        try:
            self._inner.refresh(request)  # type: ignore[no-untyped-call]
        except ga_exceptions.RefreshError as exc:
            if exc.retryable:
                raise translate(exc, Upstream.GOOGLE_OAUTH, "service account token") from exc
            raise self._unusable(
                "the service account cannot get a Calendar token; check its key and its "
                "domain-wide delegation",
                status="needs_attention",
                mode="service_account",
                reason=_error_code(exc) or "refused",
            ) from exc
        except ga_exceptions.TransportError as exc:
            raise translate(exc, Upstream.GOOGLE_OAUTH, "service account token") from exc
        self.token = self._inner.token
        self.expiry = self._inner.expiry
        self._usable_again(status="connected", mode="service_account")


def _service_account() -> ServiceAccountCredentials:
    settings = get_settings()
    creds, _ = google.auth.default(scopes=list(CALENDAR_SCOPES))
    if settings.impersonate_subject:
        creds = _delegated(creds, settings.impersonate_subject)
    return ServiceAccountCredentials(creds)


GOOGLE_IAM_CREDENTIALS = "https://iamcredentials.googleapis.com"


class _IamCredentialsAt(google.auth.transport.requests.Request):
    """google-auth's IAM signer posts to a fixed Google address; locally it must reach the
    emulator (`IAM_CREDENTIALS_ENDPOINT`), so that one prefix is rewritten here."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self._endpoint = endpoint.rstrip("/")

    def __call__(self, url: str, *args: Any, **kwargs: Any) -> Any:
        if self._endpoint and url.startswith(GOOGLE_IAM_CREDENTIALS + "/"):
            url = self._endpoint + url[len(GOOGLE_IAM_CREDENTIALS) :]
        return super().__call__(url, *args, **kwargs)  # type: ignore[no-untyped-call]


def _delegated(source: ga_credentials.Credentials, subject: str) -> ga_credentials.Credentials:
    """Domain-wide delegation, acting for `subject` (who invites the students).

    With a key file the service account signs its own JWT (`with_subject`). On Cloud
    Functions there is no key: the runtime identity asks the IAM Credentials API to sign the
    JWT as the delegating account (`CALENDAR_SERVICE_ACCOUNT`, on which it holds Service
    Account Token Creator), so no key is ever deployed.
    """
    settings = get_settings()
    if hasattr(source, "with_subject"):
        delegated: ga_credentials.Credentials = source.with_subject(subject)
        return delegated
    account = settings.calendar_service_account
    if not account:
        raise ReauthorizationRequired(
            "CALENDAR_IMPERSONATE_SUBJECT without a key file needs CALENDAR_SERVICE_ACCOUNT: "
            "the account with domain-wide delegation that the runtime identity signs as"
        )
    request = _IamCredentialsAt(settings.iam_credentials_endpoint)
    signer = iam.Signer(request, source, account)  # type: ignore[no-untyped-call]
    return google.oauth2.service_account.Credentials(  # type: ignore[no-untyped-call]
        signer,
        account,
        settings.oauth_token_uri,
        scopes=list(CALENDAR_SCOPES),
        subject=subject,
    )


def calendar_credentials() -> ga_credentials.Credentials:
    """The credentials every Calendar call uses, built once per instance."""

    def build() -> ga_credentials.Credentials:
        if get_settings().calendar_auth == "service_account":
            return _service_account()
        return RefreshTokenCredentials()

    return lazy("calendar_credentials", build)


def forget_calendar_grant() -> None:
    """After a new consent: let this instance's next Calendar call use the new grant."""
    creds = calendar_credentials()
    if isinstance(creds, RefreshTokenCredentials):
        creds.forget()
