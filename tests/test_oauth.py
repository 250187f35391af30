"""Google authorization against the OAuth and Secret Manager emulators.

The consent flow runs through the real functions (oauth_start -> the emulator's consent
screen -> oauth_callback), redirects followed by hand; the credentials provider runs through
the real Calendar path (google-auth, googleapiclient, the Calendar emulator).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import google.auth.transport.requests
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import secretmanager

from devstack.client import StackClient
from devstack.stack import LocalStack
from shared.adapters.clients import reset_clients, secret_manager_client
from shared.adapters.google_calendar import calendar_api
from shared.adapters.google_credentials import (
    CALENDAR_SCOPES,
    RefreshTokenCredentials,
    calendar_credentials,
)
from shared.adapters.secret_manager import read_secret
from shared.clock import Deadline
from shared.config import get_settings
from shared.errors import ReauthorizationRequired
from shared.services.consent import sign_state

TIMEOUT = 15
SA_EMAIL = "classes-scheduler@demo-virtual-classes.iam.gserviceaccount.com"
WORKSPACE_USER = "agenda@escuela.example.com"
REFRESH_SECRET = "google-calendar-refresh-token"


@pytest.fixture(autouse=True)
def seeded_grant(stack: LocalStack, client: StackClient) -> Iterator[None]:
    """Every test starts (and leaves) the stack with its seeded grant, stored and valid."""
    _restore_seeded_grant(stack, client)
    yield
    _restore_seeded_grant(stack, client)


def _restore_seeded_grant(stack: LocalStack, client: StackClient) -> None:
    assert stack.emulators is not None
    requests.post(f"{_oauth(client)}/_emulator/oauth/reset", timeout=TIMEOUT).raise_for_status()
    stack.emulators.secretmanager.seed(
        stack.project_id, REFRESH_SECRET, client.doc["oauth"]["refresh_token"].encode()
    )
    reset_clients()


# -- helpers ---------------------------------------------------------------------------
def _oauth(client: StackClient) -> str:
    return str(client.doc["emulators"]["oauth"])


def _control(client: StackClient, path: str, body: dict[str, Any] | None = None) -> Any:
    response = requests.post(
        f"{_oauth(client)}/_emulator/oauth/{path}", json=body or {}, timeout=TIMEOUT
    )
    response.raise_for_status()
    return response.json()


def _grants(client: StackClient) -> dict[str, int]:
    stats = requests.get(f"{_oauth(client)}/_emulator/oauth/stats", timeout=TIMEOUT).json()
    return dict(stats["grants"])


def _admin(client: StackClient) -> dict[str, str]:
    return {"X-API-Key": client.doc["secrets"]["admin_api_key"]}


def _start(client: StackClient) -> str:
    """oauth_start as an admin: the consent URL it redirects to."""
    response = requests.get(
        client.doc["functions"]["oauth_start"],
        headers=_admin(client),
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert response.status_code == 302, response.text
    return str(response.headers["Location"])


def _consent(authorization_url: str) -> str:
    """The emulator's consent screen: where it sends the admin back."""
    response = requests.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302, response.text
    return str(response.headers["Location"])


def _callback(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=TIMEOUT)


def _connect(client: StackClient) -> requests.Response:
    return _callback(_consent(_start(client)))


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _versions() -> list[tuple[str, str, str]]:
    """(name, state, value) of every refresh-token version, oldest first."""
    sm = secret_manager_client()
    parent = f"projects/{get_settings().project_id}/secrets/{REFRESH_SECRET}"
    found = []
    for version in sm.list_secret_versions(parent=parent):
        state = secretmanager.SecretVersion.State(version.state).name
        value = ""
        if state == "ENABLED":
            value = sm.access_secret_version(name=version.name).payload.data.decode()
        found.append((version.name, state, value))
    return sorted(found, key=lambda v: int(v[0].rsplit("/", 1)[1]))


def _status(client: StackClient) -> dict[str, Any]:
    return client.db.collection("integrations").document("google_calendar").get().to_dict() or {}


def _list_events() -> Any:
    return calendar_api().list_events({"maxResults": 1}, Deadline(10))


def _log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


