"""Connecting Google Calendar: an admin's consent becomes the refresh token in Secret Manager.

`start_consent` sends an admin to Google's consent screen; `complete_consent` handles where
Google sends the admin back. The `state` between the two is signed with the
`oauth-state-key` secret, expires in ten minutes and is used once (its Firestore document is
consumed in a transaction), so a forged, stale or replayed callback stores nothing. The PKCE
verifier is derived from the same key and the state's nonce: nothing secret is kept in
Firestore. Before anything is stored, one Calendar call with the new access token checks
that the account may edit `CALENDAR_ID`: a consent from the wrong Google account is refused
and the working grant stays. The refresh token goes to Secret Manager as a new version
(older versions are disabled, not destroyed); Firestore gets who connected, when, which
scopes and which calendar, never a token.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import clock, logs
from shared.adapters import firestore, google_oauth
from shared.adapters.google_calendar import calendar_api
from shared.adapters.google_credentials import (
    CALENDAR_SCOPES,
    forget_calendar_grant,
    oauth_client_config,
)
from shared.adapters.id_tokens import Admin, verify_id_token
from shared.adapters.secret_manager import add_secret_version, matching_secret, read_secret
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.writes import SERVER_TIME
from shared.errors import (
    GrantRefused,
    PermanentUpstreamError,
    PlatformError,
    TransientUpstreamError,
    Unauthenticated,
    UpstreamNotFound,
)

__all__ = [
    "ConsentOutcome",
    "ConsentResult",
    "ConsentStart",
    "complete_consent",
    "parse_state",
    "sign_state",
    "start_consent",
]

STATE_LIFETIME_SECONDS = 600
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
# Long scope names: Google answers "email" as EMAIL_SCOPE, which oauthlib calls a change.
CONSENT_SCOPES: tuple[str, ...] = ("openid", EMAIL_SCOPE, *CALENDAR_SCOPES)
# nonce.expiry.signature, all ASCII and bounded: "²" passes str.isdigit but not int(),
# and hmac.compare_digest refuses non-ASCII text.
_STATE = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


class ConsentOutcome(enum.StrEnum):
    """How a callback ended; each has its own page and HTTP status."""

    CONNECTED = "connected"
    INVALID_STATE = "invalid_state"  # forged, malformed or unknown
    EXPIRED_STATE = "expired_state"
    REUSED_STATE = "reused_state"
    ACCESS_DENIED = "access_denied"
    OAUTH_ERROR = "oauth_error"
    CODE_REJECTED = "code_rejected"
    NO_REFRESH_TOKEN = "no_refresh_token"  # noqa: S105 (an outcome name, not a secret)
    MISSING_SCOPES = "missing_scopes"
    CALENDAR_UNREACHABLE = "calendar_unreachable"  # the account cannot edit CALENDAR_ID

    @property
    def status(self) -> int:
        if self is ConsentOutcome.CONNECTED:
            return 200
        forbidden = (ConsentOutcome.ACCESS_DENIED, ConsentOutcome.CALENDAR_UNREACHABLE)
        return 403 if self in forbidden else 400


@dataclass(frozen=True)
class ConsentStart:
    authorization_url: str
    expires_at: datetime


@dataclass(frozen=True)
class ConsentResult:
    outcome: ConsentOutcome
    connected_by: str | None = None
    scopes: tuple[str, ...] = ()
    calendar_id: str = ""
    error: str = ""  # the OAuth error code Google sent, for the page


def sign_state(key: str, nonce: str, expires_at: int) -> str:
    """`nonce.expiry.signature`: the signature covers both, so neither can be changed."""
    payload = f"{nonce}.{expires_at}"
    digest = hmac.new(key.encode(), f"state:{payload}".encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(digest)}"


def parse_state(state: str) -> tuple[str, int] | None:
    """(nonce, expiry) of a state shaped like the ones `sign_state` makes, else None."""
    match = _STATE.fullmatch(state)
    return (match[1], int(match[2])) if match else None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _code_verifier(key: str, nonce: str) -> str:
    """The PKCE verifier of one state, recomputable at the callback and never stored."""
    return _b64(hmac.new(key.encode(), f"pkce:{nonce}".encode(), hashlib.sha256).digest())


def _redirect_uri() -> str:
    uri = get_settings().oauth_redirect_uri
    if not uri:
        raise PlatformError("OAUTH_REDIRECT_URI is not set: the oauth_callback URL is needed")
    return uri


def start_consent(admin: Admin) -> ConsentStart:
    """Record a single-use state and build the URL of Google's consent screen."""
    settings = get_settings()
    _redirect_uri()  # a missing setting fails before anything is written
    key = read_secret(settings.secrets.oauth_state_key)
    nonce = secrets.token_urlsafe(24)
    expires_at = int(clock.now().timestamp()) + STATE_LIFETIME_SECONDS
    expiry = datetime.fromtimestamp(expires_at, UTC)
    firestore.create(
        firestore.oauth_state_ref(nonce),
        {
            "requestedBy": admin.identity,
            "createdAt": SERVER_TIME,
            "expiresAt": expiry,  # a Firestore TTL policy on this field deletes old states
        },
        Deadline(settings.handler_budget_seconds),
        "record OAuth state",
    )
    url = google_oauth.consent_url(
        list(CONSENT_SCOPES),
        _code_verifier(key, nonce),
        sign_state(key, nonce, expires_at),
        _redirect_uri(),
        login_hint=admin.identity if admin.method == "id_token" else "",
    )
    logs.info("calendar consent started", requested_by=admin.identity)
    return ConsentStart(url, expiry)


