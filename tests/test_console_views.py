"""admin_console without a browser: its headers, files, read views and the mark-handled call.

The browser scenarios are in test_admin_console.py; here each answer is checked as data,
against the local stack (the functions run in this process).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import requests

from devstack.client import StackClient
from devstack.when import CLASS_DAYS_AHEAD, iso
from shared.views.attention import booking_item, issue_item
from shared.web import console

pytestmark = pytest.mark.usefixtures("stack")

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "functions" / "admin_console" / "static"


def _url(client: StackClient, path: str = "") -> str:
    return str(client.doc["site"]["functions"]["admin_console"]) + path


def _id_token(client: StackClient, email: str = "") -> str:
    body = {
        "email": email or client.doc["admin_email"],
        "audience": client.doc["env"]["ID_TOKEN_AUDIENCE"],
    }
    response = requests.post(
        client.doc["emulators"]["oauth"] + "/_emulator/oauth/id-token", json=body, timeout=10
    )
    response.raise_for_status()
    return str(response.json()["id_token"])


def _bearer(client: StackClient, email: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {_id_token(client, email)}"}


def _api_key(client: StackClient) -> dict[str, str]:
    return {"X-API-Key": client.doc["secrets"]["admin_api_key"]}


def _view(client: StackClient, view: str, headers: dict[str, str] | None = None) -> Any:
    return requests.get(
        _url(client), params={"view": view}, headers=headers or _bearer(client), timeout=30
    )


def _mark(client: StackClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return requests.post(_url(client), json=body, headers=headers or _bearer(client), timeout=30)


# -- the page and its files -----------------------------------------------------------------


def test_the_page_is_served_with_a_strict_policy_and_never_framed(client: StackClient) -> None:
    response = requests.get(_url(client), timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    config = re.search(r'<meta name="console-config" content="([^"]*)">', response.text)
    assert config is not None
    assert json.loads(html.unescape(config[1]))["signIn"] == {
        "mode": "emulator",
        "clientId": client.doc["env"]["ID_TOKEN_AUDIENCE"],
        "emulator": client.doc["emulators"]["oauth"],
    }


def test_production_lets_google_identity_services_in_and_nothing_else() -> None:
    policy = console.content_security_policy("google")

    assert "script-src 'self' https://accounts.google.com/gsi/client;" in policy
    assert "frame-src https://accounts.google.com/gsi/;" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy and "*" not in policy


def test_the_files_are_served_with_their_types_and_revalidated(client: StackClient) -> None:
    script = requests.get(_url(client, "/app.js"), timeout=10)
    style = requests.get(_url(client, "/console.css"), timeout=10)
    again = requests.get(
        _url(client, "/app.js"), headers={"If-None-Match": script.headers["ETag"]}, timeout=10
    )
    missing = requests.get(_url(client, "/nothing.js"), timeout=10)

    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert script.content == (STATIC / "app.js").read_bytes()
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    assert again.status_code == 304
    assert missing.status_code == 404
    assert missing.headers["X-Frame-Options"] == "DENY"


def test_no_inline_script_style_or_handler_in_the_page() -> None:
    page = (STATIC / "index.html").read_text()

    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert "<style" not in page and " style=" not in page
    assert re.findall(r"\son[a-z]+=", page) == []


@pytest.mark.parametrize("script", sorted(p.name for p in STATIC.glob("*.js")))
def test_scripts_write_values_as_text_never_as_markup(script: str) -> None:
    source = (STATIC / script).read_text()

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, f"{script} uses {sink}"
    assert "new Function" not in source and 'setAttribute("on' not in source


def test_the_staged_function_ships_its_files(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "deploy.sh"), "--stage-only", "admin_console"],
        env={**os.environ, "BUILD_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    staged = tmp_path / "admin_console" / "static"
    assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in STATIC.iterdir())


# -- who may read and change ---------------------------------------------------------------


@pytest.mark.parametrize("view", ["attention", "health"])
def test_views_are_for_admins(client: StackClient, view: str) -> None:
    assert _view(client, view, headers={"Accept": "application/json"}).status_code == 401
    assert _view(client, view, _bearer(client, "intruso@example.com")).status_code == 403
    assert _view(client, view, _api_key(client)).status_code == 200
    answer = _view(client, view)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"


def test_an_unknown_view_is_a_400(client: StackClient) -> None:
    response = _view(client, "secrets")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_changes_take_a_person_s_id_token_never_the_api_key(client: StackClient) -> None:
    booking_id = client.seed_booking(needsAttention="event_cancelled", status="cancelled")
    body = {"action": "mark_handled", "itemId": f"booking:{booking_id}", "kind": "event_cancelled"}

    with_key = _mark(client, body, _api_key(client))
    stranger = _mark(client, body, _bearer(client, "intruso@example.com"))
    nobody = _mark(client, body, {"Content-Type": "application/json"})

    assert with_key.status_code == 403
    assert "ID token" in with_key.json()["error"]["message"]
    assert stranger.status_code == 403
    assert nobody.status_code == 401
    assert client.db.collection("attention_handled").get() == []


# -- needs attention -------------------------------------------------------------------------


def test_attention_lists_bookings_and_payment_issues_with_what_can_be_done(
    client: StackClient,
) -> None:
    cancelled_in_google = client.seed_booking(
        status="cancelled",
        needsAttention="event_cancelled",
        paymentId="123",
        paymentStatus="approved",
        htmlLink="https://calendar.example/e",
    )
    client.seed_booking()  # nothing to look at
    unknown = client.create_payment(None, external_reference="no-such-booking")
    assert client.notify(unknown["id"])["status"] == 200

    body = _view(client, "attention").json()

    by_id = {item["id"]: item for item in body["items"]}
    booking = by_id[f"booking:{cancelled_in_google}"]
    assert booking["kind"] == "event_cancelled"
    assert booking["actions"] == ["refund", "open_event", "mark_handled"]
    assert booking["booking"]["student"] == {
        "name": "Juan Pérez",
        "email": "juan.perez@example.com",
    }
    assert booking["booking"]["start"] == iso(CLASS_DAYS_AHEAD, 18)
    issue = by_id[f"issue:{unknown['id']}-unknown_booking"]
    assert issue["kind"] == "unknown_booking" and issue["paymentId"] == str(unknown["id"])
    assert issue["when"].endswith("-03:00")
    assert len(body["items"]) == 2
    assert body["handled"] == [] and body["truncated"] is False


def test_marking_handled_keeps_what_happened_and_answers_the_same_twice(
    client: StackClient,
) -> None:
    booking_id = client.seed_booking(status="cancelled", needsAttention="event_cancelled")
    body = {
        "action": "mark_handled",
        "itemId": f"booking:{booking_id}",
        "kind": "event_cancelled",
        "note": "Reembolsado por transferencia",
    }

    first = _mark(client, body)
    second = _mark(client, {**body, "note": "otra nota"}, _bearer(client))
    view = _view(client, "attention").json()

    assert first.status_code == second.status_code == 200
    assert first.json()["outcome"] == "handled" and second.json()["outcome"] == "already_handled"
    assert second.json()["handled"] == first.json()["handled"]
    assert first.json()["handled"]["by"] == client.doc["admin_email"]
    assert first.json()["handled"]["note"] == "Reembolsado por transferencia"
    assert view["items"] == []
    assert [item["id"] for item in view["handled"]] == [f"booking:{booking_id}"]
    assert client.booking(booking_id)["needsAttention"] == "event_cancelled"


def test_a_changed_item_is_a_409_and_an_unknown_one_a_404(client: StackClient) -> None:
    booking_id = client.seed_booking(status="cancelled", needsAttention="event_restored")
    body = {"action": "mark_handled", "itemId": f"booking:{booking_id}", "kind": "event_cancelled"}

    changed = _mark(client, body)
    unknown = _mark(client, {**body, "itemId": "issue:999-unknown_booking"})

    assert changed.status_code == 409
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"action": "delete", "itemId": "booking:b", "kind": "x"}, "action"),
        ({"action": "mark_handled", "itemId": "other:b", "kind": "x"}, "itemId"),
        ({"action": "mark_handled", "itemId": "booking:a/b", "kind": "x"}, "itemId"),
        ({"action": "mark_handled", "itemId": "booking:b", "kind": "X Y"}, "kind"),
        ({"action": "mark_handled", "itemId": "booking:b", "kind": "x", "note": "n" * 501}, "note"),
        ({"action": "mark_handled", "itemId": "booking:b", "kind": "x", "by": "me"}, "by"),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_field(
    client: StackClient, body: dict[str, Any], parameter: str
) -> None:
    response = _mark(client, body)

    assert response.status_code == 400
    assert parameter in response.json()["error"]["message"]


def test_items_say_what_can_be_done_from_the_booking_s_state() -> None:
    refundable = {"status": "cancelled", "paymentId": "1", "paymentStatus": "approved"}
    refunded = {**refundable, "refundId": "r1"}
    scheduled = {"status": "scheduled", "needsAttention": "meet_link_failed"}

    assert booking_item("a", refundable)["actions"] == ["refund", "mark_handled"]
    assert booking_item("a", refunded)["actions"] == ["mark_handled"]
    assert booking_item("a", scheduled)["actions"] == ["cancel", "mark_handled"]
    paid_after_cancel = issue_item("1-x", {"kind": "paid_cancelled_booking", "bookingId": "b"})
    assert paid_after_cancel["actions"] == ["refund", "mark_handled"]
    assert issue_item("1-x", {"kind": "booking_paid_twice"})["actions"] == ["mark_handled"]


# -- health ----------------------------------------------------------------------------------


def test_health_shows_the_grant_the_channel_the_sync_and_the_last_reconcile(
    client: StackClient,
) -> None:
    before = _view(client, "health").json()
    renewed = requests.post(
        client.doc["functions"]["renew_watch"], headers=_api_key(client), timeout=60
    )
    reconciled = requests.post(
        client.doc["functions"]["reconcile"], headers=_api_key(client), timeout=60
    )

    after = _view(client, "health").json()

    assert renewed.status_code == reconciled.status_code == 200
    assert before["grant"]["state"] == "connected"
    assert before["watch"]["state"] == "missing"
    assert before["reconcile"]["lastRunAt"] is None  # no sweep recorded: unknown
    assert after["watch"]["state"] == "ok"
    assert after["watch"]["channelId"].startswith("ch-")
    assert after["watch"]["expiration"].endswith("-03:00")
    assert after["sync"]["lastSyncAt"] is not None
    assert after["reconcile"]["lastRunAt"] is not None
    assert after["reconcile"]["caller"] == "api-key"
    assert after["reconcile"]["bookings"] == 0


def test_health_says_when_google_must_be_connected_again(client: StackClient) -> None:
    oauth = client.doc["emulators"]["oauth"]
    requests.post(f"{oauth}/_emulator/oauth/revoke-all", timeout=10).raise_for_status()
    try:
        grant = _view(client, "health").json()["grant"]
    finally:
        requests.post(f"{oauth}/_emulator/oauth/reset", timeout=10).raise_for_status()

    assert grant["state"] == "needs_reconsent"
    assert grant["check"]["code"] == "reauthorization_required"


# -- the OAuth emulator's sign-in page ---------------------------------------------------------


def test_the_emulator_s_sign_in_hands_back_an_id_token_in_the_fragment(
    client: StackClient,
) -> None:
    oauth = client.doc["emulators"]["oauth"]
    params = {
        "audience": client.doc["env"]["ID_TOKEN_AUDIENCE"],
        "redirect_uri": _url(client),
        "state": "s-1",
    }

    form = requests.get(f"{oauth}/_emulator/oauth/sign-in", params=params, timeout=10)
    back = requests.post(
        f"{oauth}/_emulator/oauth/sign-in",
        data={**params, "email": "Luisa@example.com"},
        allow_redirects=False,
        timeout=10,
    )

    assert form.status_code == 200 and 'name="email"' in form.text
    assert back.status_code == 303
    location = urlsplit(back.headers["Location"])
    assert location._replace(fragment="").geturl() == _url(client)
    fragment = parse_qs(location.fragment)
    assert fragment["state"] == ["s-1"]
    claims = pyjwt.decode(fragment["id_token"][0], options={"verify_signature": False})
    assert claims["aud"] == params["audience"] and claims["email"] == "Luisa@example.com"
    assert claims["email_verified"] is True