# -- oauth_start -------------------------------------------------------------------------
def test_only_admins_may_start_a_consent(client: StackClient) -> None:
    url = client.doc["functions"]["oauth_start"]
    outsider = _control(
        client, "id-token", {"email": "student@example.com", "audience": "local-virtual-classes"}
    )["id_token"]

    anonymous = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    wrong_key = requests.get(url, headers={"X-API-Key": "nope"}, timeout=TIMEOUT)
    not_admin = requests.get(url, headers={"Authorization": f"Bearer {outsider}"}, timeout=TIMEOUT)

    assert [anonymous.status_code, wrong_key.status_code, not_admin.status_code] == [401, 401, 403]
    assert list(client.db.collection("oauth_states").stream()) == []


def test_consent_url_asks_for_offline_calendar_access_with_pkce(client: StackClient) -> None:
    admin_token = _control(
        client, "id-token", {"email": "admin@example.com", "audience": "local-virtual-classes"}
    )["id_token"]
    response = requests.get(
        client.doc["functions"]["oauth_start"],
        headers={"Authorization": f"Bearer {admin_token}"},
        allow_redirects=False,
        timeout=TIMEOUT,
    )

    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(client.doc["oauth"]["auth_uri"] + "?")
    params = _query(location)
    assert set(params["scope"].split()) == {
        "openid",
        "https://www.googleapis.com/auth/userinfo.email",
        *CALENDAR_SCOPES,
    }
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"
    assert params["include_granted_scopes"] == "true"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == client.doc["functions"]["oauth_callback"]
    assert params["login_hint"] == "admin@example.com"
    nonce = params["state"].split(".")[0]
    state = client.db.collection("oauth_states").document(nonce).get().to_dict()
    assert state["requestedBy"] == "admin@example.com"
    assert 590 < state["expiresAt"].timestamp() - time.time() <= 600


