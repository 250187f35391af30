"""Google OAuth 2.0 emulator: authorization endpoint, token endpoint, revocation, ID tokens.

The production code talks to it through google-auth, google-auth-oauthlib and plain
`requests`, pointed at this server's URLs instead of accounts.google.com and
oauth2.googleapis.com. What it emulates, and why each piece matters to us:

- `GET /o/oauth2/auth` (and `/o/oauth2/v2/auth`): the consent step of the admin's
  "connect Google Calendar" flow. Consent is given automatically (or denied on demand).
- `POST /token` (and `/o/oauth2/token`): `authorization_code` (with PKCE),
  `refresh_token` (with optional rotation) and the service-account JWT bearer grant
  (access tokens, domain-wide delegation, and ID tokens for `target_audience`).
- `POST /revoke`: the admin disconnecting; later refreshes get `invalid_grant`.
- `GET /oauth2/v1/certs` (kid -> X.509 PEM) and `GET /oauth2/v3/certs` (JWKS): the keys
  our ID tokens are signed with, so `google.oauth2.id_token.verify_token` works.
- `GET /tokeninfo`, `GET /oauth2/v3/userinfo`.
- `POST /v1/projects/-/serviceAccounts/{email}:signJwt` and `:signBlob` (the IAM Service
  Account Credentials API): a service account's system-managed key signs a JWT or bytes for
  a caller holding an access token with the `cloud-platform` (or `iam`) scope. The token
  endpoint accepts those JWTs for the JWT bearer grant, `sub` included, so domain-wide
  delegation works without any key file (`google.auth.iam.Signer`, which calls `:signBlob`,
  plus `google.oauth2.service_account.Credentials(signer, email, token_uri, subject=...)`).
  `GET /service_accounts/v1/metadata/x509/{email}` and `/service_accounts/v1/jwk/{email}`
  publish those keys. An unknown account, or a caller outside its `token_creators`, gets 403
  PERMISSION_DENIED as Google answers for `projects/-/...`.
- In process, for the Cloud Tasks emulator: `service_account_id_token(email, audience)`
  signs an OIDC ID token for a service account like the ones Google mints for Cloud Tasks
  and Cloud Scheduler (verifiable with the certs above), `service_account_access_token`.

Control routes (never part of the emulated API), besides the shared ones in `_base`:

- `POST /_emulator/oauth/consent`   {"deny": bool, "email": str} how the next consents go
- `GET|POST /_emulator/oauth/settings` {"issueRefreshToken", "rotateRefreshTokens",
  "revokeOldOnRotate", "accessTokenLifetime", "userEmail"}
- `POST /_emulator/oauth/clients`   {"client_id", "client_secret", "redirect_uris"}
- `POST /_emulator/oauth/service-accounts` {"client_email", "public_key_pem" |
  "certificate_pem", "key_id", "delegation_allowed", "token_creators"}: the key is
  optional (an account with only its system-managed key, for signJwt); `token_creators`
  lists the callers (emails) allowed to sign as it, absent meaning any valid token
- `POST /_emulator/oauth/revoke-all`  every refresh and access token stops working
- `POST /_emulator/oauth/expire-access-tokens`  access tokens expire, grants stay valid
- `POST /_emulator/oauth/id-token`  {"email", "audience", "email_verified", "expires_in",
  "iat_offset", "sub", "issuer", "claims"} -> {"id_token"}
- `GET  /_emulator/oauth/sign-in?audience=&redirect_uri=&state=`  a page where a person in
  a browser chooses the email to sign in as (the admin console's local sign-in, standing in
  for Google Identity Services); submitting it (`POST`, form fields `email`, `audience`,
  `redirect_uri`, `state`) redirects to `redirect_uri#id_token=...&state=...`: an ID token
  like the ones `/_emulator/oauth/id-token` mints, in the fragment so no server sees it
- `POST /_emulator/oauth/rotate-signing-key`  new current key, old one still published
- `GET  /_emulator/oauth/stats`, `POST /_emulator/oauth/stats/reset`  token requests per
  grant type
- `GET  /_emulator/oauth/auth-requests`  the parameters of every authorization request
  (access_type, prompt, code_challenge_method, ...) and its outcome ("code" or the error)
- `POST /_emulator/oauth/reset`  back to the state right after construction (same keys)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import html
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from flask import Response, has_request_context, request
from werkzeug.routing import BaseConverter

from emulators._base import EmulatorApp, json_response
from emulators._status import grpc_status

ISSUER = "https://accounts.google.com"
SEEDED_SCOPES = (
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.readonly",
)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Audiences Google itself accepts in a service-account assertion, besides our own URL.
GOOGLE_TOKEN_AUDIENCES = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://accounts.google.com/o/oauth2/token",
        "https://www.googleapis.com/oauth2/v4/token",
    }
)
# Google answers "email"/"profile" with the long scope names; oauthlib sees a scope change.
SCOPE_ALIASES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
EMAIL_SCOPE = SCOPE_ALIASES["email"]
TOKEN_PATHS = frozenset({"/token", "/o/oauth2/token"})
FLAT_ERROR_PATHS = TOKEN_PATHS | {
    "/revoke",
    "/o/oauth2/revoke",
    "/tokeninfo",
    "/oauth2/v3/tokeninfo",
    "/oauth2/v3/userinfo",
    "/oauth2/v2/userinfo",
}
CODE_LIFETIME = 600
# What `GET /_emulator/oauth/auth-requests` keeps of each visit to the consent page.
RECORDED_AUTH_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "access_type",
    "prompt",
    "include_granted_scopes",
    "login_hint",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 300
# The IAM Service Account Credentials API: the scopes it accepts, and how far in the future
# a signJwt `exp` may lie (absent, one hour is added).
IAM_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/iam",
    }
)
MAX_SIGNED_JWT_LIFETIME = 12 * 3600
DEFAULT_SIGNED_JWT_LIFETIME = 3600
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def _error_body(status: int, reason: str, message: str) -> dict[str, Any]:
    """Token-style endpoints answer RFC 6749 bodies; anything else Google's JSON shape.

    The JSON shape's status name comes from the shared table (`emulators._status`): no route
    here answers a 409 of its own, so only an injected fault meets it, and a fault rule may
    name the status it wants as its `reason` (`{"status": 409, "reason": "ABORTED"}`).
    """
    if has_request_context() and request.path in FLAT_ERROR_PATHS:
        return {"error": reason, "error_description": message}
    return {
        "error": {
            "code": status,
            "message": message,
            "status": grpc_status(status, reason),
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _sub_for(email: str) -> str:
    """A stable 21-digit subject per email, shaped like Google's numeric account ids."""
    digest = int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:9], "big")
    return "1" + str(digest).zfill(20)[-20:]


