"""Service-account mode on the local stack: domain-wide delegation without a key file.

The function's runtime identity (on Cloud Functions, the metadata server's token; here a
token the OAuth emulator mints for that identity, standing in for the metadata server) asks
the IAM Credentials API (the OAuth emulator's signBlob) to sign the delegating account's
JWT, and Calendar sees the delegated user: the students are invited.
"""

from __future__ import annotations

import google.auth
import google.auth.credentials
import pytest

from devstack.client import StackClient
from devstack.stack import LocalStack
from shared.adapters.clients import reset_clients

RUNTIME = "fn-payment-webhook@demo-virtual-classes.iam.gserviceaccount.com"
DELEGATE = "calendar-delegate@demo-virtual-classes.iam.gserviceaccount.com"
ORGANIZER = "clases@demo-virtual-classes.local"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture
def runtime_identity(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Application Default Credentials as on Cloud Functions: no key, just a token."""
    assert stack.emulators is not None
    oauth = stack.emulators.oauth
    oauth.add_service_account(DELEGATE, token_creators=[RUNTIME])

    class MetadataServer(google.auth.credentials.Credentials):
        """Tokens of the runtime identity, fetched anew on refresh, as from a metadata server."""

        def refresh(self, request: object) -> None:
            self.token = oauth.mint_access_token(scopes=[CLOUD_PLATFORM], email=RUNTIME)

    def metadata_server(scopes: object = None) -> tuple[object, str]:
        return MetadataServer(), "demo-virtual-classes"

    monkeypatch.setattr(google.auth, "default", metadata_server)
    monkeypatch.setenv("CALENDAR_AUTH", "service_account")
    reset_clients()


def test_students_are_invited_through_delegation_without_a_key_file(
    client: StackClient, runtime_identity: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALENDAR_IMPERSONATE_SUBJECT", ORGANIZER)
    monkeypatch.setenv("CALENDAR_SERVICE_ACCOUNT", DELEGATE)
    reset_clients()
    booking_id = client.seed_booking()

    assert client.notify(client.create_payment(booking_id)["id"])["status"] == 200

    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    event = client.event(booking["googleEventId"])
    assert {a["email"] for a in event["attendees"]} >= {"juan.perez@example.com"}


def test_a_service_account_without_delegation_cannot_invite(
    client: StackClient, runtime_identity: None
) -> None:
    booking_id = client.seed_booking()

    delivery = client.notify(client.create_payment(booking_id)["id"])

    assert delivery["status"] == 200  # acknowledged: a retry cannot fix it, admins are told
    booking = client.booking(booking_id)
    assert (booking["status"], booking["calendarStatus"]) == ("paid", "rejected")
    assert "forbiddenForServiceAccounts" in booking["calendarError"]