def test_admin_page_can_ask_for_the_consent_url_as_json(client: StackClient) -> None:
    response = requests.get(
        client.doc["functions"]["oauth_start"],
        headers={**_admin(client), "Accept": "application/json"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["authorizationUrl"].startswith(client.doc["oauth"]["auth_uri"] + "?")
    assert _callback(_consent(body["authorizationUrl"])).status_code == 200


# -- oauth_callback ----------------------------------------------------------------------
def test_consent_round_trip_stores_a_new_refresh_token_and_records_the_connection(
    client: StackClient,
) -> None:
    seeded = client.doc["oauth"]["refresh_token"]

    page = _connect(client)

    assert page.status_code == 200, page.text
    assert "Google Calendar conectado" in page.text
    assert "Google Calendar connected" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    *older, newest = _versions()
    assert newest[1] == "ENABLED"
    assert newest[2] not in ("", seeded)
    assert older and all(state == "DISABLED" for _, state, _ in older)
    status = _status(client)
    assert status["status"] == "connected"
    assert status["connectedBy"] == "admin@example.com"
    assert status["requestedBy"] == "api-key"
    assert set(CALENDAR_SCOPES) <= set(status["scopes"])
    assert status["calendarId"] == client.doc["calendar_id"]
    assert status["secretVersion"] == newest[0]
    assert newest[2] not in json.dumps(status, default=str)
    # The new grant is the one Calendar calls use from now on.
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    assert client.notify(payment["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"


def test_forged_or_unknown_state_is_refused_and_nothing_is_stored(client: StackClient) -> None:
    callback = _consent(_start(client))
    params = _query(callback)
    state = params["state"]
    versions_before = _versions()
    key = read_secret(get_settings().secrets.oauth_state_key)
    nonce, expires, _ = state.split(".")
    forged = [
        state[:-2] + ("AA" if not state.endswith("AA") else "BB"),  # signature altered
        sign_state("not-our-key", nonce, int(expires)),
        sign_state(key, "never-issued", int(time.time()) + 300),  # signed, never recorded
        "",
        "garbage",
    ]

    answers = [
        requests.get(
            client.doc["functions"]["oauth_callback"],
            params={"code": params["code"], "state": bad},
            timeout=TIMEOUT,
        )
        for bad in forged
    ]

    assert [a.status_code for a in answers] == [400] * len(forged)
    assert all("Enlace no válido" in a.text and "Invalid link" in a.text for a in answers)
    assert _versions() == versions_before
    assert _status(client) == {}
    # The genuine state was not spent by the forgeries.
    assert _callback(callback).status_code == 200


@pytest.mark.parametrize(
    "state",
    ["é.1.x", "a.².x", "a." + "9" * 5000 + ".x", "a.1." + "é" * 43, "a" * 65 + ".1." + "A" * 43],
    ids=["non-ascii nonce", "superscript expiry", "5000-digit expiry", "non-ascii sig", "long"],
)
def test_a_state_that_is_not_ascii_or_too_long_shows_the_invalid_link_page(
    client: StackClient, state: str
) -> None:
    versions_before = _versions()

    answer = requests.get(
        client.doc["functions"]["oauth_callback"],
        params={"code": "4/0whatever", "state": state},
        timeout=TIMEOUT,
    )

    assert answer.status_code == 400
    assert "Enlace no válido" in answer.text and "Invalid link" in answer.text
    assert _versions() == versions_before
    assert _status(client) == {}
    assert _grants(client) == {}


def test_a_rotated_state_key_is_accepted_by_a_warm_instance(
    client: StackClient, rotate: Callable[[str], str]
) -> None:
    started = _start(client)  # signed with the key this instance now keeps in its cache
    new_key = rotate("oauth-state-key")
    # The same consent as an instance started after the rotation would have begun it.
    nonce, expires, _ = _query(started)["state"].split(".")
    verifier = _b64(hmac.new(new_key.encode(), f"pkce:{nonce}".encode(), hashlib.sha256).digest())
    params = {
        **_query(started),
        "state": sign_state(new_key, nonce, int(expires)),
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
    }
    url = urlunsplit(urlsplit(started)._replace(query=urlencode(params)))

    answer = _callback(_consent(url))

    assert answer.status_code == 200, answer.text
    assert _status(client)["status"] == "connected"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_expired_state_is_refused(client: StackClient) -> None:
    key = read_secret(get_settings().secrets.oauth_state_key)
    nonce = "expired-" + uuid.uuid4().hex
    issued = time.time() - 660
    client.db.collection("oauth_states").document(nonce).set(
        {"requestedBy": "api-key", "expiresAt": issued + 600}
    )
    state = sign_state(key, nonce, int(issued) + 600)

    answer = requests.get(
        client.doc["functions"]["oauth_callback"],
        params={"code": "4/0whatever", "state": state},
        timeout=TIMEOUT,
    )

    assert answer.status_code == 400
    assert "El enlace venció" in answer.text and "The link expired" in answer.text
    assert _status(client) == {}
    assert _grants(client) == {}  # no code exchange was attempted


def test_reused_state_is_refused(client: StackClient) -> None:
    callback = _consent(_start(client))
    assert _callback(callback).status_code == 200
    versions = _versions()

    replay = _callback(callback)

    assert replay.status_code == 400
    assert "Enlace ya usado" in replay.text and "Link already used" in replay.text
    assert _versions() == versions


def test_access_denied_shows_a_clear_page_and_stores_nothing(client: StackClient) -> None:
    _control(client, "consent", {"deny": True})
    versions = _versions()

    page = _connect(client)

    assert page.status_code == 403
    assert "Acceso no concedido" in page.text and "Access not granted" in page.text
    assert _versions() == versions
    assert _status(client) == {}


def test_other_oauth_errors_show_what_google_said(client: StackClient) -> None:
    state = _query(_start(client))["state"]

    page = requests.get(
        client.doc["functions"]["oauth_callback"],
        params={"error": "invalid_scope", "state": state},
        timeout=TIMEOUT,
    )

    assert page.status_code == 400
    assert "invalid_scope" in page.text
    assert "Google devolvió un error" in page.text and "Google returned an error" in page.text


def test_missing_refresh_token_explains_how_to_consent_again(client: StackClient) -> None:
    _control(client, "settings", {"issueRefreshToken": False})
    versions = _versions()

    page = _connect(client)

    assert page.status_code == 400
    assert "https://myaccount.google.com/permissions" in page.text
    assert "refresh token" in page.text and "token de actualización" in page.text
    assert _versions() == versions
    assert _status(client) == {}


def test_consent_from_an_account_that_cannot_edit_the_calendar_is_refused_and_the_grant_stays(
    client: StackClient,
) -> None:
    calendar_emulator = str(client.doc["emulators"]["calendar"]).split("/calendar/v3/")[0]
    requests.post(
        f"{calendar_emulator}/_emulator/calendar/forbid",
        json={"calendarId": client.doc["calendar_id"], "email": "otra.cuenta@example.com"},
        timeout=TIMEOUT,
    ).raise_for_status()
    _control(client, "consent", {"email": "otra.cuenta@example.com"})
    versions = _versions()

    page = _connect(client)

    assert page.status_code == 403
    assert "Esa cuenta no puede editar el calendario" in page.text
    assert "That account cannot edit the calendar" in page.text
    assert "otra.cuenta@example.com" in page.text and client.doc["calendar_id"] in page.text
    assert _versions() == versions
    assert _status(client) == {}
    # The stored grant (another account) still creates events.
    booking_id = client.seed_booking()
    assert client.notify(client.create_payment(booking_id)["id"])["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"


# -- credentials provider ---------------------------------------------------------------
def test_access_token_is_kept_until_it_expires_then_refreshed(client: StackClient) -> None:
    for _ in range(3):
        _list_events()
    assert _grants(client) == {"refresh_token": 1}

    _control(client, "expire-access-tokens")
    _list_events()

    assert _grants(client) == {"refresh_token": 2}


def test_eight_concurrent_refreshes_make_one_token_request(client: StackClient) -> None:
    def in_eight_threads() -> None:
        barrier = threading.Barrier(8)

        def call(_: int) -> Any:
            barrier.wait()
            return _list_events()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(8)))

    in_eight_threads()  # no token yet: every thread needs one before its call
    assert _grants(client) == {"refresh_token": 1}

    _control(client, "expire-access-tokens")
    in_eight_threads()  # every thread's call answers 401 with the same dead token
    assert _grants(client) == {"refresh_token": 2}


def test_rotated_refresh_token_is_stored_as_a_new_version(client: StackClient) -> None:
    _control(client, "settings", {"rotateRefreshTokens": True, "revokeOldOnRotate": True})
    seeded = client.doc["oauth"]["refresh_token"]

    _list_events()

    *older, newest = _versions()
    assert newest[1] == "ENABLED" and newest[2] not in ("", seeded)
    assert all(state == "DISABLED" for _, state, _ in older)
    assert _status(client)["secretVersion"] == newest[0]
    # A new instance starts from the stored (rotated) token; the old one no longer works.
    _control(client, "settings", {"rotateRefreshTokens": False})
    reset_clients()
    _list_events()
    assert _grants(client) == {"refresh_token": 2}


def test_revoked_grant_marks_reconsent_answers_503_and_recovers_after_new_consent(
    client: StackClient, capfd: pytest.CaptureFixture[str]
) -> None:
    assert _connect(client).status_code == 200
    requests.post(
        f"{_oauth(client)}/revoke", data={"token": _versions()[-1][2]}, timeout=TIMEOUT
    ).raise_for_status()  # the admin removed the app's access
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    capfd.readouterr()

    first = client.notify(payment["id"])
    second = client.notify(payment["id"])

    assert [first["status"], second["status"]] == [503, 503]
    booking = client.booking(booking_id)
    assert booking["status"] == "paid"
    assert booking["calendarStatus"] == "pending_creation"
    status = _status(client)
    assert status["status"] == "needs_reconsent"
    assert status["reason"] == "invalid_grant"
    assert status["connectedBy"] == "admin@example.com"  # the record of who had connected stays
    refused = [
        line
        for line in _log_lines(capfd.readouterr().out)
        if line["severity"] == "ERROR" and "invalid_grant" in line["message"]
    ]
    assert len(refused) == 1
    assert _grants(client) == {"authorization_code": 1, "refresh_token": 1}
    assert client.events_for_booking(booking_id) == []

    assert _connect(client).status_code == 200
    redelivery = client.notify(payment["id"])

    assert redelivery["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"
    assert len(client.events_for_booking(booking_id)) == 1
    assert _status(client)["status"] == "connected"


def test_instance_that_saw_invalid_grant_picks_up_a_consent_made_elsewhere(
    client: StackClient,
) -> None:
    """Another instance (here: its own provider) finds the new grant in Secret Manager."""
    _control(client, "revoke-all")
    elsewhere = RefreshTokenCredentials()
    request = google.auth.transport.requests.Request()
    with pytest.raises(ReauthorizationRequired):
        elsewhere.refresh(request)
    with pytest.raises(ReauthorizationRequired):
        elsewhere.refresh(request)  # fails fast: no second token request
    assert _grants(client) == {"refresh_token": 1}

    assert _connect(client).status_code == 200
    time.sleep(5.2)  # past the fail-fast window
    elsewhere.refresh(request)

    assert elsewhere.valid
    assert _status(client)["status"] == "connected"


def test_warm_instance_refreshes_with_a_consent_made_elsewhere(client: StackClient) -> None:
    """Another instance, warm with the old grant, refreshes with the newly stored one."""
    elsewhere = RefreshTokenCredentials()
    request = google.auth.transport.requests.Request()
    elsewhere.refresh(request)
    _control(client, "consent", {"email": "nueva.admin@example.com"})
    assert _connect(client).status_code == 200
    # In this process the secret cache already holds the new version; another instance's
    # would within its lifetime (shared.adapters.secret_manager.CACHE_SECONDS).
    _control(client, "expire-access-tokens")
    headers: dict[str, str] = {}
    elsewhere.apply(headers)  # its next call is refused with the dead token

    elsewhere.refresh(request)

    info = requests.get(
        f"{_oauth(client)}/tokeninfo", params={"access_token": elsewhere.token}, timeout=TIMEOUT
    ).json()
    assert info["email"] == "nueva.admin@example.com"
    assert _grants(client) == {"refresh_token": 2, "authorization_code": 1}


def test_service_account_mode_signs_a_jwt_and_acts_for_a_workspace_user(
    client: StackClient, stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_service_account(client, tmp_path, monkeypatch, delegation_allowed=True)
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    delivery = client.notify(payment["id"])

    assert delivery["status"] == 200, delivery
    assert client.booking(booking_id)["status"] == "scheduled"
    assert _grants(client) == {"urn:ietf:params:oauth:grant-type:jwt-bearer": 1}
    assert stack.emulators is not None
    token = calendar_credentials().token
    assert token is not None
    info = stack.emulators.oauth.access_token_info(token)
    assert info is not None
    assert info["service_account"] == SA_EMAIL
    assert info["subject"] == WORKSPACE_USER
    assert set(CALENDAR_SCOPES) <= set(info["scopes"])


def test_service_account_without_delegation_answers_503_and_keeps_the_booking_paid(
    client: StackClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_service_account(client, tmp_path, monkeypatch, delegation_allowed=False)
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    delivery = client.notify(payment["id"])

    assert delivery["status"] == 503
    assert client.booking(booking_id)["status"] == "paid"
    status = _status(client)
    assert status["status"] == "needs_attention"
    assert status["mode"] == "service_account"
    assert status["reason"] == "unauthorized_client"


def _use_service_account(
    client: StackClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delegation_allowed: bool
) -> None:
    """A key made here, its public half registered with the emulator, used through ADC."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _control(
        client,
        "service-accounts",
        {
            "client_email": SA_EMAIL,
            "public_key_pem": public_pem.decode(),
            "key_id": "test-key-1",
            "delegation_allowed": delegation_allowed,
        },
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file = tmp_path / "service-account.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": client.doc["project_id"],
                "private_key_id": "test-key-1",
                "private_key": private_pem.decode(),
                "client_email": SA_EMAIL,
                "client_id": "100000000000000000001",
                "token_uri": client.doc["oauth"]["token_uri"],
            }
        )
    )
    monkeypatch.setenv("CALENDAR_AUTH", "service_account")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.setenv("CALENDAR_IMPERSONATE_SUBJECT", WORKSPACE_USER)
    reset_clients()


# -- logs ----------------------------------------------------------------------------------
def test_no_token_value_reaches_the_logs(
    client: StackClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    _control(client, "settings", {"rotateRefreshTokens": True})
    callback = _consent(_start(client))
    assert _callback(callback).status_code == 200
    _list_events()
    _control(client, "revoke-all")
    _control(client, "expire-access-tokens")
    with pytest.raises(ReauthorizationRequired):
        _list_events()

    captured = capfd.readouterr()
    logged = captured.out + captured.err + caplog.text
    secrets = [value for _, _, value in _versions() if value]
    secrets += [client.doc["oauth"]["refresh_token"], client.doc["oauth"]["client_secret"]]
    token = calendar_credentials().token
    assert token is None  # dropped with the revoked grant
    assert _log_lines(captured.out), "the functions' structured logs were captured"
    for value in secrets:
        assert value not in logged
    assert "ya29." not in logged  # access tokens
    assert "1//" not in logged  # refresh tokens
