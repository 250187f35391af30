"""Conformance tests of the OAuth 2.0 emulator, driven by the real Google client libraries.

google-auth refreshes user credentials and runs the service-account JWT bearer grant,
google-auth-oauthlib runs the authorization-code flow with PKCE, and
`google.oauth2.id_token.verify_token` checks our ID tokens: if the emulator drifts from what
those libraries expect, these tests fail before the platform's code does.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2 import credentials as user_credentials
from google.oauth2 import id_token, service_account
from google_auth_oauthlib.flow import Flow

from emulators._base import ServerThread
from emulators.oauth import OAuthEmulator

CLIENT_ID = "emulator-client.apps.googleusercontent.com"
CLIENT_SECRET = "emulator-client-secret"
REFRESH_TOKEN = "1//seeded-refresh-token"
CALENDAR_SCOPES = [
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.readonly",
]
REDIRECT_URI = "http://127.0.0.1:1/oauth/callback"
SA_EMAIL = "scheduler@classes-test.iam.gserviceaccount.com"
TIMEOUT = 5


@pytest.fixture(scope="module")
def emulator() -> OAuthEmulator:
    return OAuthEmulator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
    )


@pytest.fixture(scope="module")
def server(emulator: OAuthEmulator) -> Iterator[ServerThread]:
    thread = ServerThread(emulator.app.app).start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def fresh_state(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the constructed state; oauthlib must accept http on loopback."""
    control(server, "reset")
    requests.delete(f"{server.url}/_emulator/faults", timeout=TIMEOUT)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    # Google widens "email" to .../userinfo.email; oauthlib calls that a scope change.
    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")


@pytest.fixture(scope="module")
def sa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def control(server: ServerThread, path: str, body: dict[str, Any] | None = None) -> Any:
    response = requests.post(
        f"{server.url}/_emulator/oauth/{path}", json=body or {}, timeout=TIMEOUT
    )
    response.raise_for_status()
    return response.json()


def user_creds(server: ServerThread, refresh_token: str = REFRESH_TOKEN, **kw: Any) -> Any:
    return user_credentials.Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=f"{server.url}/token",
        client_id=kw.pop("client_id", CLIENT_ID),
        client_secret=kw.pop("client_secret", CLIENT_SECRET),
        **kw,
    )


def make_flow(server: ServerThread, scopes: list[str]) -> Flow:
    config = {
        "web": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "auth_uri": f"{server.url}/o/oauth2/auth",
            "token_uri": f"{server.url}/token",
            "redirect_uris": [REDIRECT_URI],
        }
    }
    return Flow.from_client_config(config, scopes=scopes, redirect_uri=REDIRECT_URI)


def consent(url: str) -> tuple[str, dict[str, list[str]]]:
    """Visits the authorization URL and returns the redirect it answers (not followed)."""
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    return location, parse_qs(urlsplit(location).query)


def register_sa(
    server: ServerThread, key: rsa.RSAPrivateKey, key_id: str = "k1", **extra: Any
) -> dict[str, Any]:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {"client_email": SA_EMAIL, "public_key_pem": pem.decode(), "key_id": key_id}
    return control(server, "service-accounts", {**body, **extra})  # type: ignore[no-any-return]


def sa_info(server: ServerThread, key: rsa.RSAPrivateKey, key_id: str = "k1") -> dict[str, str]:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "type": "service_account",
        "project_id": "classes-test",
        "private_key_id": key_id,
        "private_key": pem.decode(),
        "client_email": SA_EMAIL,
        "client_id": "1234567890",
        "token_uri": f"{server.url}/token",
    }


def tokeninfo(server: ServerThread, token: str) -> requests.Response:
    return requests.get(f"{server.url}/tokeninfo", params={"access_token": token}, timeout=TIMEOUT)


def stats(server: ServerThread) -> dict[str, Any]:
    response = requests.get(f"{server.url}/_emulator/oauth/stats", timeout=TIMEOUT)
    return response.json()  # type: ignore[no-any-return]


# -- refresh_token grant -----------------------------------------------------------------


