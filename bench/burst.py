"""Benchmark of an enrollment burst against Google's per-user rate (`./dev.sh bench`).

N approved payments arrive within a few seconds while the Calendar emulator allows Q
requests a minute per user (scaled down together from "1,000 in 60 s against 300/min").
The same burst goes through the inline path (the webhook calls Calendar) and through the
queue (the webhook enqueues; Cloud Tasks paces schedule_class), in one run. Printed per path:
- seconds until every booking is scheduled, against the floor the quota allows for one insert
  per class at its rate (N / Q minutes) as a ratio (target <= 1.1 with the queue); also the
  window floor, what a sliding minute lets through when the whole quota is spent at once
  (Q at once, then Q a minute: (ceil(N / Q) - 1) minutes), which only an unpaced burst nears;
- Calendar rate-limit answers, 503s sent to Mercado Pago (target 0 with the queue), and the
  webhook's p50/p99;
- events per booking (exactly 1), and the Calendar requests by kind (each insert is echoed by
  a push; the sync lists at its pace, `SYNC_INTERVAL_SECONDS`, not once per push).
The queue is paced as `infra/main.tf` paces it against Google's 600 a minute: `QUEUE_SHARE`
of the quota. Mercado Pago's redelivery after a non-2xx (15 minutes in production) is scaled to
`--redelivery-s` seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.payment_webhook import percentile, signed_delivery
from devstack.client import StackClient
from devstack.stack import LocalStack
from shared.adapters.clients import reset_clients


def _burst(
    client: StackClient, count: int, redelivery_s: float
) -> tuple[dict[str, Any], list[str]]:
    bookings = [client.seed_booking() for _ in range(count)]
    payments = [str(client.create_payment(b)["id"]) for b in bookings]
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def deliver(payment_id: str) -> None:
        while True:
            started = time.perf_counter()
            response = requests.Session().send(signed_delivery(client.doc, payment_id), timeout=60)
            with lock:
                answers.append((response.status_code, time.perf_counter() - started))
            if response.status_code in (200, 201):
                return
            time.sleep(redelivery_s)  # Mercado Pago delivers again later

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(deliver, payments))
    waiting = list(bookings)
    while waiting and time.monotonic() - started < 900:
        waiting = [b for b in waiting if client.booking(b).get("status") != "scheduled"]
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    timings = [t for _, t in answers]
    row = {
        "secondsUntilAllScheduled": round(elapsed, 1),
        "answersByStatus": {str(s): sum(1 for a, _ in answers if a == s) for s, _ in answers},
        "webhookP50Ms": round(statistics.median(timings) * 1000, 1),
        "webhookP99Ms": round(percentile(timings, 0.99) * 1000, 1),
    }
    return row, bookings


def _calendar_control(client: StackClient) -> str:
    return str(client.doc["emulators"]["calendar"]).split("/calendar/v3/")[0]


def _limit_requests(client: StackClient, per_minute: int) -> None:
    requests.post(
        f"{_calendar_control(client)}/_emulator/calendar/quota",
        json={"requestsPerMinute": per_minute, "requestWindowSeconds": 60},
        timeout=10,
    ).raise_for_status()


def _lift_limits(client: StackClient) -> dict[str, int]:
    """The calls refused while the limit was on, by reason; then the limit is off."""
    quota = requests.get(f"{_calendar_control(client)}/_emulator/calendar/quota", timeout=10)
    requests.delete(f"{_calendar_control(client)}/_emulator/calendar/quota", timeout=10)
    rejected: dict[str, int] = quota.json().get("rejected", {})
    return rejected


QUEUE_SHARE = 0.95
"""The share of the user's quota the queue dispatches at (infra: 9.5 of Google's 10 a second);
the sync's listings and admins' reads take the rest."""


def _pace_queue(doc: dict[str, Any], per_second: float) -> None:
    """The queue below the quota."""
    queue = doc["cloud_tasks"]["queues"]["schedule_class"]
    tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": doc["cloud_tasks"]["endpoint"]},
    ).update_queue(
        queue=tasks_v2.Queue(
            name=queue,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=per_second, max_concurrent_dispatches=8
            ),
        ),
        update_mask={"paths": ["rate_limits"]},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, default=100)
    parser.add_argument("--per-minute", type=int, default=300, help="the emulator's user quota")
    parser.add_argument("--redelivery-s", type=float, default=5.0)
    args = parser.parse_args()
    stack = LocalStack(
        functions_in_process=True,
        state_dir=Path(__file__).resolve().parent.parent / ".local" / "bench",
    )
    doc = stack.start()
    client = StackClient(doc)
    floor = args.bookings / args.per_minute * 60
    window_floor = (math.ceil(args.bookings / args.per_minute) - 1) * 60
    results: dict[str, Any] = {
        "floorSeconds": round(floor, 1),
        "windowFloorSeconds": window_floor,
        "queueShare": QUEUE_SHARE,
    }
    try:
        for path in ("inline", "queue"):
            if path == "queue":
                os.environ["SCHEDULING_QUEUE"] = doc["cloud_tasks"]["queues"]["schedule_class"]
                _pace_queue(doc, args.per_minute / 60 * QUEUE_SHARE)
            reset_clients()
            client.reset_stats("calendar")
            _limit_requests(client, args.per_minute)
            row, bookings = _burst(client, args.bookings, args.redelivery_s)
            row["rateLimitAnswers"] = _lift_limits(client)
            calls = client.stats("calendar")
            row["calendarRequests"] = sum(calls.values())
            row["calendarRequestsByKind"] = calls
            events = {len(client.events_for_booking(b)) for b in bookings}
            row["eventsPerBooking"] = sorted(events)
            row["ratioToFloor"] = round(row["secondsUntilAllScheduled"] / floor, 2)
            results[path] = row
            print(f"{path:>6}: {json.dumps(row)}")
    finally:
        stack.stop()
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