def _normalize_scopes(raw: str | Iterable[str]) -> frozenset[str]:
    items = raw.split() if isinstance(raw, str) else list(raw)
    return frozenset(SCOPE_ALIASES.get(s, s) for s in items if s)


def _scope_str(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str] | None = None  # None: any absolute http(s) URI


@dataclass
class RefreshGrant:
    token: str
    client_id: str
    email: str
    scopes: frozenset[str]
    access_type: str = "offline"
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    client_id: str
    email: str | None
    scopes: frozenset[str]
    expires_at: float
    refresh_token: str | None = None
    service_account: str | None = None
    subject: str | None = None  # domain-wide delegation: the user the SA acts as
    access_type: str = "online"
    revoked: bool = False

    def alive(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    email: str
    access_type: str
    prompt: str
    include_granted_scopes: bool
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    issue_refresh: bool
    expires_at: float
    used: bool = False


@dataclass
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    certificate_pem: str


@dataclass
class ServiceAccount:
    client_email: str
    unique_id: str
    keys: dict[str, Any] = field(default_factory=dict)  # key_id -> public key
    delegation_allowed: bool = True
    # Google-managed keys (signJwt/signBlob): their public halves are in `keys` too, so the
    # token endpoint accepts what they sign.
    system_keys: list[SigningKey] = field(default_factory=list)
    token_creators: frozenset[str] | None = None  # None: any caller with a valid token


@dataclass
class Settings:
    issue_refresh_token: bool = True
    rotate_refresh_tokens: bool = False
    revoke_old_on_rotate: bool = False
    access_token_lifetime: int = 3600
    user_email: str = "admin@example.com"

    _JSON = {
        "issueRefreshToken": "issue_refresh_token",
        "rotateRefreshTokens": "rotate_refresh_tokens",
        "revokeOldOnRotate": "revoke_old_on_rotate",
        "accessTokenLifetime": "access_token_lifetime",
        "userEmail": "user_email",
    }

    def update(self, raw: dict[str, Any]) -> None:
        for key, attr in self._JSON.items():
            if key in raw:
                kind = type(getattr(self, attr))
                setattr(self, attr, kind(raw[key]))

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in self._JSON.items()}


def _jwk(key: SigningKey) -> dict[str, str]:
    """The public half of a signing key as a JSON Web Key."""
    numbers = key.private_key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": key.kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


class _SegmentConverter(BaseConverter):
    """One path segment up to a ':' so `{name}:signJwt` and `{name}` don't collide."""

    regex = r"[^/:]+"