def test_seeded_refresh_token_refreshes(server: ServerThread, emulator: OAuthEmulator) -> None:
    creds = user_creds(server)
    creds.refresh(Request())
    assert creds.valid
    assert creds.token.startswith("ya29.")
    assert emulator.check_access_token(creds.token)
    assert not emulator.check_access_token("ya29.not-issued-here")
    info = tokeninfo(server, creds.token).json()
    assert set(info["scope"].split()) == set(CALENDAR_SCOPES)
    assert info["aud"] == CLIENT_ID
    assert 3500 < int(info["expires_in"]) <= 3600
    # No email scope was granted, so userinfo tells who only by `sub`, like Google.
    me = requests.get(
        f"{server.url}/oauth2/v3/userinfo",
        headers={"Authorization": f"Bearer {creds.token}"},
        timeout=TIMEOUT,
    ).json()
    assert set(me) == {"sub"}


def test_refresh_narrows_to_requested_scopes(server: ServerThread) -> None:
    creds = user_creds(server, scopes=[CALENDAR_SCOPES[1]])
    creds.refresh(Request())
    assert tokeninfo(server, creds.token).json()["scope"] == CALENDAR_SCOPES[1]
    wider = user_creds(server, scopes=["https://www.googleapis.com/auth/drive"])
    with pytest.raises(RefreshError, match="invalid_scope"):
        wider.refresh(Request())


