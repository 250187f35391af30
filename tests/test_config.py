"""Settings are checked when first read: a bad value names its variable and answers 503.

The parsing tests need no stack; the last ones run the functions of the local stack with a
bad setting in their environment.
"""

from __future__ import annotations

import json

import pytest
import requests

from devstack.client import StackClient
from shared.adapters.clients import reset_clients
from shared.config import Settings, read_settings
from shared.errors import InvalidSettings
from shared.services.consent import sign_state

LOCAL_STACK_LIKE = {
    "GOOGLE_CLOUD_PROJECT": "demo-virtual-classes",
    "CALENDAR_ID": "clases@demo-virtual-classes.local",
    "CALENDAR_API_ENDPOINT": "http://127.0.0.1:9000/calendar/v3/",
    "SECRET_MANAGER_ENDPOINT": "http://127.0.0.1:9001",
    "MERCADOPAGO_API_BASE": "http://127.0.0.1:9002/",
    "ADMIN_EMAILS": "Admin@Example.com, ops@example.com",
    "HANDLER_BUDGET_SECONDS": "1.5",
    "MERCADOPAGO_ACCEPT_IPN": "FALSE",
    "PUBLIC_EVENTS_ENABLED": "yes",
    "CALENDAR_AUTH": "Service_Account",
    "CALENDAR_IMPERSONATE_SUBJECT": "agenda@escuela.example.com",
}


def test_an_empty_environment_gives_the_production_defaults() -> None:
    settings = read_settings({})

    assert settings == Settings(project_id="", calendar_id="primary")


def test_a_valid_environment_reads_as_documented() -> None:
    settings = read_settings(LOCAL_STACK_LIKE)

    assert settings.handler_budget_seconds == 1.5
    assert settings.accept_unsigned_ipn is False
    assert settings.public_events_enabled is True
    assert settings.calendar_auth == "service_account"
    assert settings.admin_emails == ("admin@example.com", "ops@example.com")
    assert settings.mercadopago_api_base == "http://127.0.0.1:9002"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("CALENDAR_AUTH", "service-account", "oauth, service_account"),
        ("HANDLER_BUDGET_SECONDS", "10s", "positive number"),
        ("UPSTREAM_TIMEOUT_SECONDS", "-5", "positive number"),
        ("WEBHOOK_TOLERANCE_SECONDS", "nan", "positive number"),
        ("CHANNEL_TTL_SECONDS", "0.0", "positive number"),
        ("CHANNEL_RENEW_BEFORE_SECONDS", "inf", "positive number"),
        ("MERCADOPAGO_ACCEPT_IPN", "maybe", "true or false"),
        ("PUBLIC_EVENTS_ENABLED", "sí", "true or false"),
        ("CALENDAR_API_ENDPOINT", "ftp://calendar.example.com/", "http(s) URL"),
        ("GOOGLE_CERTS_URL", "www.googleapis.com/oauth2/v1/certs", "http(s) URL"),
        ("MERCADOPAGO_API_BASE", "https:// api.mercadopago.com", "http(s) URL"),
        ("NOTIFICATIONS_URL", "http://[::1/notify", "http(s) URL"),
        ("OAUTH_REDIRECT_URI", "https://example.com:99999/oauth_callback", "http(s) URL"),
        ("ADMIN_EMAILS", "ana@example.com,luis", "email addresses"),
        ("SCHEDULER_INVOKER_EMAILS", "scheduler-invoker", "email addresses"),
        ("CALENDAR_IMPERSONATE_SUBJECT", "agenda", "an email address"),
        ("FIRESTORE_DATABASE", "Bookings_DB", "Firestore database id"),
        ("BOOKINGS_COLLECTION", "bookings/x/y", "collection id"),
        ("GOOGLE_CLOUD_PROJECT", "My Project", "project id"),
        ("SYNC_QUEUE", "calendar-sync", "a queue name"),
        ("SYNC_INTERVAL_SECONDS", "0", "positive number"),
    ],
)
def test_a_malformed_setting_names_the_variable_and_what_is_accepted_but_not_the_value(
    name: str, value: str, accepted: str
) -> None:
    with pytest.raises(InvalidSettings) as raised:
        read_settings({**LOCAL_STACK_LIKE, name: value})

    message = raised.value.message
    assert message.startswith(f"{name} must be"), message
    assert accepted in message
    assert value not in message
    assert InvalidSettings.status == 503 and InvalidSettings.retry


@pytest.mark.parametrize("word", ["true", "1", "YES", "On"])
def test_every_accepted_true_word_is_true(word: str) -> None:
    assert read_settings({"PUBLIC_EVENTS_ENABLED": word}).public_events_enabled is True


@pytest.mark.parametrize("word", ["false", "0", "No", "OFF"])
def test_every_accepted_false_word_is_false(word: str) -> None:
    assert read_settings({"MERCADOPAGO_ACCEPT_IPN": word}).accept_unsigned_ipn is False


def test_a_scheduler_audience_without_its_service_account_is_refused() -> None:
    with pytest.raises(InvalidSettings, match="SCHEDULER_INVOKER_EMAILS"):
        read_settings({"SCHEDULER_AUDIENCE": "https://example.com/renew_watch"})


def test_a_sync_queue_without_its_target_and_identity_is_refused() -> None:
    queue = "projects/demo-virtual-classes/locations/southamerica-east1/queues/calendar-sync"
    with pytest.raises(InvalidSettings, match="NOTIFICATIONS_URL and TASKS_INVOKER_EMAIL"):
        read_settings({"SYNC_QUEUE": queue, "NOTIFICATIONS_URL": "https://example.com/n"})


def test_a_sync_interval_over_a_minute_is_refused() -> None:
    with pytest.raises(InvalidSettings, match="SYNC_INTERVAL_SECONDS must be at most 60"):
        read_settings({"SYNC_INTERVAL_SECONDS": "300"})


# -- through the running functions -------------------------------------------------------------


def _error_lines(out: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("severity") == "ERROR"]


def test_an_unknown_calendar_auth_answers_503_and_is_logged_once_as_error(
    client: StackClient, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALENDAR_AUTH", "service-account")
    reset_clients()
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    capfd.readouterr()

    answers = [client.notify(payment["id"]) for _ in range(3)]

    assert [a["status"] for a in answers] == [503, 503, 503]  # Mercado Pago delivers again
    assert client.booking(booking_id)["status"] == "awaiting_payment"
    assert client.events_for_booking(booking_id) == []
    out, _ = capfd.readouterr()
    [logged] = _error_lines(out)
    assert "CALENDAR_AUTH" in str(logged["detail"])
    assert "service-account" not in out


def test_a_malformed_budget_answers_503_instead_of_crashing(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDLER_BUDGET_SECONDS", "10s")
    reset_clients()

    response = requests.get(
        client.doc["functions"]["list_events"],
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=10,
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["error"]["code"] == "invalid_settings"
    assert "HANDLER_BUDGET_SECONDS" in response.json()["error"]["message"]


def test_a_malformed_setting_shows_the_unavailable_page_at_the_oauth_callback(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MERCADOPAGO_ACCEPT_IPN", "maybe")
    reset_clients()

    state = sign_state("some-key", "some-nonce", 1_900_000_000)  # well-formed: it is checked

    response = requests.get(
        client.doc["functions"]["oauth_callback"], params={"state": state, "code": "y"}, timeout=10
    )

    assert response.status_code == 503
    assert "Service unavailable" in response.text
    assert list(client.db.collection("oauth_states").stream()) == []
