"""Benchmark of group seats on the local stack (`./dev.sh bench`).

30 students pay for the same session of capacity 30 at once, at 0 ms and at a realistic
Calendar latency. Prints, per latency:
- events for the session (must be 1) and its attendees (must be 31: the teacher and 30);
- Calendar calls per seat: writes (target 1 per seat, plus at most 1 retry per `If-Match`
  collision) and reads;
- p50 of a seat's webhook against the p50 of a one-to-one booking's in the same run (the
  ratio is what sharing one event costs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.payment_webhook import signed_delivery
from devstack.client import StackClient
from devstack.stack import LocalStack
from devstack.when import iso
from shared.domain.seats import event_id_for_session

SEATS = 30
SESSION_START = iso(16, 18)
"""Every round's session, 16 days from today: a class that has not happened yet."""
SESSION_END = iso(16, 19, 30)


def _new_session(client: StackClient, tag: str) -> str:
    answer = requests.post(
        client.doc["functions"]["class_sessions"],
        json={
            "title": f"Bench {tag}",
            # A teacher per round: one teacher cannot teach two sessions at once.
            "teacher": {"name": "Ana Gómez", "email": f"docente-{tag}@example.com"},
            "start": SESSION_START,
            "end": SESSION_END,
            "capacity": SEATS,
            "price": {"amount": 15000, "currency": "ARS"},
        },
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=60,
    )
    answer.raise_for_status()
    session_id: str = answer.json()["sessionId"]
    return session_id


def _deliver(client: StackClient, payment_id: str) -> float:
    started = time.perf_counter()
    response = requests.Session().send(signed_delivery(client.doc, payment_id), timeout=60)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def seat_round(client: StackClient, tag: str) -> dict[str, Any]:
    session_id = _new_session(client, tag)
    payments = []
    for n in range(SEATS):
        booking_id = client.seed_booking(
            sessionId=session_id,
            student={"name": f"Estudiante {n}", "email": f"e{n}-{tag}@example.com"},
            start=SESSION_START,
            end=SESSION_END,
        )
        payments.append(str(client.create_payment(booking_id)["id"]))
    calendar_control = client.doc["emulators"]["calendar"].split("/calendar/v3/")[0]
    requests.get(f"{calendar_control}/_emulator/calendar/deliveries?wait=1", timeout=30)
    client.reset_stats("calendar")
    with concurrent.futures.ThreadPoolExecutor(SEATS) as pool:
        timings = list(pool.map(lambda p: _deliver(client, p), payments))
    calls = client.stats("calendar")
    writes = sum(v for k, v in calls.items() if k.startswith(("PATCH", "PUT", "POST")))
    reads = sum(v for k, v in calls.items() if k.startswith("GET") and k.endswith("<eventId>"))
    event = (
        client.calendar.events()
        .get(calendarId=client.doc["calendar_id"], eventId=event_id_for_session(session_id))
        .execute()
    )
    listed = (
        client.calendar.events()
        .list(
            calendarId=client.doc["calendar_id"], privateExtendedProperty=f"sessionId={session_id}"
        )
        .execute()
    )
    return {
        "eventsForSession": len(listed.get("items", [])),
        "attendees": len(event.get("attendees", [])),
        "calendarWritesPerSeat": round(writes / SEATS, 2),
        "calendarReadsPerSeat": round(reads / SEATS, 2),
        "seatP50Ms": round(statistics.median(timings) * 1000, 1),
    }


def one_to_one_p50(client: StackClient, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        booking_id = client.seed_booking()
        timings.append(_deliver(client, str(client.create_payment(booking_id)["id"])))
    return round(statistics.median(timings) * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=int, default=60, help="a realistic Calendar latency")
    args = parser.parse_args()
    stack = LocalStack(state_dir=Path(__file__).resolve().parent.parent / ".local" / "bench")
    doc = stack.start()
    client = StackClient(doc)
    results: dict[str, Any] = {}
    try:
        for latency in (0, args.latency_ms):
            client.set_faults("calendar", {"latencyMs": latency})
            single = one_to_one_p50(client, SEATS)
            row = seat_round(client, f"l{latency}")
            row["oneToOneP50Ms"] = single
            row["seatToOneToOneRatioP50"] = round(row["seatP50Ms"] / single, 2)
            results[f"latency{latency}ms"] = row
            print(f"calendar latency {latency:>3} ms: {json.dumps(row)}")
    finally:
        stack.stop()
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