def test_bad_client_secret_is_invalid_client(server: ServerThread) -> None:
    response = requests.post(
        f"{server.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": REFRESH_TOKEN,
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    with pytest.raises(RefreshError, match="invalid_client"):
        user_creds(server, client_secret="wrong").refresh(Request())


def test_basic_auth_client_authentication(server: ServerThread) -> None:
    response = requests.post(
        f"{server.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_revoke_gives_invalid_grant(server: ServerThread, emulator: OAuthEmulator) -> None:
    creds = user_creds(server)
    creds.refresh(Request())
    access = creds.token
    revoked = requests.post(f"{server.url}/revoke", data={"token": REFRESH_TOKEN}, timeout=TIMEOUT)
    assert revoked.status_code == 200
    assert not emulator.check_access_token(access)  # refresh revocation kills its tokens
    with pytest.raises(RefreshError) as caught:
        user_creds(server).refresh(Request())
    assert caught.value.args[1] == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    again = requests.post(f"{server.url}/revoke", data={"token": REFRESH_TOKEN}, timeout=TIMEOUT)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_token"


def test_revoking_access_token_revokes_its_refresh_token(server: ServerThread) -> None:
    creds = user_creds(server)
    creds.refresh(Request())
    requests.post(f"{server.url}/revoke", params={"token": creds.token}, timeout=TIMEOUT)
    with pytest.raises(RefreshError, match="invalid_grant"):
        user_creds(server).refresh(Request())


def test_revoke_all_control(server: ServerThread) -> None:
    control(server, "revoke-all")
    with pytest.raises(RefreshError, match="invalid_grant"):
        user_creds(server).refresh(Request())


def test_rotation_keeps_old_token_unless_told(server: ServerThread) -> None:
    control(server, "settings", {"rotateRefreshTokens": True})
    creds = user_creds(server)
    creds.refresh(Request())
    rotated = creds.refresh_token
    assert rotated != REFRESH_TOKEN
    user_creds(server).refresh(Request())  # the old one still works
    control(server, "settings", {"revokeOldOnRotate": True})
    creds.refresh(Request())  # rotates `rotated` and revokes it
    assert creds.refresh_token not in (rotated, REFRESH_TOKEN)
    with pytest.raises(RefreshError, match="invalid_grant"):
        user_creds(server, refresh_token=rotated).refresh(Request())
    user_creds(server, refresh_token=creds.refresh_token).refresh(Request())


def test_access_token_lifetime_and_expiry(server: ServerThread, emulator: OAuthEmulator) -> None:
    control(server, "settings", {"accessTokenLifetime": 120})
    creds = user_creds(server)
    creds.refresh(Request())
    assert int(tokeninfo(server, creds.token).json()["expires_in"]) <= 120
    control(server, "expire-access-tokens")
    assert not emulator.check_access_token(creds.token)
    assert tokeninfo(server, creds.token).status_code == 400
    user_creds(server).refresh(Request())  # the grant itself is still good


def test_injected_fault_on_token_endpoint_has_oauth_shape(server: ServerThread) -> None:
    rule = {"status": 400, "reason": "invalid_request", "count": 1, "pathContains": "/token"}
    requests.post(f"{server.url}/_emulator/faults", json={"rules": [rule]}, timeout=TIMEOUT)
    with pytest.raises(RefreshError) as caught:
        user_creds(server).refresh(Request())
    assert caught.value.args[1]["error"] == "invalid_request"
    user_creds(server).refresh(Request())


# -- authorization code flow ---------------------------------------------------------------


def test_auth_code_flow_with_pkce(server: ServerThread, emulator: OAuthEmulator) -> None:
    flow = make_flow(server, ["openid", "email", *CALENDAR_SCOPES])
    url, state = flow.authorization_url(
        access_type="offline", prompt="consent", include_granted_scopes="true"
    )
    assert "code_challenge=" in url
    location, query = consent(url)
    assert location.startswith(REDIRECT_URI)
    assert query["state"] == [state]
    assert "https://www.googleapis.com/auth/userinfo.email" in query["scope"][0].split()
    recorded = requests.get(f"{server.url}/_emulator/oauth/auth-requests", timeout=TIMEOUT)
    last = recorded.json()["requests"][-1]
    assert last["code_challenge_method"] == "S256"
    assert (last["access_type"], last["prompt"], last["outcome"]) == ("offline", "consent", "code")
    token = flow.fetch_token(authorization_response=location)
    assert token["refresh_token"]
    assert emulator.check_access_token(token["access_token"])
    claims = id_token.verify_token(
        token["id_token"],
        Request(),
        audience=CLIENT_ID,
        certs_url=f"{server.url}/oauth2/v1/certs",
    )
    assert claims["email"] == "admin@example.com"
    assert claims["iss"] == "https://accounts.google.com"
    # The credentials the flow hands over keep working against the same server.
    creds = flow.credentials
    creds.refresh(Request())
    me = requests.get(
        f"{server.url}/oauth2/v3/userinfo",
        headers={"Authorization": f"Bearer {creds.token}"},
        timeout=TIMEOUT,
    ).json()
    assert me["email"] == "admin@example.com"
    # A code is single use.
    reuse = requests.post(
        f"{server.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.code_verifier,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=TIMEOUT,
    )
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"


def exchange(server: ServerThread, code: str, **extra: str) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **extra,
    }
    return requests.post(f"{server.url}/token", data=data, timeout=TIMEOUT)


def auth_url(server: ServerThread, **params: str) -> str:
    base = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": " ".join(CALENDAR_SCOPES),
        "state": "xyz",
    }
    return (
        requests.Request("GET", f"{server.url}/o/oauth2/auth", params={**base, **params})
        .prepare()
        .url
        or ""
    )


def test_pkce_verifier_is_checked(server: ServerThread) -> None:
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    _, query = consent(
        auth_url(server, code_challenge=challenge.decode(), code_challenge_method="S256")
    )
    code = query["code"][0]
    missing = exchange(server, code)
    assert missing.json() == {
        "error": "invalid_grant",
        "error_description": "Missing code verifier.",
    }
    wrong = exchange(server, code, code_verifier="w" * 64)
    assert wrong.json()["error_description"] == "Invalid code verifier."
    assert exchange(server, code, code_verifier=verifier).status_code == 200
    _, plain = consent(auth_url(server, code_challenge=verifier, code_challenge_method="plain"))
    assert exchange(server, plain["code"][0], code_verifier=verifier).status_code == 200


def test_redirect_uri_must_match_on_exchange(server: ServerThread) -> None:
    _, query = consent(auth_url(server))
    response = exchange(server, query["code"][0], redirect_uri="http://127.0.0.1:1/other")
    assert response.json()["error"] == "redirect_uri_mismatch"


