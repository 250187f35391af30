"""Benchmark of payment_webhook on the local stack (`./dev.sh bench`).

Prints, for emulator latency 0 ms and a realistic value:
- p50/p95 of the handler (a signed delivery for a fresh approved booking, end to end over
  HTTP to its own functions-framework process) against the same upstream calls made
  directly from this process (payment read, booking read, event insert, booking commit):
  the ratio is what the handler adds on top of the work it must do (target <= 1.2);
- peak RSS of the serving process;
- upstream calls per approved booking (target: 1 Calendar write, 1 payment read, <= 3
  Firestore round trips) and per duplicate delivery (target: 0 Calendar calls).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import functions_framework
import psutil
import requests
from google.cloud import firestore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.client import StackClient
from devstack.instrument import firestore_rpcs
from devstack.stack import LocalStack
from shared.adapters.clients import firestore_client, reset_clients
from shared.adapters.google_calendar import class_event_body
from shared.domain.bookings import Booking


def signed_delivery(doc: dict[str, Any], payment_id: str) -> requests.PreparedRequest:
    secret = doc["secrets"]["mercadopago_webhook_secret"]
    request_id = str(uuid.uuid4())
    ts = str(int(time.time()))
    manifest = f"id:{payment_id};request-id:{request_id};ts:{ts};"
    v1 = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    body = {"type": "payment", "action": "payment.updated", "data": {"id": payment_id}}
    return requests.Request(
        "POST",
        doc["functions"]["payment_webhook"],
        params={"data.id": payment_id, "type": "payment", "source_news": "webhooks"},
        json=body,
        headers={"x-request-id": request_id, "x-signature": f"ts={ts},v1={v1}"},
    ).prepare()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def handler_latencies(client: StackClient, rounds: int) -> list[float]:
    session = requests.Session()
    timings = []
    for _ in range(rounds):
        booking_id = client.seed_booking()
        payment = client.create_payment(booking_id)
        request = signed_delivery(client.doc, str(payment["id"]))
        started = time.perf_counter()
        response = session.send(request, timeout=30)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return timings


def direct_latencies(client: StackClient, rounds: int) -> list[float]:
    """The same upstream work, made directly: the floor the handler cannot go below."""
    session = requests.Session()
    mp = client.doc["emulators"]["mercadopago"]
    access_token = _secret(client, "mercadopago-access-token")
    db = client.db
    timings = []
    for _ in range(rounds):
        booking_id = client.seed_booking()
        payment = client.create_payment(booking_id)
        started = time.perf_counter()
        session.get(
            f"{mp}/v1/payments/{payment['id']}",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=30,
        ).raise_for_status()
        booking_ref = db.collection("bookings").document(booking_id)
        claim_ref = db.collection("payment_claims").document(str(payment["id"]))
        snaps = {s.id: s for s in db.get_all([booking_ref, claim_ref])}
        booking = Booking.from_document(booking_id, snaps[booking_id].to_dict() or {})
        event = (
            client.calendar.events()
            .insert(
                calendarId=client.doc["calendar_id"],
                body=class_event_body(booking, str(payment["id"])),
                conferenceDataVersion=1,
                sendUpdates="all",
            )
            .execute()
        )
        batch = db.batch()
        # The same document the handler writes, server timestamps and field deletion included.
        written = {
            "status": "scheduled",
            "googleEventId": event["id"],
            "meetLink": event.get("hangoutLink"),
            "htmlLink": event.get("htmlLink"),
            "calendarStatus": event.get("status"),
            "conferenceStatus": "success",
            "calendarError": firestore.DELETE_FIELD,
            "paymentId": str(payment["id"]),
            "paymentStatus": "approved",
            "paymentStatusDetail": "accredited",
            "paidAt": firestore.SERVER_TIMESTAMP,
            "updatedAt": firestore.SERVER_TIMESTAMP,
        }
        batch.update(
            booking_ref,
            written,
            option=db.write_option(last_update_time=snaps[booking_id].update_time),
        )
        batch.create(claim_ref, {"bookingId": booking_id, "createdAt": firestore.SERVER_TIMESTAMP})
        batch.commit()
        timings.append(time.perf_counter() - started)
    return timings


def _secret(client: StackClient, secret_id: str) -> str:
    url = (
        f"{client.doc['emulators']['secretmanager']}/v1/projects/{client.doc['project_id']}"
        f"/secrets/{secret_id}/versions/latest:access"
    )
    data = requests.get(url, timeout=10).json()["payload"]["data"]
    return base64.b64decode(data).decode()


def calls_per_booking(client: StackClient) -> dict[str, Any]:
    """Run one delivery in this process to count Firestore RPCs beside the emulators' counts."""
    os.environ.update(client.doc["env"])
    app = functions_framework.create_app(
        "payment_webhook",
        str(Path(__file__).resolve().parent.parent / "functions/payment_webhook/main.py"),
    ).test_client()
    reset_clients()

    calendar_control = client.doc["emulators"]["calendar"].split("/calendar/v3/")[0]

    def deliver(payment_id: str) -> dict[str, Any]:
        prepared = signed_delivery(client.doc, payment_id)
        # Let the push channel's sync of earlier changes finish: its calls are not ours.
        requests.get(f"{calendar_control}/_emulator/calendar/deliveries?wait=1", timeout=30)
        for emulator in ("calendar", "mercadopago"):
            client.reset_stats(emulator)
        with firestore_rpcs(firestore_client()) as rpcs:
            response = app.post(
                prepared.path_url, data=prepared.body, headers=dict(prepared.headers)
            )
        assert response.status_code == 200, response.text
        calendar_calls = {
            route: count
            for route, count in client.stats("calendar").items()
            # events.list comes from the push channel's sync reacting to our insert
            if not (route.startswith("GET") and route.endswith("/events"))
        }
        return {
            "calendarWrites": sum(v for k, v in calendar_calls.items() if not k.startswith("GET")),
            "calendarCalls": sum(calendar_calls.values()),
            "paymentReads": sum(
                v for k, v in client.stats("mercadopago").items() if "/v1/payments/" in k
            ),
            "firestoreRoundTrips": sum(rpcs.values()),
        }

    booking_id = client.seed_booking()
    payment_id = str(client.create_payment(booking_id)["id"])
    deliver(payment_id)  # warm secrets, token and connections: count a steady-state delivery
    booking_id = client.seed_booking()
    payment_id = str(client.create_payment(booking_id)["id"])
    first = deliver(payment_id)
    duplicate = deliver(payment_id)
    return {"approved": first, "duplicate": duplicate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--latency-ms", type=int, default=60, help="the realistic upstream latency")
    args = parser.parse_args()
    stack = LocalStack(state_dir=Path(__file__).resolve().parent.parent / ".local" / "bench")
    doc = stack.start()
    client = StackClient(doc)
    results: dict[str, Any] = {}
    try:
        server = psutil.Process(stack.function_processes["payment_webhook"].pid)
        for latency in (0, args.latency_ms):
            for emulator in ("calendar", "mercadopago"):
                client.set_faults(emulator, {"latencyMs": latency})
            handler_latencies(client, 3)  # warm up
            direct_latencies(client, 3)
            handler = handler_latencies(client, args.rounds)
            direct = direct_latencies(client, args.rounds)
            row = {
                "handlerP50Ms": round(statistics.median(handler) * 1000, 1),
                "handlerP95Ms": round(percentile(handler, 0.95) * 1000, 1),
                "directP50Ms": round(statistics.median(direct) * 1000, 1),
                "directP95Ms": round(percentile(direct, 0.95) * 1000, 1),
            }
            row["ratioP50"] = round(row["handlerP50Ms"] / row["directP50Ms"], 2)
            row["ratioP95"] = round(row["handlerP95Ms"] / row["directP95Ms"], 2)
            results[f"latency{latency}ms"] = row
            print(f"upstream latency {latency:>3} ms: {json.dumps(row)}")
        rss = max(
            [server.memory_info().rss]
            + [c.memory_info().rss for c in server.children(recursive=True)]
        )
        peak = _peak_rss(server.pid)
        results["servingProcessRssMiB"] = round(rss / 2**20, 1)
        results["servingProcessPeakRssMiB"] = round(peak / 2**20, 1) if peak else None
        for emulator in ("calendar", "mercadopago"):
            client.set_faults(emulator, {"latencyMs": 0})
        results["callsPerBooking"] = calls_per_booking(client)
        print(
            f"serving process RSS {results['servingProcessRssMiB']} MiB, "
            f"peak {results['servingProcessPeakRssMiB']} MiB"
        )
        print(f"upstream calls: {json.dumps(results['callsPerBooking'])}")
    finally:
        stack.stop()
    print(json.dumps(results, sort_keys=True))
    return 0


def _peak_rss(pid: int) -> int | None:
    """VmHWM: the high-water mark of resident memory (Linux), of the process and its workers."""
    peaks = []
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
        except OSError:
            continue
    return max(peaks) if peaks else None


if __name__ == "__main__":
    sys.exit(main())
