"""Conformance tests of the OAuth emulator's IAM Credentials API (signJwt, signBlob).

Domain-wide delegation without a key file: the function's own identity (here an access token
with the cloud-platform scope) asks IAM to sign, as the delegating service account, the JWT
that the token endpoint trades for an access token of the user named in `sub`. Two client
paths reach it:

- `google.auth.iam.Signer` (what google-auth offers) calls `:signBlob`, not `:signJwt`, and
  `google.oauth2.service_account.Credentials(signer, email, token_uri, subject=...)` builds
  and signs the JWT through it;
- `:signJwt` signs a whole claims set, for callers that post the assertion themselves.

`google.auth.iam` builds its URL from a fixed template
(`https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:signBlob`, only
the domain swapped for the credentials' `universe_domain`, scheme and `iamcredentials.` kept),
so it cannot be pointed at an http loopback server by configuration. The one public seam is
the transport: `Signer` takes a `google.auth.transport.Request`, and `IamEndpoint` below
wraps one to send that prefix to the emulator instead.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import google.auth.transport
import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.auth import iam
from google.auth.exceptions import RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from emulators._base import ServerThread
from emulators.calendar import CalendarEmulator
from emulators.oauth import OAuthEmulator

GOOGLE_IAM_CREDENTIALS = "https://iamcredentials.googleapis.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events"
DELEGATOR = "calendar-delegate@classes-test.iam.gserviceaccount.com"
RUNTIME = "functions-runtime@classes-test.iam.gserviceaccount.com"
TEACHER = "ana.gomez@classes.example"
CALENDAR_ID = "clases@classes.example"
GHOST = "ghost@classes-test.iam.gserviceaccount.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TIMEOUT = 5


class IamEndpoint(google.auth.transport.Request):
    """A transport that sends IAM Credentials calls to another base URL (the emulator)."""

    def __init__(self, base_url: str, inner: google.auth.transport.Request | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.inner = inner or Request()

    def __call__(  # type: ignore[override]
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        if url.startswith(GOOGLE_IAM_CREDENTIALS + "/"):
            url = self.base_url + url[len(GOOGLE_IAM_CREDENTIALS) :]
        return self.inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def emulator() -> OAuthEmulator:
    return OAuthEmulator(client_id="c", client_secret="s", refresh_token="1//r")


@pytest.fixture(scope="module")
def server(emulator: OAuthEmulator) -> Iterator[ServerThread]:
    thread = ServerThread(emulator.app.app).start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def fresh_state(server: ServerThread) -> None:
    requests.post(f"{server.url}/_emulator/oauth/reset", timeout=TIMEOUT).raise_for_status()


@pytest.fixture
def delegator(server: ServerThread) -> dict[str, Any]:
    """The delegating service account, with only its Google-managed key (no key file)."""
    response = requests.post(
        f"{server.url}/_emulator/oauth/service-accounts",
        json={"client_email": DELEGATOR},
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    return dict(response.json())


def runtime_credentials(emulator: OAuthEmulator, scopes: list[str] | None = None) -> Any:
    """What a function runs as (its metadata-server token), allowed to call IAM."""
    token = emulator.mint_access_token(scopes=scopes or [CLOUD_PLATFORM], email=RUNTIME)
    return user_credentials.Credentials(token=token)


def delegated_credentials(
    server: ServerThread, emulator: OAuthEmulator, subject: str = TEACHER
) -> service_account.Credentials:
    signer = iam.Signer(
        IamEndpoint(server.url), runtime_credentials(emulator), service_account_email=DELEGATOR
    )
    return service_account.Credentials(
        signer,
        DELEGATOR,
        f"{server.url}/token",
        scopes=[CALENDAR_SCOPE],
        subject=subject,
    )


def iam_call(
    server: ServerThread, account: str, method: str, body: dict[str, Any], token: str | None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{server.url}/v1/projects/-/serviceAccounts/{account}:{method}",
        json=body,
        headers=headers,
        timeout=TIMEOUT,
    )


def published_certificates(server: ServerThread, account: str) -> dict[str, str]:
    response = requests.get(
        f"{server.url}/service_accounts/v1/metadata/x509/{account}", timeout=TIMEOUT
    )
    response.raise_for_status()
    return dict(response.json())


def test_iam_signer_gives_a_delegated_access_token_without_a_key_file(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    credentials = delegated_credentials(server, emulator)
    credentials.refresh(Request())
    info = emulator.access_token_info(credentials.token)
    assert info is not None
    assert info["subject"] == TEACHER  # recorded: later API calls act as the teacher
    assert info["service_account"] == DELEGATOR
    assert info["email"] == TEACHER
    assert info["scopes"] == [CALENDAR_SCOPE]
    tokeninfo = requests.get(
        f"{server.url}/tokeninfo", params={"access_token": credentials.token}, timeout=TIMEOUT
    ).json()
    assert tokeninfo["email"] == TEACHER
    stats = requests.get(f"{server.url}/_emulator/stats", timeout=TIMEOUT).json()["calls"]
    assert stats["POST /v1/projects/<seg:project>/serviceAccounts/<seg:account>:signBlob"] == 1


def test_a_calendar_call_tells_the_delegated_user_from_the_service_account(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    calendar = CalendarEmulator(
        emulator.check_access_token,
        token_email=lambda token: (emulator.access_token_info(token) or {}).get("email"),
    )
    calendar_server = ServerThread(calendar.app.app).start()
    try:
        delegated = delegated_credentials(server, emulator)
        own = service_account.Credentials(
            iam.Signer(IamEndpoint(server.url), runtime_credentials(emulator), DELEGATOR),
            DELEGATOR,
            f"{server.url}/token",
            scopes=[CALENDAR_SCOPE],
        )

        def list_events(creds: Any) -> int:
            service = discovery.build(
                "calendar",
                "v3",
                credentials=creds,
                static_discovery=True,
                client_options={"api_endpoint": calendar_server.url + "/calendar/v3/"},
            )
            try:
                service.events().list(calendarId=CALENDAR_ID).execute()
            except HttpError as exc:
                return int(exc.resp.status)
            return 200

        calendar.store.forbid(CALENDAR_ID, DELEGATOR)  # shared with the teacher, not the SA
        assert list_events(delegated) == 200
        assert list_events(own) == 404
        calendar.store.forbid(CALENDAR_ID, TEACHER)
        assert list_events(delegated) == 404
    finally:
        calendar_server.stop()


def test_sign_jwt_signs_an_assertion_the_token_endpoint_accepts(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    now = int(time.time())
    claims = {
        "iss": DELEGATOR,
        "sub": TEACHER,
        "scope": CALENDAR_SCOPE,
        "aud": f"{server.url}/token",
        "iat": now,
        "exp": now + 600,
    }
    token = runtime_credentials(emulator).token
    response = iam_call(server, DELEGATOR, "signJwt", {"payload": json.dumps(claims)}, token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"keyId", "signedJwt"}
    header = jwt.get_unverified_header(body["signedJwt"])
    assert header["alg"] == "RS256"
    assert header["kid"] == body["keyId"] == delegator["key_id"]
    certificate = published_certificates(server, DELEGATOR)[body["keyId"]]
    public_key = x509.load_pem_x509_certificate(certificate.encode()).public_key()
    verified = jwt.decode(
        body["signedJwt"], public_key, algorithms=["RS256"], audience=claims["aud"]
    )
    assert verified == claims

    grant = requests.post(
        f"{server.url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": body["signedJwt"],
        },
        timeout=TIMEOUT,
    )
    assert grant.status_code == 200, grant.text
    info = emulator.access_token_info(grant.json()["access_token"])
    assert info is not None and info["subject"] == TEACHER


def test_sign_jwt_adds_an_hour_of_expiry_and_refuses_more_than_twelve(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    token = runtime_credentials(emulator).token
    before = int(time.time())
    signed = iam_call(server, DELEGATOR, "signJwt", {"payload": '{"sub": "x"}'}, token).json()
    claims = jwt.decode(signed["signedJwt"], options={"verify_signature": False})
    assert before + 3600 <= claims["exp"] <= int(time.time()) + 3600
    for exp in (before + 13 * 3600, before - 10, "soon"):
        payload = json.dumps({"sub": "x", "exp": exp})
        answer = iam_call(server, DELEGATOR, "signJwt", {"payload": payload}, token)
        assert answer.status_code == 400, exp
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    for payload in ("not json", "[1, 2]", ""):
        answer = iam_call(server, DELEGATOR, "signJwt", {"payload": payload}, token)
        assert answer.status_code == 400, payload


def test_sign_blob_signs_with_the_published_key(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    token = runtime_credentials(emulator).token
    data = b"header.payload"
    body = {"payload": base64.b64encode(data).decode()}
    answer = iam_call(server, delegator["unique_id"], "signBlob", body, token)  # by unique id
    assert answer.status_code == 200, answer.text
    signed = answer.json()
    certificate = published_certificates(server, DELEGATOR)[signed["keyId"]]
    public_key = x509.load_pem_x509_certificate(certificate.encode()).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        base64.b64decode(signed["signedBlob"]), data, padding.PKCS1v15(), hashes.SHA256()
    )
    jwks = requests.get(f"{server.url}/service_accounts/v1/jwk/{DELEGATOR}", timeout=TIMEOUT)
    assert [k["kid"] for k in jwks.json()["keys"]] == [signed["keyId"]]


def test_callers_need_a_valid_token_with_the_cloud_platform_scope(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    payload = {"payload": '{"sub": "x"}'}
    missing = iam_call(server, DELEGATOR, "signJwt", payload, None)
    assert missing.status_code == 401
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert iam_call(server, DELEGATOR, "signJwt", payload, "ya29.unknown").status_code == 401
    narrow = runtime_credentials(emulator, scopes=[CALENDAR_SCOPE]).token
    scoped = iam_call(server, DELEGATOR, "signJwt", payload, narrow)
    assert scoped.status_code == 403
    assert scoped.json()["error"]["status"] == "PERMISSION_DENIED"
    iam_scope = runtime_credentials(emulator, scopes=["https://www.googleapis.com/auth/iam"])
    assert iam_call(server, DELEGATOR, "signJwt", payload, iam_scope.token).status_code == 200


def test_unknown_accounts_and_callers_without_the_role_look_alike(
    server: ServerThread, emulator: OAuthEmulator
) -> None:
    token = runtime_credentials(emulator).token
    payload = {"payload": '{"sub": "x"}'}
    unknown = iam_call(
        server, "ghost@classes-test.iam.gserviceaccount.com", "signJwt", payload, token
    )
    assert unknown.status_code == 403
    assert "iam.serviceAccounts.signJwt" in unknown.json()["error"]["message"]
    requests.post(
        f"{server.url}/_emulator/oauth/service-accounts",
        json={"client_email": DELEGATOR, "token_creators": ["someone-else@classes.example"]},
        timeout=TIMEOUT,
    ).raise_for_status()
    denied = iam_call(server, DELEGATOR, "signJwt", payload, token)
    assert denied.status_code == 403
    assert denied.json()["error"] == unknown.json()["error"]
    requests.post(
        f"{server.url}/_emulator/oauth/service-accounts",
        json={"client_email": DELEGATOR, "token_creators": [RUNTIME]},
        timeout=TIMEOUT,
    ).raise_for_status()
    assert iam_call(server, DELEGATOR, "signJwt", payload, token).status_code == 200
    signer = iam.Signer(IamEndpoint(server.url), runtime_credentials(emulator), "ghost@x.test")
    with pytest.raises(TransportError):
        signer.sign(b"anything")


def test_the_project_must_be_the_wildcard_and_delegates_must_exist(
    server: ServerThread, emulator: OAuthEmulator, delegator: dict[str, Any]
) -> None:
    token = runtime_credentials(emulator).token
    named = requests.post(
        f"{server.url}/v1/projects/classes-test/serviceAccounts/{DELEGATOR}:signJwt",
        json={"payload": "{}"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert named.status_code == 400
    body = {"payload": "{}", "delegates": ["projects/-/serviceAccounts/ghost@x.test"]}
    assert iam_call(server, DELEGATOR, "signJwt", body, token).status_code == 403
    body["delegates"] = ["ghost@x.test"]
    assert iam_call(server, DELEGATOR, "signJwt", body, token).status_code == 400
    body["delegates"] = [f"projects/-/serviceAccounts/{DELEGATOR}"]
    assert iam_call(server, DELEGATOR, "signJwt", body, token).status_code == 200


def test_delegation_refused_for_an_account_without_it(
    server: ServerThread, emulator: OAuthEmulator
) -> None:
    requests.post(
        f"{server.url}/_emulator/oauth/service-accounts",
        json={"client_email": DELEGATOR, "delegation_allowed": False},
        timeout=TIMEOUT,
    ).raise_for_status()
    credentials = delegated_credentials(server, emulator)
    with pytest.raises(RefreshError, match="unauthorized_client"):
        credentials.refresh(Request())
