"""Benchmark of list_events: a 250-event page against the bare `events.list` call.

Seeds 250 class events with their bookings in a one-day window of its own, then measures,
in the same run and interleaved, the p50 latency of

- the function (HTTP, admin auth, Calendar page, the bookings read beside it, JSON), and
- the bare `events.list` call the function makes (same query, straight to Calendar),

at 0 ms and at a realistic Calendar latency (150 ms by default), and the Firestore round
trips per page, counted by a gRPC interceptor on the Firestore client while the function
serves a page in this process. Targets: ratio <= 1.1 at 150 ms; one Firestore round trip,
made while Calendar answers (`join` in Server-Timing: what the answer waited for Firestore
after Calendar had answered).

    .venv/bin/python bench/list_events.py [--rounds 40]

Uses the stack described by `.local/stack.json` when it is alive and serves list_events;
otherwise starts its own (functions as processes, like production) and stops it after.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.client import StackClient  # noqa: E402
from devstack.instrument import firestore_rpcs  # noqa: E402
from devstack.stack import LocalStack, is_alive  # noqa: E402
from devstack.when import at  # noqa: E402

EVENTS = 250
TARGET_RATIO = 1.1


@contextmanager
def running_stack() -> Iterator[dict[str, Any]]:
    state = ROOT / ".local" / "stack.json"
    if state.exists():
        document = json.loads(state.read_text())
        if "list_events" in document.get("functions", {}) and is_alive(document):
            print(f"using the running stack of {state}")
            yield document
            return
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as state_dir:
        stack = LocalStack(functions_in_process=False, state_dir=Path(state_dir))
        print("starting a local stack (Firestore emulator, emulators, functions)...")
        try:
            yield stack.start()
        finally:
            stack.stop()


def seed(client: StackClient) -> tuple[datetime, datetime]:
    """250 classes, five minutes apart, in a day no other run uses; each with its booking."""
    from shared.adapters.google_calendar import class_event_body
    from shared.domain.bookings import Booking

    # Years ahead, far from any other run's classes (and from the classes tests book).
    day = at(4 * 365 + random.randrange(3600), 0)
    batch = client.db.batch()
    service = client.calendar.events()
    for n in range(EVENTS):
        start = day + timedelta(minutes=5 * n)
        booking_id = f"bench-{day:%Y%m%d}-{n:03d}"
        doc = {
            "status": "scheduled",
            "classTitle": f"Clase {n}",
            "teacher": {"name": "Ana Gómez", "email": "ana.gomez@example.com"},
            "student": {"name": f"Estudiante {n}", "email": f"estudiante{n}@example.com"},
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=5)).isoformat(),
            "timeZone": "America/Argentina/Buenos_Aires",
            "price": {"amount": 15000, "currency": "ARS"},
            "paymentStatus": "approved",
        }
        batch.set(client.db.collection("bookings").document(booking_id), doc)
        body = class_event_body(Booking.from_document(booking_id, doc), f"pay-{n}")
        service.insert(
            calendarId=client.doc["calendar_id"], body=body, conferenceDataVersion=1
        ).execute()
    batch.commit()
    return day, day + timedelta(days=1)


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def measure(
    calls: dict[str, Callable[[], None]], rounds: int, warmup: int = 5
) -> dict[str, list[float]]:
    """Run every call `rounds` times, interleaved, so drift hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for n in range(warmup + rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if n >= warmup:
                samples[name].append(time.perf_counter() - started)
    return samples


def round_trips_per_page(document: dict[str, Any], query: dict[str, str]) -> dict[str, int]:
    """Serve one page with the function in this process and count its Firestore RPCs."""
    import functions_framework

    os.environ.update(document["env"])
    from shared.adapters.clients import firestore_client, reset_clients

    reset_clients()
    app = functions_framework.create_app(
        "list_events", str(ROOT / "functions" / "list_events" / "main.py")
    )
    headers = {"X-API-Key": document["secrets"]["admin_api_key"]}
    with firestore_rpcs(firestore_client()) as rpcs:
        response = app.test_client().get("/", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["events"]) == EVENTS
    return dict(rpcs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=150,
        help="a realistic latency of Google's events.list for a 250-event page",
    )
    args = parser.parse_args()
    with running_stack() as document:
        client = StackClient(document)
        started = time.perf_counter()
        time_min, time_max = seed(client)
        print(f"seeded {EVENTS} events + bookings in {time.perf_counter() - started:.1f}s")
        query = {"from": time_min.isoformat(), "to": time_max.isoformat(), "limit": str(EVENTS)}
        url = document["functions"]["list_events"]
        http = requests.Session()
        api_key = {"X-API-Key": document["secrets"]["admin_api_key"]}
        id_token = http.post(
            document["emulators"]["oauth"] + "/_emulator/oauth/id-token",
            json={
                "email": document["admin_email"],
                "audience": document["env"]["ID_TOKEN_AUDIENCE"],
            },
            timeout=10,
        ).json()["id_token"]
        bearer = {"Authorization": f"Bearer {id_token}"}
        service = client.calendar.events()

        inside: dict[str, list[float]] = collections.defaultdict(list)

        def through_function(headers: dict[str, str]) -> Callable[[], None]:
            def call() -> None:
                response = http.get(url, params=query, headers=headers, timeout=30)
                response.raise_for_status()
                assert len(response.json()["events"]) == EVENTS
                for part in response.headers["Server-Timing"].split(","):
                    name, _, duration = part.strip().partition(";dur=")
                    inside[name].append(float(duration) / 1000)

            return call

        def bare_events_list() -> None:
            page = service.list(
                calendarId=document["calendar_id"],
                timeMin=query["from"],
                timeMax=query["to"],
                singleEvents=True,
                orderBy="startTime",
                maxResults=EVENTS,
            ).execute()
            assert len(page["items"]) == EVENTS

        ratios: dict[int, dict[str, float]] = {}
        for latency in (0, args.latency_ms):
            client.set_faults("calendar", {"latencyMs": latency})
            inside.clear()
            samples = measure(
                {
                    "bare events.list": bare_events_list,
                    "list_events (X-API-Key)": through_function(api_key),
                    "list_events (ID token)": through_function(bearer),
                },
                args.rounds,
            )
            bare = p50(samples["bare events.list"])
            print(
                f"\n{EVENTS}-event page, Calendar latency {latency} ms,"
                f" p50 of {args.rounds} interleaved rounds:"
            )
            ratios[latency] = {}
            for name, values in samples.items():
                ratio = p50(values) / bare
                ratios[latency][name] = ratio
                print(f"  {name:26s} p50 {p50(values):7.1f} ms   ratio {ratio:5.2f}")
            print("  inside the function (Server-Timing):")
            for name, values in inside.items():
                print(f"    {name:24s} p50 {p50(values):7.1f} ms")
        client.clear_faults("calendar")
        rpcs = round_trips_per_page(document, query)
        print(f"\nFirestore RPCs for one {EVENTS}-event page: {rpcs} (total {sum(rpcs.values())})")
        at_latency = ratios[args.latency_ms]
        worst = max(ratio for name, ratio in at_latency.items() if name.startswith("list_events"))
        verdict = "met" if worst <= TARGET_RATIO else "NOT met"
        print(
            f"target {TARGET_RATIO}x the bare events.list at {args.latency_ms} ms: {verdict}"
            f" (worst {worst:.2f}x; at 0 ms "
            + " / ".join(
                f"{ratio:.2f}x" for name, ratio in ratios[0].items() if name.startswith("list_")
            )
            + ")"
        )


if __name__ == "__main__":
    main()
