"""A client of a running local stack, for the demo, the tests and the benchmarks.

It only uses what `stack.json` describes: the emulators' HTTP APIs (through the real
Google client libraries) and their `/_emulator/` control routes.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import google.oauth2.credentials
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from googleapiclient import discovery

from devstack.when import CLASS_DAYS_AHEAD, iso
from shared.clock import TIME_ZONE


class StackClient:
    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.http = requests.Session()
        self._firestore: firestore.Client | None = None
        self._calendar: Any = None

    # -- Firestore -------------------------------------------------------------------
    @property
    def db(self) -> firestore.Client:
        if self._firestore is None:
            os.environ["FIRESTORE_EMULATOR_HOST"] = self.doc["emulators"]["firestore"]
            self._firestore = firestore.Client(
                project=self.doc["project_id"], credentials=AnonymousCredentials()
            )
        return self._firestore

    def seed_booking(self, booking_id: str | None = None, **overrides: Any) -> str:
        """A booking as the platform creates it: awaiting payment, with a preference."""
        booking_id = booking_id or f"bk-{uuid.uuid4().hex[:12]}"
        doc: dict[str, Any] = {
            "status": "awaiting_payment",
            "classId": "algebra-1",
            "classTitle": "Álgebra I",
            "teacher": {"id": "t-ana", "name": "Ana Gómez", "email": "ana.gomez@example.com"},
            "student": {"id": "s-juan", "name": "Juan Pérez", "email": "juan.perez@example.com"},
            "start": iso(CLASS_DAYS_AHEAD, 18),
            "end": iso(CLASS_DAYS_AHEAD, 19),
            "timeZone": TIME_ZONE,
            "price": {"amount": 15000, "currency": "ARS"},
            "preferenceId": f"pref-{booking_id}",
            "createdAt": firestore.SERVER_TIMESTAMP,
        }
        doc.update(overrides)
        self.db.collection("bookings").document(booking_id).set(doc)
        return booking_id

    def booking(self, booking_id: str) -> dict[str, Any]:
        return self.db.collection("bookings").document(booking_id).get().to_dict() or {}

    # -- Mercado Pago emulator -------------------------------------------------------
    def _mp(self, method: str, path: str, body: Any = None) -> Any:
        url = self.doc["emulators"]["mercadopago"] + path
        response = self.http.request(method, url, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def create_payment(self, booking_id: str | None, **fields: Any) -> dict[str, Any]:
        body = {
            "status": "approved",
            "transaction_amount": 15000,
            "currency_id": "ARS",
            "payer": {"email": "juan.perez@example.com"},
            **fields,
        }
        if booking_id is not None:
            body.setdefault("external_reference", booking_id)
            body.setdefault("preference_id", f"pref-{booking_id}")
        result: dict[str, Any] = self._mp("POST", "/_emulator/mercadopago/payments", body)
        return result

    def webhook_url(self) -> str:
        return self.doc["functions"]["payment_webhook"] + "?source_news=webhooks"

    def notify(self, payment_id: Any, **options: Any) -> dict[str, Any]:
        """Have the emulator deliver a signed notification to payment_webhook."""
        body = {
            "url": self.webhook_url(),
            "secret": self.doc["secrets"]["mercadopago_webhook_secret"],
            **options,
        }
        result: dict[str, Any] = self._mp(
            "POST", f"/_emulator/mercadopago/payments/{payment_id}/notify", body
        )
        return result

    def mercadopago_access_token(self) -> str:
        """The stack's Mercado Pago access token, read from Secret Manager as the functions do.

        `stack.json` names the Secret Manager emulator, not the token, so a rotated token is the
        one used here too.
        """
        url = (
            f"{self.doc['emulators']['secretmanager']}/v1/projects/{self.doc['project_id']}"
            "/secrets/mercadopago-access-token/versions/latest:access"
        )
        response = self.http.get(url, timeout=10)
        response.raise_for_status()
        data: str = response.json()["payload"]["data"]
        return base64.b64decode(data).decode()

    def refund_payment(
        self, payment_id: Any, amount: float | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Refund through Mercado Pago's real route, as the merchant's back office would.

        No amount refunds what remains. Without a key a fresh one is made, as the official SDKs
        do; the same key again replays the request without refunding twice. A refusal raises
        `requests.HTTPError` carrying Mercado Pago's answer. The emulator then notifies
        payment_webhook by itself: `webhook_deliveries(wait=1)` waits for that.
        """
        headers = {
            "Authorization": f"Bearer {self.mercadopago_access_token()}",
            "X-Idempotency-Key": idempotency_key or str(uuid.uuid4()),
        }
        body = {} if amount is None else {"amount": amount}
        url = f"{self.doc['emulators']['mercadopago']}/v1/payments/{payment_id}/refunds"
        response = self.http.post(url, json=body, headers=headers, timeout=30)
        response.raise_for_status()
        refund: dict[str, Any] = response.json()
        return refund

    def webhook_deliveries(self, wait: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The notifications the emulator sent by itself, after waiting for `wait` of them."""
        response = self.http.get(
            f"{self.doc['emulators']['mercadopago']}/_emulator/mercadopago/deliveries",
            params={"wait": wait, "timeout": timeout},
            timeout=timeout + 30,
        )
        response.raise_for_status()
        deliveries: list[dict[str, Any]] = response.json()["deliveries"]
        return deliveries

    # -- Google Calendar emulator ----------------------------------------------------
    @property
    def calendar(self) -> Any:
        if self._calendar is None:
            oauth = self.doc["oauth"]
            creds = google.oauth2.credentials.Credentials(
                token=None,
                refresh_token=oauth["refresh_token"],
                token_uri=oauth["token_uri"],
                client_id=oauth["client_id"],
                client_secret=oauth["client_secret"],
            )
            self._calendar = discovery.build(
                "calendar",
                "v3",
                credentials=creds,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self.doc["emulators"]["calendar"]},
            )
        return self._calendar

    def event(self, event_id: str) -> dict[str, Any]:
        """The event as Google would return it (cancelled ones too)."""
        event: dict[str, Any] = (
            self.calendar.events()
            .get(calendarId=self.doc["calendar_id"], eventId=event_id)
            .execute()
        )
        return event

    def invitations(self, event_id: str = "", action: str = "") -> list[dict[str, Any]]:
        """The emails the Calendar emulator recorded, for one event (or all) and of one kind
        (or every kind)."""
        base = self.doc["emulators"]["calendar"].split("/calendar/v3/")[0]
        log = self.http.get(f"{base}/_emulator/calendar/invitations", timeout=10).json()["log"]
        return [
            i
            for i in log
            if (not event_id or i["eventId"] == event_id) and (not action or i["action"] == action)
        ]

    def events_for_booking(self, booking_id: str) -> list[dict[str, Any]]:
        result = (
            self.calendar.events()
            .list(
                calendarId=self.doc["calendar_id"],
                privateExtendedProperty=f"bookingId={booking_id}",
            )
            .execute()
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    # -- control routes shared by every emulator -------------------------------------
    def _control_url(self, emulator: str) -> str:
        url: str = self.doc["emulators"][emulator]
        return url.split("/calendar/v3/")[0]

    def set_faults(self, emulator: str, plan: dict[str, Any]) -> None:
        self.http.post(f"{self._control_url(emulator)}/_emulator/faults", json=plan, timeout=10)

    def clear_faults(self, emulator: str) -> None:
        self.http.delete(f"{self._control_url(emulator)}/_emulator/faults", timeout=10)

    def stats(self, emulator: str) -> dict[str, int]:
        response = self.http.get(f"{self._control_url(emulator)}/_emulator/stats", timeout=10)
        calls: dict[str, int] = response.json()["calls"]
        return calls

    def reset_stats(self, emulator: str) -> None:
        self.http.post(f"{self._control_url(emulator)}/_emulator/stats/reset", timeout=10)
