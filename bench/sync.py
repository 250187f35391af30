"""Benchmark: what an incremental sync saves, and how fast a Calendar change reaches its booking.

Starts its own local stack (functions in this process), fills the calendar with `--total`
class events and their bookings, then changes `--changed` of them and measures:

1. Calendar calls and wall time of one incremental sync (sync token -> changed events ->
   bookings) against a full listing of the calendar (the same work without a token), both
   with the listing alone and with the bookings applied.
2. Latency from a change in the Calendar emulator to the booking updated, through the real
   push delivery (`--samples` changes, one at a time): p50, p90, max.

    .venv/bin/python bench/sync.py [--total 5000] [--changed 1000] [--samples 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.client import StackClient  # noqa: E402
from devstack.stack import LocalStack  # noqa: E402
from devstack.when import CLASS_DAYS_AHEAD, ZONE, at  # noqa: E402
from shared.adapters.clients import reset_clients  # noqa: E402
from shared.adapters.firestore import sync_ref  # noqa: E402
from shared.adapters.google_calendar import calendar_api  # noqa: E402
from shared.clock import TIME_ZONE, Deadline  # noqa: E402
from shared.domain.bookings import event_id_for_booking  # noqa: E402
from shared.services.calendar_sync import PAGE_SIZE, request_sync  # noqa: E402

FIRST_CLASS = at(CLASS_DAYS_AHEAD, 8)
"""The first seeded class, in 7 days at 08:00; the rest follow it, 24 a day."""


def class_start(index: int) -> datetime:
    """Classes spread over the coming months, one every 30 minutes of the day."""
    return FIRST_CLASS + timedelta(days=index // 24, minutes=30 * (index % 24))


def control(stack_client: StackClient) -> str:
    return str(stack_client.doc["emulators"]["calendar"]).split("/calendar/v3/")[0]


def calendar_calls(stack_client: StackClient) -> int:
    return sum(stack_client.stats("calendar").values())


def seed(stack_client: StackClient, total: int) -> list[tuple[str, str]]:
    """`total` scheduled bookings, each with its class event: [(booking id, event id)]."""
    bookings = stack_client.db.collection("bookings")
    events = stack_client.calendar.events()
    calendar_id = stack_client.doc["calendar_id"]
    seeded: list[tuple[str, str]] = []
    batch = stack_client.db.batch()
    for index in range(total):
        booking_id = f"bench-{index:05d}"
        event_id = event_id_for_booking(booking_id)
        start = class_start(index)
        end = start + timedelta(hours=1)
        batch.set(
            bookings.document(booking_id),
            {
                "status": "scheduled",
                "classTitle": "Álgebra I",
                "start": start.isoformat(),
                "end": end.isoformat(),
                "timeZone": TIME_ZONE,
                "googleEventId": event_id,
                "calendarStatus": "confirmed",
            },
        )
        if len(seeded) % 400 == 399:
            batch.commit()
            batch = stack_client.db.batch()
        events.insert(
            calendarId=calendar_id,
            body={
                "id": event_id,
                "summary": "Álgebra I",
                "start": {"dateTime": start.isoformat(), "timeZone": TIME_ZONE},
                "end": {"dateTime": end.isoformat(), "timeZone": TIME_ZONE},
                "attendees": [{"email": "juan.perez@example.com"}],
                "extendedProperties": {"private": {"bookingId": booking_id}},
            },
        ).execute()
        seeded.append((booking_id, event_id))
    batch.commit()
    return seeded


def move_event(stack_client: StackClient, event_id: str, start: datetime) -> None:
    stack_client.calendar.events().patch(
        calendarId=stack_client.doc["calendar_id"],
        eventId=event_id,
        conferenceDataVersion=1,
        body={
            "start": {"dateTime": start.isoformat(), "timeZone": TIME_ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": TIME_ZONE},
        },
    ).execute()


def move_all(stack_client: StackClient, targets: list[tuple[str, str]]) -> None:
    """Move each class one hour later in the calendar (the bookings do not know yet)."""
    for booking_id, event_id in targets:
        start = datetime.fromisoformat(stack_client.booking(booking_id)["start"])
        move_event(stack_client, event_id, start + timedelta(hours=1))


def measured(stack_client: StackClient, run: Callable[[], Any]) -> tuple[Any, int, float]:
    """(result, Calendar calls, seconds) of `run`."""
    stack_client.reset_stats("calendar")
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    return result, calendar_calls(stack_client), seconds


def list_everything(query: dict[str, Any]) -> int:
    """Page through one listing without applying anything; returns the events seen."""
    api, seen, page_token = calendar_api(), 0, ""
    while True:
        page = api.list_events(
            {**query, "maxResults": PAGE_SIZE, **({"pageToken": page_token} if page_token else {})},
            Deadline(60),
        )
        seen += len(page.get("items") or [])
        page_token = page.get("nextPageToken") or ""
        if not page_token:
            return seen


def stored_token() -> str:
    return str((sync_ref().get().to_dict() or {}).get("syncToken") or "")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=5000, help="events in the calendar")
    parser.add_argument("--changed", type=int, default=1000, help="events changed before a sync")
    parser.add_argument("--samples", type=int, default=15, help="changes timed end to end")
    args = parser.parse_args()

    stack = LocalStack(functions_in_process=True, state_dir=Path(tempfile.mkdtemp()))
    stack.start()
    try:
        return run(stack, args.total, min(args.changed, args.total), args.samples)
    finally:
        stack.stop()


def run(stack: LocalStack, total: int, changed: int, samples: int) -> int:
    client = StackClient(stack.document)
    # A silent calendar while seeding: no channel, so the measured syncs are the only ones.
    requests.post(f"{control(client)}/_emulator/calendar/reset", timeout=10)
    assert stack.firestore is not None
    stack.firestore.reset(stack.project_id)
    reset_clients()
    started = time.perf_counter()
    seeded = seed(client, total)
    print(f"seeded {total} events and bookings in {time.perf_counter() - started:.1f}s")
    first = request_sync(Deadline(600), due=True)
    print(f"initial full sync: {first.as_json()}")

    # The same amount of news for both: `changed` events moved before each measured sync.
    move_all(client, seeded[:changed])
    token = stored_token()
    incremental_seen, incremental_list_calls, incremental_list_s = measured(
        client, lambda: list_everything({"syncToken": token})
    )
    incremental, incremental_calls, incremental_s = measured(
        client, lambda: request_sync(Deadline(600), due=True)
    )
    move_all(client, seeded[:changed])
    window = (datetime.now(ZONE) - timedelta(days=1)).isoformat()
    full_seen, full_list_calls, full_list_s = measured(
        client, lambda: list_everything({"timeMin": window, "showDeleted": True})
    )
    sync_ref().update({"syncToken": ""})  # the same sync without a token: a full listing
    full, full_calls, full_s = measured(client, lambda: request_sync(Deadline(600), due=True))
    assert incremental.stats.applied == changed, incremental.as_json()
    assert full.stats.applied == changed, full.as_json()

    print(f"\n{changed} of {total} events changed (page size {PAGE_SIZE})")
    print(f"{'':34}{'events':>8}{'calls':>8}{'seconds':>10}")
    rows = [
        ("listing, incremental (sync token)", incremental_seen, incremental_list_calls,
         incremental_list_s),
        ("listing, full calendar", full_seen, full_list_calls, full_list_s),
        ("sync applied, incremental", incremental.stats.events, incremental_calls, incremental_s),
        ("sync applied, full listing", full.stats.events, full_calls, full_s),
    ]  # fmt: skip
    for name, events, calls, seconds in rows:
        print(f"{name:34}{events:>8}{calls:>8}{seconds:>10.2f}")
    print(
        f"full / incremental: listing {full_list_s / incremental_list_s:.1f}x time, "
        f"{full_list_calls / incremental_list_calls:.1f}x calls; "
        f"sync {full_s / incremental_s:.1f}x time, {full_calls / incremental_calls:.1f}x calls"
    )

    latencies = change_to_booking(stack, client, seeded[changed:], samples)
    print(
        f"\nchange -> booking updated over {len(latencies)} pushes: "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p90 {percentile(latencies, 0.9) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    summary = {
        "total": total,
        "changed": changed,
        "incremental": {"calls": incremental_calls, "seconds": round(incremental_s, 3)},
        "full": {"calls": full_calls, "seconds": round(full_s, 3)},
        "listing": {
            "incrementalCalls": incremental_list_calls,
            "incrementalSeconds": round(incremental_list_s, 3),
            "fullCalls": full_list_calls,
            "fullSeconds": round(full_list_s, 3),
        },
        "latencyMs": {
            "p50": round(percentile(latencies, 0.5) * 1000),
            "p90": round(percentile(latencies, 0.9) * 1000),
            "max": round(max(latencies) * 1000),
        },
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def change_to_booking(
    stack: LocalStack, client: StackClient, candidates: list[tuple[str, str]], samples: int
) -> list[float]:
    """Open the channel as `./dev.sh up` does, then time each change until its booking shows it."""
    answer = requests.post(
        stack.document["functions"]["renew_watch"],
        headers={"X-API-Key": stack.document["secrets"]["admin_api_key"]},
        timeout=120,
    )
    answer.raise_for_status()
    latencies = []
    for booking_id, event_id in candidates[:samples]:
        start = datetime.fromisoformat(client.booking(booking_id)["start"]) + timedelta(hours=2)
        expected = start.isoformat()
        began = time.perf_counter()
        move_event(client, event_id, start)
        while client.booking(booking_id)["start"] != expected:
            if time.perf_counter() - began > 30:
                raise TimeoutError(f"booking {booking_id} not updated within 30 s")
            time.sleep(0.005)
        latencies.append(time.perf_counter() - began)
    return latencies


if __name__ == "__main__":
    sys.exit(main())