def test_refresh_token_only_on_first_offline_grant_or_prompt_consent(server: ServerThread) -> None:
    # The seeded refresh token is an earlier offline grant for this client and user.
    _, query = consent(auth_url(server, access_type="offline"))
    assert "refresh_token" not in exchange(server, query["code"][0]).json()
    _, query = consent(auth_url(server, access_type="offline", prompt="consent"))
    assert exchange(server, query["code"][0]).json()["refresh_token"]
    _, query = consent(auth_url(server, prompt="consent"))  # online access
    assert "refresh_token" not in exchange(server, query["code"][0]).json()
    control(server, "consent", {"email": "teacher@example.com"})  # a user never seen before
    _, query = consent(auth_url(server, access_type="offline"))
    assert exchange(server, query["code"][0]).json()["refresh_token"]


def test_refresh_token_can_be_suppressed(server: ServerThread) -> None:
    control(server, "settings", {"issueRefreshToken": False})
    flow = make_flow(server, CALENDAR_SCOPES)
    url, _ = flow.authorization_url(access_type="offline", prompt="consent")
    location, _ = consent(url)
    token = flow.fetch_token(authorization_response=location)
    assert "refresh_token" not in token
    assert flow.credentials.refresh_token is None


def test_denied_consent_redirects_with_access_denied(server: ServerThread) -> None:
    _, query = consent(auth_url(server, login_hint="deny"))
    assert query == {"error": ["access_denied"], "state": ["xyz"]}
    control(server, "consent", {"deny": True})
    _, query = consent(auth_url(server))
    assert query["error"] == ["access_denied"]


def test_bad_authorization_requests_get_an_error_page(server: ServerThread) -> None:
    unknown = requests.get(
        auth_url(server, client_id="nobody"), allow_redirects=False, timeout=TIMEOUT
    )
    assert unknown.status_code == 400
    assert "invalid_client" in unknown.text
    no_type = requests.get(
        auth_url(server, response_type="token"), allow_redirects=False, timeout=TIMEOUT
    )
    assert no_type.status_code == 400
    control(
        server,
        "clients",
        {"client_id": "strict", "client_secret": "s", "redirect_uris": ["https://x.test/cb"]},
    )
    mismatch = requests.get(
        auth_url(server, client_id="strict"), allow_redirects=False, timeout=TIMEOUT
    )
    assert mismatch.status_code == 400
    assert "redirect_uri_mismatch" in mismatch.text


# -- service accounts ----------------------------------------------------------------------


def test_service_account_access_token_and_subject(
    server: ServerThread, emulator: OAuthEmulator, sa_key: rsa.RSAPrivateKey
) -> None:
    register_sa(server, sa_key)
    creds = service_account.Credentials.from_service_account_info(
        sa_info(server, sa_key), scopes=CALENDAR_SCOPES
    )
    creds.refresh(Request())
    assert emulator.check_access_token(creds.token)
    assert tokeninfo(server, creds.token).json()["email"] == SA_EMAIL
    delegated = creds.with_subject("teacher@example.com")
    delegated.refresh(Request())
    info = emulator.access_token_info(delegated.token)
    assert info is not None
    assert info["subject"] == "teacher@example.com"
    assert info["service_account"] == SA_EMAIL
    assert stats(server)["grants"]["urn:ietf:params:oauth:grant-type:jwt-bearer"] == 2