def _new_signing_key(common_name: str = "emulator.accounts.google.com") -> SigningKey:
    """An RSA key and a self-signed certificate: v1/certs publishes certificates, not keys."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return SigningKey(kid=secrets.token_hex(20), private_key=key, certificate_pem=pem)


class OAuthEmulator:
    """Google's OAuth 2.0 server, in memory, with one pre-seeded client and refresh token."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        redirect_uris: list[str] | None = None,
    ) -> None:
        self._initial = (client_id, client_secret, refresh_token, redirect_uris)
        self._lock = threading.RLock()
        self.app = EmulatorApp("oauth", _error_body)
        self.app.app.url_map.converters["seg"] = _SegmentConverter
        self._signing_keys: list[SigningKey] = [_new_signing_key()]
        self._reset_state()
        self._install_routes()
        self._install_control_routes()

    # -- public, in-process API -------------------------------------------------------
    def check_access_token(self, token: str) -> bool:
        """True for an unexpired, unrevoked access token this server issued."""
        return self.access_token_info(token) is not None

    def access_token_info(self, token: str) -> dict[str, Any] | None:
        """What an API server needs to know about a bearer token (None if not valid)."""
        with self._lock:
            record = self._access.get(token)
            now = time.time()
            if record is None or not record.alive(now):
                return None
            return {
                "client_id": record.client_id,
                "email": record.subject or record.email,
                "scopes": sorted(record.scopes),
                "expires_in": int(record.expires_at - now),
                "service_account": record.service_account,
                "subject": record.subject,
            }

    def add_client(
        self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None
    ) -> None:
        with self._lock:
            self._clients[client_id] = OAuthClient(client_id, client_secret, redirect_uris)

    def add_refresh_token(
        self,
        token: str,
        scopes: Iterable[str] = SEEDED_SCOPES,
        email: str | None = None,
        client_id: str | None = None,
    ) -> None:
        """Registers a refresh token as already granted (what an earlier consent left)."""
        with self._lock:
            email = email or self.settings.user_email
            client = client_id or self._initial[0]
            grant = RefreshGrant(token, client, email, _normalize_scopes(scopes))
            self._refresh[token] = grant
            self._remember_consent(client, email, grant.scopes, offline=True)

    def mint_access_token(
        self, scopes: Iterable[str] = SEEDED_SCOPES, email: str | None = None
    ) -> str:
        """An access token without a round trip, for tests of the API emulators."""
        with self._lock:
            return self._issue_access(
                self._initial[0], email or self.settings.user_email, _normalize_scopes(scopes)
            ).token

    def revoke_all(self) -> None:
        with self._lock:
            for grant in self._refresh.values():
                grant.revoked = True
            for record in self._access.values():
                record.revoked = True

    def add_service_account(
        self,
        email: str,
        *,
        delegation_allowed: bool = True,
        token_creators: Iterable[str] | None = None,
    ) -> dict[str, str]:
        """Registers (or updates) a service account that has only Google-managed keys.

        What the IAM Credentials API signs with; returns {"client_email", "unique_id", "key_id"}.
        """
        with self._lock:
            account = self._service_account(email)
            account.delegation_allowed = delegation_allowed
            account.token_creators = (
                None if token_creators is None else frozenset(e.lower() for e in token_creators)
            )
            key = self._system_key(account)
            return {"client_email": email, "unique_id": account.unique_id, "key_id": key.kid}

    def service_account_id_token(self, email: str, audience: str) -> str:
        """An OIDC ID token for a service account, as Google mints for Cloud Tasks' `oidcToken`.

        Signed with the keys `/oauth2/v1/certs` publishes, so receivers verify it like Google's.
        An unknown account is registered on the way (Google would first check `actAs`).
        """
        with self._lock:
            account = self._service_account(email)
            return self.sign_id_token(self._service_account_id_claims(account, audience))

    def service_account_access_token(self, email: str, scopes: Iterable[str]) -> str:
        """An access token of a service account itself (Cloud Tasks' `oauthToken`)."""
        with self._lock:
            account = self._service_account(email)
            return self._issue_access(
                account.unique_id,
                account.client_email,
                _normalize_scopes(scopes),
                service_account=account.client_email,
            ).token

    # -- state ----------------------------------------------------------------------
    def _reset_state(self) -> None:
        client_id, client_secret, refresh_token, redirect_uris = self._initial
        with self._lock:
            self.settings = Settings()
            self._deny_consent = False
            self._consent_email: str | None = None
            self._clients: dict[str, OAuthClient] = {}
            self._refresh: dict[str, RefreshGrant] = {}
            self._access: dict[str, AccessToken] = {}
            self._codes: dict[str, AuthCode] = {}
            self._service_accounts: dict[str, ServiceAccount] = {}
            self._consented: dict[tuple[str, str], set[str]] = {}
            self._offline_granted: set[tuple[str, str]] = set()
            self.grant_counts: Counter[str] = Counter()
            self.grant_errors: Counter[str] = Counter()
            self.revocations = 0
            self.auth_requests: list[dict[str, Any]] = []
            self.add_client(client_id, client_secret, redirect_uris)
            self.add_refresh_token(refresh_token)

    def _remember_consent(
        self, client_id: str, email: str, scopes: Iterable[str], offline: bool
    ) -> None:
        self._consented.setdefault((client_id, email), set()).update(scopes)
        if offline:
            self._offline_granted.add((client_id, email))

    def _issue_access(
        self,
        client_id: str,
        email: str | None,
        scopes: frozenset[str],
        refresh_token: str | None = None,
        service_account: str | None = None,
        subject: str | None = None,
        access_type: str = "online",
    ) -> AccessToken:
        record = AccessToken(
            token="ya29." + secrets.token_urlsafe(48),
            client_id=client_id,
            email=email,
            scopes=scopes,
            expires_at=time.time() + self.settings.access_token_lifetime,
            refresh_token=refresh_token,
            service_account=service_account,
            subject=subject,
            access_type=access_type,
        )
        self._access[record.token] = record
        return record

    def _revoke_grant(self, grant: RefreshGrant) -> None:
        grant.revoked = True
        for record in self._access.values():
            if record.refresh_token == grant.token:
                record.revoked = True

    # -- service accounts -------------------------------------------------------------
    def _find_service_account(self, name: str) -> ServiceAccount | None:
        """An account by email or by unique id, the two names IAM accepts."""
        account = self._service_accounts.get(name)
        if account is None:
            account = next(
                (a for a in self._service_accounts.values() if a.unique_id == name), None
            )
        return account

    def _service_account(self, email: str) -> ServiceAccount:
        """The account with this email, registered (without user-managed keys) if unknown."""
        account = self._service_accounts.get(email)
        if account is None:
            account = ServiceAccount(email, _sub_for("sa:" + email))
            self._service_accounts[email] = account
        return account

    def _system_key(self, account: ServiceAccount) -> SigningKey:
        """The account's current Google-managed key, made on first use."""
        if not account.system_keys:
            key = _new_signing_key(account.client_email)
            account.system_keys.append(key)
            account.keys[key.kid] = key.private_key.public_key()
        return account.system_keys[-1]

    @staticmethod
    def _service_account_id_claims(account: ServiceAccount, audience: str) -> dict[str, Any]:
        issued = int(time.time())
        return {
            "iss": ISSUER,
            "aud": audience,
            "azp": account.unique_id,
            "sub": account.unique_id,
            "email": account.client_email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + 3600,
        }

    # -- ID tokens --------------------------------------------------------------------
    def sign_id_token(self, claims: dict[str, Any]) -> str:
        """Signs claims with the current key (RS256, `kid` header), like Google's ID tokens."""
        key = self._signing_keys[-1]
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})

    def _user_id_token(
        self, client_id: str, email: str, scopes: frozenset[str], nonce: str | None
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "azp": client_id,
            "aud": client_id,
            "sub": _sub_for(email),
        }
        if EMAIL_SCOPE in scopes:
            claims.update(email=email, email_verified=True)
        if nonce:
            claims["nonce"] = nonce
        claims.update(iat=now, exp=now + 3600)
        return self.sign_id_token(claims)

    def _decode_own_id_token(self, token: str) -> dict[str, Any] | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        for key in self._signing_keys:
            if key.kid == kid:
                try:
                    return dict(
                        jwt.decode(
                            token,
                            key.private_key.public_key(),
                            algorithms=["RS256"],
                            options={"verify_aud": False},
                        )
                    )
                except jwt.PyJWTError:
                    return None
        return None

    # -- helpers for routes -------------------------------------------------------------
    def _oauth_error(self, status: int, error: str, description: str) -> Response:
        return json_response({"error": error, "error_description": description}, status)

    def _page(self, status: int, error: str, detail: str) -> Response:
        """Google shows a page (no redirect) when it cannot trust the redirect_uri."""
        body = (
            "<!doctype html><title>Error</title><h1>Access blocked: Authorization Error</h1>"
            f"<p>Error {status}: {html.escape(error)}</p><p>{html.escape(detail)}</p>"
        )
        return Response(body, status=status, mimetype="text/html")

    def _redirect_uri_ok(self, client: OAuthClient, uri: str) -> bool:
        if client.redirect_uris is not None:
            return uri in client.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment

    @staticmethod
    def _with_query(uri: str, params: dict[str, str]) -> str:
        parts = urlsplit(uri)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _client_credentials(self) -> tuple[list[str], list[str], Response | None]:
        """Client auth from HTTP Basic (RFC 6749 2.3.1) or form fields, as candidate values.

        RFC 6749 wants Basic credentials form-encoded, but `requests`' HTTPBasicAuth (used by
        requests-oauthlib) sends them raw, so both readings are tried.
        """
        form_id = request.form.get("client_id")
        form_secret = request.form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except (ValueError, UnicodeDecodeError):
                return [], [], self._oauth_error(400, "invalid_request", "Bad Request")
            raw_id, _, raw_secret = decoded.partition(":")
            ids = list(dict.fromkeys([raw_id, unquote_plus(raw_id)]))
            if form_id and form_id not in ids:
                return [], [], self._oauth_error(400, "invalid_request", "Bad Request")
            return ids, list(dict.fromkeys([raw_secret, unquote_plus(raw_secret)])), None
        return [form_id] if form_id else [], [form_secret] if form_secret else [], None

    def _authenticate_client(self) -> tuple[OAuthClient | None, Response | None]:
        client_ids, client_secrets, problem = self._client_credentials()
        if problem is not None:
            return None, problem
        if not client_ids:
            return None, self._oauth_error(
                400, "invalid_request", "Could not determine client ID from request."
            )
        client = next((self._clients[c] for c in client_ids if c in self._clients), None)
        if client is None:
            return None, self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if not any(secrets.compare_digest(s, client.client_secret) for s in client_secrets):
            return None, self._oauth_error(401, "invalid_client", "Unauthorized")
        return client, None

    def _token_endpoint_url(self) -> str:
        return f"{request.scheme}://{request.host}{request.path}"

    # -- routes -------------------------------------------------------------------------
    def _install_routes(self) -> None:
        app = self.app.app

        @app.get("/o/oauth2/auth")
        @app.get("/o/oauth2/v2/auth")
        def authorize() -> Response:
            return self._authorize()

        @app.post("/token")
        @app.post("/o/oauth2/token")
        def token() -> Response:
            grant_type = request.form.get("grant_type", "")
            with self._lock:
                self.grant_counts[grant_type or "(missing)"] += 1
                response = self._token(grant_type)
                if response.status_code != 200:
                    self.grant_errors[grant_type or "(missing)"] += 1
            return response

        @app.post("/revoke")
        @app.route("/o/oauth2/revoke", methods=["GET", "POST"])
        def revoke() -> Response:
            token = request.values.get("token", "")
            with self._lock:
                self.revocations += 1
                grant = self._refresh.get(token)
                record = self._access.get(token)
                if grant is not None and not grant.revoked:
                    self._revoke_grant(grant)
                elif record is not None and record.alive(time.time()):
                    # Google: revoking an access token also revokes its refresh token.
                    record.revoked = True
                    parent = self._refresh.get(record.refresh_token or "")
                    if parent is not None:
                        self._revoke_grant(parent)
                else:
                    return self._oauth_error(400, "invalid_token", "Token expired or revoked")
            return json_response({})

        @app.route("/tokeninfo", methods=["GET", "POST"])
        @app.route("/oauth2/v3/tokeninfo", methods=["GET", "POST"])
        def tokeninfo() -> Response:
            return self._tokeninfo()

        @app.get("/oauth2/v3/userinfo")
        @app.get("/oauth2/v2/userinfo")
        def userinfo() -> Response:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            with self._lock:
                record = self._access.get(token)
                if record is None or not record.alive(time.time()):
                    return self._oauth_error(401, "invalid_request", "Invalid Credentials")
                email = record.subject or record.email or ""
                body: dict[str, Any] = {"sub": _sub_for(email)}
                if EMAIL_SCOPE in record.scopes:
                    body.update(email=email, email_verified=True)
                if SCOPE_ALIASES["profile"] in record.scopes:
                    body["name"] = email.split("@")[0]
            return json_response(body)

        @app.get("/oauth2/v1/certs")
        def certs_v1() -> Response:
            with self._lock:
                body = {k.kid: k.certificate_pem for k in self._signing_keys}
            return json_response(body, headers={"Cache-Control": "public, max-age=3600"})

        @app.get("/oauth2/v3/certs")
        def certs_v3() -> Response:
            with self._lock:
                keys = [_jwk(key) for key in self._signing_keys]
            return json_response({"keys": keys}, headers={"Cache-Control": "public, max-age=3600"})

        @app.post("/v1/projects/<seg:project>/serviceAccounts/<seg:account>:signJwt")
        def iam_sign_jwt(project: str, account: str) -> Response:
            return self._sign_jwt(project, account)

        @app.post("/v1/projects/<seg:project>/serviceAccounts/<seg:account>:signBlob")
        def iam_sign_blob(project: str, account: str) -> Response:
            return self._sign_blob(project, account)

        @app.get("/service_accounts/v1/metadata/x509/<seg:account>")
        def service_account_x509(account: str) -> Response:
            keys = self._published_keys(account)
            if keys is None:
                return self.app.error(404, "notFound", f"Service account {account} not found.")
            return json_response({k.kid: k.certificate_pem for k in keys})

        @app.get("/service_accounts/v1/jwk/<seg:account>")
        def service_account_jwk(account: str) -> Response:
            keys = self._published_keys(account)
            if keys is None:
                return self.app.error(404, "notFound", f"Service account {account} not found.")
            return json_response({"keys": [_jwk(k) for k in keys]})

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Response:
            base = request.host_url.rstrip("/")
            return json_response(
                {
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
                    "token_endpoint": f"{base}/token",
                    "userinfo_endpoint": f"{base}/oauth2/v3/userinfo",
                    "revocation_endpoint": f"{base}/revoke",
                    "jwks_uri": f"{base}/oauth2/v3/certs",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["plain", "S256"],
                    "grant_types_supported": [
                        "authorization_code",
                        "refresh_token",
                        JWT_BEARER,
                    ],
                }
            )

    # -- authorization endpoint ------------------------------------------------------
    def _authorize(self) -> Response:
        args = request.args
        client_id = args.get("client_id", "")
        redirect_uri = args.get("redirect_uri", "")
        with self._lock:
            recorded = {k: args.get(k) for k in RECORDED_AUTH_PARAMS if k in args}
            self.auth_requests.append(recorded)
            client = self._clients.get(client_id)
            if client is None:
                return self._page(400, "invalid_client", "The OAuth client was not found.")
            if not redirect_uri or not self._redirect_uri_ok(client, redirect_uri):
                return self._page(
                    400, "redirect_uri_mismatch", f"redirect_uri={redirect_uri} is not allowed"
                )
            if args.get("response_type") != "code":
                return self._page(
                    400, "invalid_request", "Required parameter is missing: response_type=code"
                )
            scopes = _normalize_scopes(args.get("scope", ""))
            if not scopes:
                return self._page(400, "invalid_request", "Missing required parameter: scope")
            method = args.get("code_challenge_method")
            challenge = args.get("code_challenge")
            if challenge and (method or "plain") not in ("plain", "S256"):
                return self._page(400, "invalid_request", "Invalid code_challenge_method")
            access_type = args.get("access_type", "online")
            if access_type not in ("online", "offline"):
                return self._page(400, "invalid_request", "Invalid access_type")
            state = args.get("state")
            prompt = args.get("prompt", "")

            def back(params: dict[str, str]) -> Response:
                recorded["outcome"] = params.get("error", "code")
                if state is not None:
                    params["state"] = state
                return Response(
                    status=302, headers={"Location": self._with_query(redirect_uri, params)}
                )

            if self._deny_consent or args.get("login_hint") == "deny":
                return back({"error": "access_denied"})
            email = self._consent_email or self.settings.user_email
            key = (client_id, email)
            previous = self._consented.get(key, set())
            if "none" in prompt.split() and not scopes <= previous:
                return back({"error": "consent_required"})
            include_granted = args.get("include_granted_scopes", "").lower() == "true"
            granted = scopes | previous if include_granted else scopes
            consent_shown = "consent" in prompt.split() or not scopes <= previous
            issue_refresh = access_type == "offline" and (
                consent_shown or key not in self._offline_granted
            )
            code = AuthCode(
                code="4/0" + secrets.token_urlsafe(40),
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=frozenset(granted),
                email=email,
                access_type=access_type,
                prompt=prompt,
                include_granted_scopes=include_granted,
                code_challenge=challenge,
                code_challenge_method=(method or "plain") if challenge else None,
                nonce=args.get("nonce"),
                issue_refresh=issue_refresh,
                expires_at=time.time() + CODE_LIFETIME,
            )
            self._codes[code.code] = code
            self._remember_consent(client_id, email, granted, offline=False)
            return back(
                {
                    "code": code.code,
                    "scope": _scope_str(granted),
                    "authuser": "0",
                    "prompt": "consent" if consent_shown else "none",
                }
            )

    # -- token endpoint -------------------------------------------------------------
    def _token(self, grant_type: str) -> Response:
        if grant_type == "authorization_code":
            return self._grant_code()
        if grant_type == "refresh_token":
            return self._grant_refresh()
        if grant_type == JWT_BEARER:
            return self._grant_jwt()
        if not grant_type:
            return self._oauth_error(400, "unsupported_grant_type", "Invalid grant_type: ")
        return self._oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _token_body(
        self, record: AccessToken, refresh: str | None, id_token: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": record.token,
            "expires_in": self.settings.access_token_lifetime,
            "scope": _scope_str(record.scopes),
            "token_type": "Bearer",
        }
        if refresh:
            body["refresh_token"] = refresh
        if id_token:
            body["id_token"] = id_token
        return body

    def _grant_code(self) -> Response:
        client, problem = self._authenticate_client()
        if problem is not None or client is None:
            return problem or self._oauth_error(401, "invalid_client", "Unauthorized")
        code_value = request.form.get("code", "")
        if not code_value:
            return self._oauth_error(400, "invalid_request", "Missing required parameter: code")
        code = self._codes.get(code_value)
        if code is None:
            return self._oauth_error(400, "invalid_grant", "Malformed auth code.")
        if code.used or code.expires_at < time.time() or code.client_id != client.client_id:
            return self._oauth_error(400, "invalid_grant", "Bad Request")
        if request.form.get("redirect_uri", "") != code.redirect_uri:
            return self._oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        verifier = request.form.get("code_verifier")
        if code.code_challenge:
            if not verifier:
                return self._oauth_error(400, "invalid_grant", "Missing code verifier.")
            if code.code_challenge_method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            else:
                computed = verifier
            if not _VERIFIER_RE.match(verifier) or not secrets.compare_digest(
                computed, code.code_challenge
            ):
                return self._oauth_error(400, "invalid_grant", "Invalid code verifier.")
        code.used = True
        refresh: str | None = None
        if code.issue_refresh and self.settings.issue_refresh_token:
            refresh = "1//0" + secrets.token_urlsafe(64)
            self._refresh[refresh] = RefreshGrant(
                refresh, client.client_id, code.email, code.scopes, code.access_type
            )
            self._remember_consent(client.client_id, code.email, code.scopes, offline=True)
        record = self._issue_access(
            client.client_id, code.email, code.scopes, refresh, access_type=code.access_type
        )
        id_token = None
        if "openid" in code.scopes or EMAIL_SCOPE in code.scopes:
            id_token = self._user_id_token(client.client_id, code.email, code.scopes, code.nonce)
        return json_response(self._token_body(record, refresh, id_token))

    def _grant_refresh(self) -> Response:
        client, problem = self._authenticate_client()
        if problem is not None or client is None:
            return problem or self._oauth_error(401, "invalid_client", "Unauthorized")
        token = request.form.get("refresh_token", "")
        if not token:
            return self._oauth_error(
                400, "invalid_request", "Missing required parameter: refresh_token"
            )
        grant = self._refresh.get(token)
        if grant is None or grant.revoked:
            return self._oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        if grant.client_id != client.client_id:
            return self._oauth_error(400, "unauthorized_client", "Unauthorized")
        scopes = grant.scopes
        if request.form.get("scope"):
            wanted = _normalize_scopes(request.form["scope"])
            if not wanted <= grant.scopes:
                return self._oauth_error(400, "invalid_scope", "Bad Request")
            scopes = wanted
        current = grant.token
        new_refresh: str | None = None
        if self.settings.rotate_refresh_tokens:
            new_refresh = "1//0" + secrets.token_urlsafe(64)
            self._refresh[new_refresh] = RefreshGrant(
                new_refresh, grant.client_id, grant.email, grant.scopes, grant.access_type
            )
            if self.settings.revoke_old_on_rotate:
                self._revoke_grant(grant)
            current = new_refresh
        record = self._issue_access(
            client.client_id, grant.email, scopes, current, access_type=grant.access_type
        )
        id_token = None
        if "openid" in scopes:
            id_token = self._user_id_token(client.client_id, grant.email, scopes, None)
        return json_response(self._token_body(record, new_refresh, id_token))

    def _grant_jwt(self) -> Response:
        assertion = request.form.get("assertion", "")
        if not assertion:
            return self._oauth_error(
                400, "invalid_request", "Missing required parameter: assertion"
            )
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self._oauth_error(400, "invalid_grant", "Invalid JWT: malformed assertion.")
        if header.get("alg") != "RS256":
            return self._oauth_error(400, "invalid_grant", "Invalid JWT: alg must be RS256.")
        account = self._service_accounts.get(str(unverified.get("iss", "")))
        if account is None:
            return self._oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        kid = header.get("kid")
        keys = [account.keys[kid]] if kid in account.keys else list(account.keys.values())
        if kid and kid not in account.keys:
            keys = []
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                claims = dict(
                    jwt.decode(
                        assertion,
                        key,
                        algorithms=["RS256"],
                        options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
                    )
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                break
        if claims is None:
            return self._oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        expected_aud = self._token_endpoint_url()
        aud = claims.get("aud")
        if aud != expected_aud and aud not in GOOGLE_TOKEN_AUDIENCES:
            return self._oauth_error(
                400,
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The right audience is {expected_aud}",
            )
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, int | float)
            or not isinstance(exp, int | float)
            or exp <= now
            or iat > now + CLOCK_SKEW
            or exp - iat > MAX_ASSERTION_LIFETIME
            or exp <= iat
        ):
            return self._oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        target_audience = claims.get("target_audience")
        scopes = _normalize_scopes(str(claims.get("scope", "")))
        if target_audience:
            id_token = self.sign_id_token(
                self._service_account_id_claims(account, str(target_audience))
            )
            return json_response({"id_token": id_token})
        if not scopes:
            return self._oauth_error(
                400, "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        subject = claims.get("sub")
        if subject and not account.delegation_allowed:
            return self._oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or "
                "client not authorized for any of the scopes requested.",
            )
        record = self._issue_access(
            account.unique_id,
            account.client_email,
            scopes,
            service_account=account.client_email,
            subject=str(subject) if subject else None,
        )
        return json_response(
            {
                "access_token": record.token,
                "expires_in": self.settings.access_token_lifetime,
                "token_type": "Bearer",
            }
        )

    # -- IAM Service Account Credentials API ---------------------------------------------
    def _iam_caller(self) -> tuple[dict[str, Any] | None, Response | None]:
        """Who calls, from the bearer token; it needs the cloud-platform (or iam) scope."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, self.app.error(
                401,
                "required",
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
            )
        info = self.access_token_info(token.strip())
        if info is None:
            return None, self.app.error(
                401,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        if not IAM_SCOPES & set(info["scopes"]):
            return None, self.app.error(
                403,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
            )
        return info, None

    def _iam_account(
        self, project: str, name: str, permission: str, caller: dict[str, Any]
    ) -> tuple[ServiceAccount | None, Response | None]:
        """The account to sign as; unknown and not-allowed look alike (403), as with `-`."""
        if project != "-":
            return None, self.app.error(
                400,
                "badRequest",
                "The project in the resource name must be the '-' wildcard: "
                f"projects/-/serviceAccounts/{name}",
            )
        account = self._find_service_account(name)
        caller_email = str(caller.get("email") or "").lower()
        if account is None or (
            account.token_creators is not None and caller_email not in account.token_creators
        ):
            return None, self.app.error(
                403,
                "forbidden",
                f"Permission '{permission}' denied on resource (or it may not exist).",
            )
        return account, None

    def _iam_request(
        self, project: str, name: str, permission: str
    ) -> tuple[ServiceAccount | None, dict[str, Any], Response | None]:
        """Authenticates, finds the account, reads the body and checks its `delegates`."""
        caller, problem = self._iam_caller()
        if problem is not None or caller is None:
            return None, {}, problem
        account, problem = self._iam_account(project, name, permission, caller)
        if problem is not None or account is None:
            return None, {}, problem
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return None, {}, self.app.error(400, "badRequest", "Invalid JSON payload received.")
        delegates = body.get("delegates") or []
        if not isinstance(delegates, list):
            return None, {}, self.app.error(400, "badRequest", "delegates must be a list.")
        for delegate in delegates:
            prefix, _, delegate_name = str(delegate).rpartition("/")
            if prefix != "projects/-/serviceAccounts" or not delegate_name:
                return (
                    None,
                    {},
                    self.app.error(
                        400,
                        "badRequest",
                        "Delegates must look like "
                        "projects/-/serviceAccounts/{ACCOUNT_EMAIL_OR_UNIQUEID}.",
                    ),
                )
            if self._find_service_account(delegate_name) is None:
                return (
                    None,
                    {},
                    self.app.error(
                        403,
                        "forbidden",
                        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                        "(or it may not exist).",
                    ),
                )
        return account, body, None

    def _sign_jwt(self, project: str, name: str) -> Response:
        with self._lock:
            account, body, problem = self._iam_request(project, name, "iam.serviceAccounts.signJwt")
            if problem is not None or account is None:
                return problem or self.app.error(500, "internal", "no account")
            payload = body.get("payload")
            try:
                claims = json.loads(payload) if isinstance(payload, str) else None
            except ValueError:
                claims = None
            if not isinstance(claims, dict):
                return self.app.error(
                    400,
                    "badRequest",
                    "payload must be a serialized JSON object (a JWT Claims Set).",
                )
            now = int(time.time())
            exp = claims.get("exp")
            if exp is None:
                claims["exp"] = now + DEFAULT_SIGNED_JWT_LIFETIME
            elif (
                not isinstance(exp, int)
                or isinstance(exp, bool)
                or exp < now
                or exp > now + MAX_SIGNED_JWT_LIFETIME
            ):
                return self.app.error(
                    400,
                    "badRequest",
                    "The exp claim must be an integer timestamp, not in the past and at most "
                    "12 hours in the future.",
                )
            key = self._system_key(account)
            headers = {"kid": key.kid}
            signed = jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
            return json_response({"keyId": key.kid, "signedJwt": signed})

    def _sign_blob(self, project: str, name: str) -> Response:
        with self._lock:
            account, body, problem = self._iam_request(
                project, name, "iam.serviceAccounts.signBlob"
            )
            if problem is not None or account is None:
                return problem or self.app.error(500, "internal", "no account")
            try:
                data = base64.b64decode(str(body.get("payload", "")), validate=True)
            except (binascii.Error, ValueError):
                return self.app.error(400, "badRequest", "payload must be base64-encoded bytes.")
            key = self._system_key(account)
            signature = key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            return json_response(
                {"keyId": key.kid, "signedBlob": base64.b64encode(signature).decode()}
            )

    def _published_keys(self, name: str) -> list[SigningKey] | None:
        with self._lock:
            account = self._find_service_account(name)
            return None if account is None else list(account.system_keys)

    # -- tokeninfo ------------------------------------------------------------------
    def _tokeninfo(self) -> Response:
        access_token = request.values.get("access_token")
        id_token = request.values.get("id_token")
        with self._lock:
            if id_token:
                claims = self._decode_own_id_token(id_token)
                if claims is None:
                    return self._oauth_error(400, "invalid_token", "Invalid Value")
                # Like Google's tokeninfo: every claim as a string, plus the header's alg/kid.
                body = {
                    k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in claims.items()
                }
                body.update(alg="RS256", kid=str(jwt.get_unverified_header(id_token)["kid"]))
                return json_response(body)
            record = self._access.get(access_token or "")
            now = time.time()
            if record is None or not record.alive(now):
                return self._oauth_error(400, "invalid_token", "Invalid Value")
            email = record.subject or record.email
            info: dict[str, Any] = {
                "azp": record.client_id,
                "aud": record.client_id,
                "sub": _sub_for(email)
                if email and not record.service_account
                else record.client_id,
                "scope": _scope_str(record.scopes),
                "exp": str(int(record.expires_at)),
                "expires_in": str(int(record.expires_at - now)),
            }
            if email and (EMAIL_SCOPE in record.scopes or record.service_account):
                info.update(email=email, email_verified="true")
            elif email:
                info["email"] = email
            if not record.service_account:
                info["access_type"] = record.access_type
            return json_response(info)

    # -- browser sign-in (control route) ---------------------------------------------
    def _sign_in(self) -> Response:
        """Choose an email, get an ID token for `audience` back in the URL's fragment."""
        values = request.values
        audience = values.get("audience", "")
        redirect_uri = values.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if not audience or parts.scheme not in ("http", "https") or not parts.netloc:
            return self._page(400, "invalid_request", "audience and an http(s) redirect_uri")
        if request.method == "GET":
            fields = "".join(
                f'<input type="hidden" name="{name}" value="{html.escape(values.get(name, ""))}">'
                for name in ("audience", "redirect_uri", "state")
            )
            body = (
                '<!doctype html><html lang="es"><meta charset="utf-8"><title>Google (emulador)'
                "</title><h1>Iniciar sesión (emulador de Google)</h1>"
                '<form method="post"><label>Correo / Email '
                f'<input name="email" type="email" value="{html.escape(self.settings.user_email)}"'
                f' required></label>{fields}<button type="submit">Continuar</button></form></html>'
            )
            return Response(body, mimetype="text/html")
        email = values.get("email", "").strip()
        if "@" not in email:
            return self._page(400, "invalid_request", "an email address is needed")
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "azp": audience,
            "aud": audience,
            "sub": _sub_for(email),
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        with self._lock:
            token = self.sign_id_token(claims)
        fragment = urlencode({"id_token": token, "state": values.get("state", "")})
        location = urlunsplit(parts._replace(fragment=fragment))
        return Response(status=303, headers={"Location": location})

    # -- control routes ---------------------------------------------------------------
    def _install_control_routes(self) -> None:
        app = self.app.app

        @app.post("/_emulator/oauth/consent")
        def oauth_consent() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            with self._lock:
                self._deny_consent = bool(raw.get("deny", False))
                if "email" in raw:
                    self._consent_email = raw["email"] or None
            return json_response({"deny": self._deny_consent, "email": self._consent_email})

        @app.route("/_emulator/oauth/settings", methods=["GET", "POST"])
        def oauth_settings() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True) or {}
                unknown = set(raw) - set(Settings._JSON)
                if unknown:
                    return self.app.error(400, "badRequest", f"Unknown settings: {sorted(unknown)}")
                with self._lock:
                    self.settings.update(raw)
            return json_response(self.settings.to_json())

        @app.post("/_emulator/oauth/clients")
        def oauth_clients() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            if not raw.get("client_id") or not raw.get("client_secret"):
                return self.app.error(400, "badRequest", "client_id and client_secret required")
            self.add_client(raw["client_id"], raw["client_secret"], raw.get("redirect_uris"))
            return json_response({"client_id": raw["client_id"]})

        @app.post("/_emulator/oauth/service-accounts")
        def oauth_service_accounts() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            email = raw.get("client_email")
            pem = raw.get("public_key_pem") or raw.get("certificate_pem")
            creators = raw.get("token_creators")
            if not email:
                return self.app.error(400, "badRequest", "client_email required")
            if creators is not None and (
                not isinstance(creators, list) or not all(isinstance(c, str) for c in creators)
            ):
                return self.app.error(400, "badRequest", "token_creators must list emails")
            key: Any = None
            if pem:
                try:
                    if raw.get("certificate_pem"):
                        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
                    else:
                        key = serialization.load_pem_public_key(pem.encode())
                except ValueError as exc:
                    return self.app.error(400, "badRequest", f"Unreadable key: {exc}")
                if not isinstance(key, rsa.RSAPublicKey):
                    return self.app.error(400, "badRequest", "Service-account keys are RSA keys")
            delegation = bool(raw.get("delegation_allowed", True))
            with self._lock:
                if key is None:  # only a Google-managed key, made now
                    registered = self.add_service_account(
                        email, delegation_allowed=delegation, token_creators=creators
                    )
                    key_id, unique_id = registered["key_id"], registered["unique_id"]
                else:
                    account = self._service_account(email)
                    account.delegation_allowed = delegation
                    if creators is not None:
                        account.token_creators = frozenset(c.lower() for c in creators)
                    key_id = str(raw.get("key_id") or secrets.token_hex(20))
                    account.keys[key_id] = key
                    unique_id = account.unique_id
            return json_response({"client_email": email, "key_id": key_id, "unique_id": unique_id})

        @app.post("/_emulator/oauth/revoke-all")
        def oauth_revoke_all() -> Response:
            self.revoke_all()
            return json_response({})

        @app.post("/_emulator/oauth/expire-access-tokens")
        def oauth_expire_access_tokens() -> Response:
            with self._lock:
                for record in self._access.values():
                    record.expires_at = min(record.expires_at, time.time() - 1)
            return json_response({})

        @app.post("/_emulator/oauth/id-token")
        def oauth_mint_id_token() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            email = str(raw.get("email") or self.settings.user_email)
            audience = raw.get("audience")
            if not audience:
                return self.app.error(400, "badRequest", "audience required")
            iat = int(time.time()) + int(raw.get("iat_offset", 0))
            claims: dict[str, Any] = {
                "iss": raw.get("issuer", ISSUER),
                "azp": audience,
                "aud": audience,
                "sub": str(raw.get("sub") or _sub_for(email)),
                "email": email,
                "email_verified": bool(raw.get("email_verified", True)),
                "iat": iat,
                "exp": iat + int(raw.get("expires_in", 3600)),
            }
            claims.update(raw.get("claims") or {})
            with self._lock:
                return json_response({"id_token": self.sign_id_token(claims)})

        @app.route("/_emulator/oauth/sign-in", methods=["GET", "POST"])
        def oauth_sign_in() -> Response:
            return self._sign_in()

        @app.post("/_emulator/oauth/rotate-signing-key")
        def oauth_rotate_signing_key() -> Response:
            key = _new_signing_key()
            with self._lock:
                self._signing_keys.append(key)
                kids = [k.kid for k in self._signing_keys]
            return json_response({"kid": key.kid, "published": kids})

        @app.get("/_emulator/oauth/stats")
        def oauth_stats() -> Response:
            with self._lock:
                return json_response(
                    {
                        "tokenRequests": sum(self.grant_counts.values()),
                        "grants": dict(self.grant_counts),
                        "grantErrors": dict(self.grant_errors),
                        "revocations": self.revocations,
                        "liveAccessTokens": sum(
                            1 for r in self._access.values() if r.alive(time.time())
                        ),
                    }
                )

        @app.get("/_emulator/oauth/auth-requests")
        def oauth_auth_requests() -> Response:
            with self._lock:
                return json_response({"requests": list(self.auth_requests)})

        @app.post("/_emulator/oauth/stats/reset")
        def oauth_reset_stats() -> Response:
            with self._lock:
                self.grant_counts.clear()
                self.grant_errors.clear()
                self.revocations = 0
            return json_response({})

        @app.post("/_emulator/oauth/reset")
        def oauth_reset() -> Response:
            self._reset_state()
            return json_response({})