def complete_consent(params: Mapping[str, str]) -> ConsentResult:
    """Handle Google's redirect: check the state, exchange the code, store the grant."""
    checked = _check_state(params.get("state", ""))
    if isinstance(checked, ConsentOutcome):
        return _refused(checked)
    key, nonce, requested_by = checked
    error = params.get("error", "")
    if error:
        outcome = (
            ConsentOutcome.ACCESS_DENIED if error == "access_denied" else ConsentOutcome.OAUTH_ERROR
        )
        return _refused(outcome, error)
    if not params.get("code"):
        return _refused(ConsentOutcome.OAUTH_ERROR, "missing_code")
    answer = _exchange(params["code"], _code_verifier(key, nonce))
    if isinstance(answer, ConsentResult):
        return answer
    scope = answer.get("scope") or ()  # oauthlib has already split it into a list
    granted = tuple(sorted(scope.split() if isinstance(scope, str) else map(str, scope)))
    if not answer.get("refresh_token"):
        return _refused(ConsentOutcome.NO_REFRESH_TOKEN)
    if not set(CALENDAR_SCOPES) <= set(granted):
        return _refused(ConsentOutcome.MISSING_SCOPES)
    connected_by = _connected_account(answer.get("id_token"))
    if not _may_edit_calendar(str(answer.get("access_token") or "")):
        logs.warning(
            "calendar consent not completed",
            outcome=ConsentOutcome.CALENDAR_UNREACHABLE.value,
            connected_by=connected_by,
        )
        return ConsentResult(
            ConsentOutcome.CALENDAR_UNREACHABLE,
            connected_by,
            granted,
            get_settings().calendar_id,
        )
    return _connect(str(answer["refresh_token"]), granted, connected_by, requested_by)


def _refused(outcome: ConsentOutcome, error: str = "") -> ConsentResult:
    logs.warning("calendar consent not completed", outcome=outcome.value, oauth_error=error or None)
    return ConsentResult(outcome, error=error)