def test_service_account_assertion_checks(server: ServerThread, sa_key: rsa.RSAPrivateKey) -> None:
    register_sa(server, sa_key)
    now = int(time.time())
    good = {
        "iss": SA_EMAIL,
        "aud": f"{server.url}/token",
        "scope": CALENDAR_SCOPES[0],
        "iat": now,
        "exp": now + 3600,
    }

    def grant(claims: dict[str, Any], key: rsa.RSAPrivateKey = sa_key) -> dict[str, Any]:
        assertion = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        response = requests.post(
            f"{server.url}/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
            timeout=TIMEOUT,
        )
        return response.json()  # type: ignore[no-any-return]

    assert "access_token" in grant(good)
    assert "audience" in grant({**good, "aud": "https://example.com/token"})["error_description"]
    assert grant({**good, "exp": now + 7200})["error"] == "invalid_grant"
    assert grant({**good, "exp": now - 10, "iat": now - 100})["error"] == "invalid_grant"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert grant(good, other_key)["error_description"] == "Invalid JWT Signature."
    no_scope = {k: v for k, v in good.items() if k != "scope"}
    assert grant(no_scope)["error"] == "invalid_scope"
    assert grant({**good, "iss": "stranger@x.iam.gserviceaccount.com"})["error"] == "invalid_grant"
    register_sa(server, sa_key, delegation_allowed=False)
    assert grant({**good, "sub": "teacher@example.com"})["error"] == "unauthorized_client"


def test_id_token_credentials(server: ServerThread, sa_key: rsa.RSAPrivateKey) -> None:
    register_sa(server, sa_key)
    audience = "https://functions.example.test/reconcile"
    creds = service_account.IDTokenCredentials.from_service_account_info(
        sa_info(server, sa_key), target_audience=audience
    )
    creds.refresh(Request())
    claims = id_token.verify_token(
        creds.token, Request(), audience=audience, certs_url=f"{server.url}/oauth2/v1/certs"
    )
    assert claims["email"] == SA_EMAIL
    assert claims["email_verified"] is True


# -- ID tokens -------------------------------------------------------------------------------


def test_minted_id_tokens_verify_like_googles(server: ServerThread) -> None:
    audience = "classes-admin"
    certs_v1 = f"{server.url}/oauth2/v1/certs"
    valid = control(server, "id-token", {"email": "boss@example.com", "audience": audience})
    claims = id_token.verify_token(
        valid["id_token"], Request(), audience=audience, certs_url=certs_v1
    )
    assert claims["email"] == "boss@example.com"
    assert claims["email_verified"] is True
    # The JWKS document verifies the same token (google-auth hands it to PyJWT).
    via_jwks = id_token.verify_token(
        valid["id_token"], Request(), audience=audience, certs_url=f"{server.url}/oauth2/v3/certs"
    )
    assert via_jwks["sub"] == claims["sub"]
    expired = control(
        server,
        "id-token",
        {
            "email": "boss@example.com",
            "audience": audience,
            "iat_offset": -7200,
            "expires_in": 3600,
        },
    )
    with pytest.raises(ValueError, match="expired"):
        id_token.verify_token(expired["id_token"], Request(), audience=audience, certs_url=certs_v1)
    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(
            valid["id_token"], Request(), audience="someone-else", certs_url=certs_v1
        )


def test_rotated_signing_key_keeps_old_tokens_verifiable(server: ServerThread) -> None:
    before = control(server, "id-token", {"audience": "a"})["id_token"]
    rotated = control(server, "rotate-signing-key")
    after = control(server, "id-token", {"audience": "a"})["id_token"]
    assert jwt.get_unverified_header(after)["kid"] == rotated["kid"]
    certs = f"{server.url}/oauth2/v1/certs"
    for token in (before, after):
        assert id_token.verify_token(token, Request(), audience="a", certs_url=certs)["aud"] == "a"


# -- stats -------------------------------------------------------------------------------------


def test_per_grant_stats_count_concurrent_refreshes(server: ServerThread) -> None:
    requests.post(f"{server.url}/_emulator/oauth/stats/reset", timeout=TIMEOUT)
    barrier = threading.Barrier(8)
    tokens: list[str] = []
    lock = threading.Lock()

    def refresh() -> None:
        creds = user_creds(server)
        barrier.wait()
        creds.refresh(Request())
        with lock:
            tokens.append(creds.token)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(set(tokens)) == 8
    with pytest.raises(RefreshError):
        user_creds(server, refresh_token="1//unknown").refresh(Request())
    counted = stats(server)
    assert counted["grants"] == {"refresh_token": 9}
    assert counted["grantErrors"] == {"refresh_token": 1}
    assert counted["tokenRequests"] == 9