def _check_state(state: str) -> tuple[str, str, str] | ConsentOutcome:
    """(key, nonce, requested_by) of a valid state, consumed; else why it is refused.

    `key` is the state key that signed it: the PKCE verifier is derived from the same key.
    """
    parsed = parse_state(state)
    if parsed is None:
        return ConsentOutcome.INVALID_STATE
    nonce, expires_at = parsed

    def signed_it(key: str) -> bool:
        return hmac.compare_digest(sign_state(key, nonce, expires_at).encode(), state.encode())

    # A warm instance may hold a rotated-out key: a mismatch reads it once more.
    key = matching_secret(get_settings().secrets.oauth_state_key, signed_it)
    if key is None:
        return ConsentOutcome.INVALID_STATE
    if expires_at < clock.now().timestamp():
        return ConsentOutcome.EXPIRED_STATE
    ref = firestore.oauth_state_ref(nonce)

    def consume(
        record: dict[str, Any],
    ) -> tuple[dict[str, Any] | None, tuple[str, str] | ConsentOutcome]:
        if not record:
            return None, ConsentOutcome.INVALID_STATE
        if record.get("usedAt") is not None:
            return None, ConsentOutcome.REUSED_STATE
        return {"usedAt": SERVER_TIME}, (nonce, str(record.get("requestedBy") or ""))

    deadline = Deadline(get_settings().handler_budget_seconds)
    result = firestore.update_if_unchanged(ref, consume, deadline, "consume OAuth state")
    return result if isinstance(result, ConsentOutcome) else (key, *result)


def _exchange(code: str, verifier: str) -> dict[str, Any] | ConsentResult:
    """Trade the code for tokens; a code Google refuses ends the consent, not the request."""
    try:
        return google_oauth.exchange_code(code, verifier, _redirect_uri())
    except GrantRefused as exc:
        error = str(exc.details.get("error") or "token_error")
        outcome = (
            ConsentOutcome.CODE_REJECTED if error == "invalid_grant" else ConsentOutcome.OAUTH_ERROR
        )
        return _refused(outcome, error)


def _may_edit_calendar(access_token: str) -> bool:
    """Whether the consenting account may create events in `CALENDAR_ID`.

    Google answers 404 for a calendar the account cannot see and 403 when it may not list
    it; a reader may list but not create events. Other failures raise (503 page: retry).
    """
    deadline = Deadline(get_settings().handler_budget_seconds)
    try:
        role = calendar_api().access_role(access_token, deadline)
    except UpstreamNotFound:
        return False
    except PermanentUpstreamError as exc:
        if exc.details.get("status") == 403:
            return False
        raise
    return role in ("owner", "writer")


def _connected_account(raw_id_token: Any) -> str | None:
    """The email of the Google account that consented, from the ID token (if any)."""
    if not raw_id_token:
        return None
    try:
        claims = verify_id_token(str(raw_id_token), oauth_client_config()["client_id"])
    except (Unauthenticated, TransientUpstreamError):
        logs.warning("the ID token of a consent did not verify; connectedBy left empty")
        return None
    email = claims.get("email")
    return str(email).lower() if email and claims.get("email_verified") else None


def _connect(
    refresh_token: str, scopes: tuple[str, ...], connected_by: str | None, requested_by: str
) -> ConsentResult:
    settings = get_settings()
    version = add_secret_version(settings.secrets.refresh_token, refresh_token)
    status = {
        "status": "connected",
        "mode": "oauth",
        "connectedBy": connected_by,
        "requestedBy": requested_by or None,
        "connectedAt": SERVER_TIME,
        "updatedAt": SERVER_TIME,
        "scopes": list(scopes),
        "calendarId": settings.calendar_id,
        "secretVersion": version,
    }
    firestore.set_document(
        firestore.integration_status_ref(),
        status,
        Deadline(settings.handler_budget_seconds),
        "record calendar connection",
    )
    forget_calendar_grant()
    logs.info(
        "Google Calendar connected",
        connected_by=connected_by,
        requested_by=requested_by or None,
        version=version,
    )
    return ConsentResult(ConsentOutcome.CONNECTED, connected_by, scopes, settings.calendar_id)
