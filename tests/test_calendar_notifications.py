"""Push channels and incremental sync against the Calendar emulator's real push delivery."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
import requests
from google.cloud import firestore

from devstack.client import TIME_ZONE, StackClient
from devstack.when import CLASS_DAYS_AHEAD, at, iso
from shared.adapters.clients import reset_clients
from shared.services import calendar_sync

pytestmark = pytest.mark.usefixtures("stack")

T = TypeVar("T")
SCHEDULER = "renewal-scheduler@demo-virtual-classes.iam.gserviceaccount.com"
SEEDED_START = iso(CLASS_DAYS_AHEAD, 18)
"""When the class of `client.seed_booking` starts; it ends an hour later."""


# -- helpers -------------------------------------------------------------------------------


def wait_for[T](probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def calendar_control(client: StackClient) -> str:
    return (
        str(client.doc["emulators"]["calendar"]).split("/calendar/v3/")[0] + "/_emulator/calendar"
    )


def renew(client: StackClient, *, force: bool = False, **headers: str) -> requests.Response:
    headers = headers or {"X-API-Key": client.doc["secrets"]["admin_api_key"]}
    return requests.post(
        client.doc["functions"]["renew_watch"],
        params={"force": "1"} if force else None,
        headers=headers,
        timeout=60,
    )


def deliveries(client: StackClient) -> list[dict[str, Any]]:
    """Every push the emulator attempted, once none is left in its queue."""
    result: list[dict[str, Any]] = requests.get(
        f"{calendar_control(client)}/deliveries", params={"wait": "1"}, timeout=10
    ).json()
    return result


def emulator_channels(client: StackClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = requests.get(
        f"{calendar_control(client)}/channels", timeout=10
    ).json()
    return result


def push(client: StackClient, channel: dict[str, Any], **overrides: str) -> requests.Response:
    """A notification shaped like Google's: headers only, empty body."""
    headers = {
        "X-Goog-Channel-ID": channel["id"],
        "X-Goog-Channel-Token": channel.get("token", ""),
        "X-Goog-Resource-ID": channel.get("resourceId", ""),
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "99",
        **overrides,
    }
    return requests.post(
        client.doc["functions"]["calendar_notifications"], headers=headers, data=b"", timeout=30
    )


def sync_state(client: StackClient) -> dict[str, Any]:
    snap = client.db.collection("calendar_sync").document(client.doc["calendar_id"]).get()
    return snap.to_dict() or {}


def sync_settled(client: StackClient) -> dict[str, Any] | None:
    """The sync document once no delivery or deferred round is queued, no sync holds the
    lease and the sync's pace lets the next notification list at once."""
    deliveries(client)
    sync_rounds_run(client)
    state = sync_state(client)
    paced = state.get("nextRoundAt") and state["nextRoundAt"] > datetime.now(UTC)
    return state if state.get("syncToken") and not state.get("lease") and not paced else None


def sync_rounds_run(client: StackClient) -> list[dict[str, Any]]:
    """The deferred sync rounds Cloud Tasks dispatched, once none is queued or in flight."""
    tasks = client.doc["cloud_tasks"]
    queue = tasks["queues"]["calendar_sync"]
    base = f"{tasks['endpoint']}/_emulator/cloudtasks"
    requests.get(f"{base}/idle", params={"queue": queue, "timeout": 10}, timeout=20)
    log: list[dict[str, Any]] = requests.get(
        f"{base}/dispatches", params={"queue": queue}, timeout=10
    ).json()["dispatches"]
    return log


def schedule(client: StackClient) -> tuple[str, str]:
    """A booking paid through the real payment flow: (booking id, its event id)."""
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)
    assert client.notify(payment["id"])["status"] == 200
    booking = client.booking(booking_id)
    assert booking["status"] == "scheduled"
    return booking_id, str(booking["googleEventId"])


def calendar_changes(client: StackClient, booking_id: str) -> list[dict[str, Any]]:
    docs = client.db.collection("bookings").document(booking_id).collection("calendar_changes")
    return [snap.to_dict() or {} for snap in docs.stream()]


def move(client: StackClient, event_id: str, start: str, end: str) -> dict[str, Any]:
    event: dict[str, Any] = (
        client.calendar.events()
        .patch(
            calendarId=client.doc["calendar_id"],
            eventId=event_id,
            conferenceDataVersion=1,
            body={
                "start": {"dateTime": start, "timeZone": TIME_ZONE},
                "end": {"dateTime": end, "timeZone": TIME_ZONE},
            },
        )
        .execute()
    )
    return event


@pytest.fixture
def watched(client: StackClient) -> dict[str, Any]:
    """The channel `renew_watch` opened, as the emulator knows it (with its token)."""
    answer = renew(client)
    assert answer.status_code == 200, answer.text
    [channel] = emulator_channels(client)
    assert channel["id"] == answer.json()["channelId"]
    return channel


# -- channels --------------------------------------------------------------------------------


def test_channel_creation_delivers_sync_and_is_accepted(client: StackClient) -> None:
    answer = renew(client)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"] == "renewed"
    [channel] = emulator_channels(client)
    assert channel["id"] == body["channelId"]
    assert channel["address"] == client.doc["functions"]["calendar_notifications"]
    assert [(d["channelId"], d["state"], d["status"]) for d in deliveries(client)] == [
        (channel["id"], "sync", 200)
    ]
    stored = client.db.collection("calendar_channels").document(channel["id"]).get().to_dict()
    assert stored is not None
    assert stored["state"] == "active"
    assert stored["expirationMs"] == int(channel["expiration"])
    assert channel["token"] not in stored.values()  # only the token's hash is kept
    assert body["sync"]["outcome"] == "synced"
    assert sync_state(client)["syncToken"]


def test_a_second_run_keeps_the_current_channel(
    client: StackClient, watched: dict[str, Any]
) -> None:
    answer = renew(client)

    assert answer.status_code == 200
    assert answer.json()["outcome"] == "current"
    assert [c["id"] for c in emulator_channels(client)] == [watched["id"]]


def test_renewal_replaces_the_channel_and_stops_the_old_one(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANNEL_TTL_SECONDS", "3600")  # expires within the renewal margin
    reset_clients()
    first = renew(client).json()
    [old] = emulator_channels(client)
    booking_id, event_id = schedule(client)

    second = renew(client).json()

    assert second["outcome"] == "renewed"
    assert second["stoppedChannels"] == [first["channelId"]]
    [new] = emulator_channels(client)
    assert new["id"] == second["channelId"] != old["id"]
    stored_old = client.db.collection("calendar_channels").document(old["id"]).get().to_dict()
    assert stored_old is not None and stored_old["state"] == "stopped"
    assert push(client, old).status_code == 404
    delivered = len(deliveries(client))
    move(client, event_id, iso(9, 9), iso(9, 10))
    wait_for(lambda: client.booking(booking_id)["start"] == iso(9, 9))
    assert [(d["channelId"], d["status"]) for d in deliveries(client)[delivered:]] == [
        (new["id"], 200)
    ]


def test_overlapping_renewals_open_one_channel(client: StackClient) -> None:
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: renew(client), range(5)))

    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes.count("renewed") == 1, outcomes
    assert len(emulator_channels(client)) == 1


def test_scheduler_oidc_token_may_renew(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    audience = client.doc["functions"]["renew_watch"]
    monkeypatch.setenv("SCHEDULER_AUDIENCE", audience)
    monkeypatch.setenv("SCHEDULER_INVOKER_EMAILS", SCHEDULER)
    reset_clients()

    def id_token(email: str, aud: str = audience) -> str:
        minted = requests.post(
            f"{client.doc['emulators']['oauth']}/_emulator/oauth/id-token",
            json={"email": email, "audience": aud},
            timeout=10,
        )
        return str(minted.json()["id_token"])

    scheduler = renew(client, Authorization=f"Bearer {id_token(SCHEDULER)}")
    stranger = renew(client, Authorization=f"Bearer {id_token('someone@example.com')}")
    elsewhere = renew(client, Authorization=f"Bearer {id_token(SCHEDULER, 'other-audience')}")
    anonymous = renew(client, Accept="application/json")

    assert scheduler.status_code == 200, scheduler.text
    assert stranger.status_code == 403
    assert elsewhere.status_code == 401
    assert anonymous.status_code == 401
    assert len(emulator_channels(client)) == 1


# -- notifications ---------------------------------------------------------------------------


def test_cancelling_the_event_cancels_the_booking(
    client: StackClient, watched: dict[str, Any]
) -> None:
    booking_id, event_id = schedule(client)

    client.calendar.events().delete(
        calendarId=client.doc["calendar_id"], eventId=event_id
    ).execute()

    booking = wait_for(
        lambda: (b := client.booking(booking_id)).get("calendarStatus") == "cancelled" and b
    )
    assert booking["status"] == "cancelled"
    assert booking["needsAttention"] == "event_cancelled"
    [change] = calendar_changes(client, booking_id)
    assert change["kinds"] == ["cancelled"]
    assert change["previousStatus"] == "scheduled"


def test_moving_the_event_moves_the_booking(client: StackClient, watched: dict[str, Any]) -> None:
    booking_id, event_id = schedule(client)
    meet_link = client.booking(booking_id)["meetLink"]

    utc_minus_6 = timezone(timedelta(hours=-6))
    start, end = at(8, 10, 30).astimezone(utc_minus_6), at(8, 11, 30).astimezone(utc_minus_6)
    moved = move(client, event_id, start.isoformat(), end.isoformat())  # ...T07:30:00-06:00

    booking = wait_for(lambda: (b := client.booking(booking_id))["start"] != SEEDED_START and b)
    assert booking["start"] == iso(8, 10, 30)  # in Buenos Aires time
    assert booking["end"] == iso(8, 11, 30)
    assert booking["status"] == "scheduled"
    assert booking["meetLink"] == meet_link == moved["hangoutLink"]
    [change] = calendar_changes(client, booking_id)
    assert change["kinds"] == ["moved"]
    assert change["previousStart"] == SEEDED_START


def test_attendee_responses_are_recorded(client: StackClient, watched: dict[str, Any]) -> None:
    booking_id, event_id = schedule(client)
    event = client.calendar.events().get(calendarId=client.doc["calendar_id"], eventId=event_id)
    attendees = event.execute()["attendees"]
    for attendee in attendees:
        if attendee["email"] == "juan.perez@example.com":
            attendee["responseStatus"] = "declined"

    client.calendar.events().patch(
        calendarId=client.doc["calendar_id"],
        eventId=event_id,
        conferenceDataVersion=1,
        body={"attendees": attendees},
    ).execute()

    booking = wait_for(lambda: (b := client.booking(booking_id)).get("attendeeResponses") and b)
    assert booking["attendeeResponses"] == {
        "juan.perez@example.com": "declined",
        "ana.gomez@example.com": "needsAction",
    }
    assert booking["status"] == "scheduled"


def test_forged_token_and_unknown_channel_are_rejected(
    client: StackClient, watched: dict[str, Any]
) -> None:
    schedule(client)
    before = wait_for(lambda: sync_settled(client))
    client.reset_stats("calendar")

    forged = push(client, watched, **{"X-Goog-Channel-Token": "guessed"})
    tokenless = push(client, {**watched, "token": ""})
    unknown = push(client, {**watched, "id": "ch-unknown"})
    headerless = requests.post(client.doc["functions"]["calendar_notifications"], timeout=10)

    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthenticated"
    assert tokenless.status_code == 401
    assert unknown.status_code == 404
    assert headerless.status_code == 400
    assert client.stats("calendar") == {}  # nothing was asked of Google
    assert sync_state(client)["generation"] == before["generation"]
    assert push(client, watched).json()["outcome"] == "synced"  # the real token still works


@pytest.mark.parametrize(
    "channel_id", ["a/b", ".", "..", "__x__", "a//b", "ch-" + "0" * 31 + "/", "ch-unknown"]
)
def test_a_channel_id_firestore_cannot_name_is_an_unknown_channel(
    client: StackClient, channel_id: str
) -> None:
    client.reset_stats("calendar")

    answer = push(client, {"id": channel_id, "token": "guessed", "resourceId": "r"})

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert client.stats("calendar") == {}
    assert sync_state(client) == {}


def test_an_undocumented_resource_state_is_a_400(
    client: StackClient, watched: dict[str, Any]
) -> None:
    before = wait_for(lambda: sync_settled(client))
    client.reset_stats("calendar")

    answer = push(client, watched, **{"X-Goog-Resource-State": "bogus"})

    assert answer.status_code == 400
    assert "X-Goog-Resource-State" in answer.json()["error"]["message"]
    assert client.stats("calendar") == {}
    assert sync_state(client)["generation"] == before["generation"]


def test_stale_sync_token_triggers_a_full_resync(
    client: StackClient, watched: dict[str, Any]
) -> None:
    booking_id, event_id = schedule(client)
    stale = wait_for(lambda: sync_settled(client))["syncToken"]
    requests.post(f"{calendar_control(client)}/expire-sync-tokens", timeout=10)

    move(client, event_id, iso(10, 18), iso(10, 19))

    wait_for(lambda: client.booking(booking_id)["start"] == iso(10, 18))
    state = wait_for(lambda: sync_settled(client))
    assert state["syncToken"] != stale
    assert state.get("lastFullSyncAt")
    assert state["lastFullSyncAt"] is not None
    fresh = (
        client.calendar.events()
        .list(calendarId=client.doc["calendar_id"], syncToken=state["syncToken"])
        .execute()
    )
    assert fresh["items"] == []  # the new token is valid and nothing was left behind


def test_twenty_concurrent_notifications_apply_each_change_once(
    client: StackClient, watched: dict[str, Any]
) -> None:
    scheduled = [schedule(client) for _ in range(3)]
    wait_for(lambda: sync_settled(client))
    observed: list[tuple[int, str]] = []
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            state = sync_state(client)
            observed.append((int(state.get("generation") or 0), str(state.get("syncToken"))))

    observer = threading.Thread(target=observe)
    observer.start()
    client.reset_stats("calendar")
    try:
        for _, event_id in scheduled:
            move(client, event_id, iso(11, 18), iso(11, 19))
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: push(client, watched), range(20)))
        state = wait_for(lambda: sync_settled(client))
    finally:
        stop.set()
        observer.join()

    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert {a.json()["outcome"] for a in answers} <= {"synced", "queued", "deferred"}
    for booking_id, _ in scheduled:
        assert client.booking(booking_id)["start"] == iso(11, 18)
        assert [c["kinds"] for c in calendar_changes(client, booking_id)] == [["moved"]]
    generations = [g for g, _ in observed]
    assert generations == sorted(generations), "the stored token went back"
    assert len({t for g, t in observed if g == generations[-1]}) == 1
    assert state["pending"] == 0
    listings = client.stats("calendar").get("GET /calendar/v3/calendars/<calendarId>/events", 0)
    assert listings < 20 + len(scheduled), "notifications during a sync were not coalesced"
    fresh = (
        client.calendar.events()
        .list(calendarId=client.doc["calendar_id"], syncToken=state["syncToken"])
        .execute()
    )
    assert fresh["items"] == []


def test_a_burst_of_changes_is_listed_at_the_sync_pace_and_its_last_change_lands(
    client: StackClient, watched: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_INTERVAL_SECONDS", "2")
    reset_clients()
    booking_id, event_id = schedule(client)
    wait_for(lambda: sync_settled(client))
    client.reset_stats("calendar")
    started = time.monotonic()

    for index in range(20):  # a burst: each insert is echoed by a push
        client.calendar.events().insert(
            calendarId=client.doc["calendar_id"],
            body={
                "summary": f"Otra clase {index}",
                "start": {"dateTime": iso(13, 10), "timeZone": TIME_ZONE},
                "end": {"dateTime": iso(13, 11), "timeZone": TIME_ZONE},
            },
        ).execute()
    move(client, event_id, iso(14, 18), iso(14, 19))
    wait_for(lambda: client.booking(booking_id)["start"] == iso(14, 18), 15)
    state = wait_for(lambda: sync_settled(client), 15)

    assert {d["status"] for d in deliveries(client)} == {200}
    listings = client.stats("calendar").get("GET /calendar/v3/calendars/<calendarId>/events", 0)
    rounds = (time.monotonic() - started) / 2 + 1  # one round per interval, and the first
    assert listings <= rounds < 21, f"{listings} listings for 21 changes"
    assert state["pending"] == 0
    assert [c["kinds"] for c in calendar_changes(client, booking_id)] == [["moved"]]
    rounds_run = sync_rounds_run(client)
    assert rounds_run and {(d["status"], d["outcome"]) for d in rounds_run} == {
        (200, "acknowledged")
    }


def test_when_the_sync_queue_refuses_a_round_the_push_syncs_at_once(
    client: StackClient, watched: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_INTERVAL_SECONDS", "30")  # every push below is within the pace
    reset_clients()
    booking_id, event_id = schedule(client)
    wait_for(lambda: sync_state(client).get("syncToken") and not sync_state(client).get("lease"))
    rounds_before = len(sync_rounds_run(client))  # a round deferred before this test's pace
    client.set_faults("cloudtasks", {"rules": [{"method": "POST", "status": 503}]})

    move(client, event_id, iso(15, 18), iso(15, 19))

    wait_for(lambda: client.booking(booking_id)["start"] == iso(15, 18))
    assert {d["status"] for d in deliveries(client)} == {200}
    assert len(sync_rounds_run(client)) == rounds_before  # the push synced itself


def test_a_deferred_round_needs_the_tasks_identity_or_an_admin(
    client: StackClient, watched: dict[str, Any]
) -> None:
    url = client.doc["functions"]["calendar_notifications"]
    forged = requests.post(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    admin = requests.post(
        url,
        headers={"X-API-Key": client.doc["secrets"]["admin_api_key"]},
        timeout=30,
    )

    assert forged.status_code == 401, forged.text
    assert forged.json()["error"]["code"] == "unauthenticated"
    assert admin.status_code == 200, admin.text
    assert admin.json()["outcome"] == "synced"


def test_event_without_booking_id_changes_nothing(
    client: StackClient, watched: dict[str, Any]
) -> None:
    booking_id, _ = schedule(client)
    before = wait_for(lambda: sync_settled(client))
    booking_before = client.db.collection("bookings").document(booking_id).get()

    client.calendar.events().insert(
        calendarId=client.doc["calendar_id"],
        body={
            "summary": "Reunión de docentes",
            "start": {"dateTime": SEEDED_START, "timeZone": TIME_ZONE},
            "end": {"dateTime": iso(CLASS_DAYS_AHEAD, 19), "timeZone": TIME_ZONE},
            "attendees": [{"email": "juan.perez@example.com", "responseStatus": "declined"}],
        },
    ).execute()

    after = wait_for(
        lambda: (s := sync_settled(client)) and s["generation"] > before["generation"] and s
    )
    assert after["lastRound"]["ignored"] == 1
    assert after["lastRound"]["applied"] == 0
    booking_after = client.db.collection("bookings").document(booking_id).get()
    assert booking_after.update_time == booking_before.update_time
    assert calendar_changes(client, booking_id) == []


def hold_sync_lease(client: StackClient, owner: str = "another-sync") -> None:
    """Another sync holds the calendar: notifications meanwhile only queue a round."""
    client.db.collection("calendar_sync").document(client.doc["calendar_id"]).update(
        {"lease": {"owner": owner, "until": datetime.now(UTC) + timedelta(seconds=60)}}
    )


def release_sync_lease(client: StackClient) -> None:
    client.db.collection("calendar_sync").document(client.doc["calendar_id"]).update(
        {"lease": firestore.DELETE_FIELD}
    )


def test_a_copied_event_does_not_hide_the_cancellation_of_the_real_one(
    client: StackClient, watched: dict[str, Any]
) -> None:
    booking_id, event_id = schedule(client)
    wait_for(lambda: sync_settled(client))
    hold_sync_lease(client)  # both changes below reach one page of one sync
    calendar_id = client.doc["calendar_id"]
    original = client.calendar.events().get(calendarId=calendar_id, eventId=event_id).execute()

    client.calendar.events().delete(calendarId=calendar_id, eventId=event_id).execute()
    client.calendar.events().insert(  # an admin's duplicate, private properties included
        calendarId=calendar_id,
        body={
            "summary": original["summary"] + " (copia)",
            "start": original["start"],
            "end": original["end"],
            "extendedProperties": original["extendedProperties"],
        },
    ).execute()
    assert {d["status"] for d in deliveries(client)} == {200}  # answered `queued`
    release_sync_lease(client)
    answer = push(client, watched)

    assert answer.json()["outcome"] == "synced"
    assert answer.json()["events"] == 2
    assert answer.json()["ignored"] == 1  # the copy
    booking = client.booking(booking_id)
    assert booking["calendarStatus"] == "cancelled"
    assert booking["status"] == "cancelled"
    assert [c["kinds"] for c in calendar_changes(client, booking_id)] == [["cancelled"]]


@pytest.fixture
def slow_full_resync(
    client: StackClient, watched: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next sync is a full resync of four one-event pages, each answered in 0.5 s,
    while the lease lasts 1 s: the round outlives a lease that is never extended."""
    for _ in range(4):
        schedule(client)
    wait_for(lambda: sync_settled(client))
    monkeypatch.setattr(calendar_sync, "PAGE_SIZE", 1)
    monkeypatch.setattr(calendar_sync, "SYNC_LEASE_SECONDS", 1.0)
    client.db.collection("calendar_sync").document(client.doc["calendar_id"]).update(
        {"syncToken": firestore.DELETE_FIELD}
    )
    client.set_faults(
        "calendar",
        {"rules": [{"method": "GET", "pathContains": "/events", "latencyMs": 500}]},
    )


@pytest.mark.usefixtures("slow_full_resync")
def test_a_long_sync_keeps_its_lease_page_after_page(
    client: StackClient, watched: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNC_QUEUE")  # without a pace, the queued round follows at once
    reset_clients()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(push, client, watched)
        time.sleep(1.4)  # past the lease the first sync took, halfway through its round
        second = push(client, watched)
        first_body = first.result().json()

    assert second.json()["outcome"] == "queued"
    assert first_body["outcome"] == "synced"
    assert first_body["fullResyncs"] == 1
    assert first_body["rounds"] == 2  # it did the queued round itself
    assert wait_for(lambda: sync_settled(client))["pending"] == 0


@pytest.mark.usefixtures("slow_full_resync")
def test_a_sync_that_lost_its_lease_says_superseded_and_stores_nothing(
    client: StackClient, watched: dict[str, Any]
) -> None:
    before = sync_state(client)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(push, client, watched)
        wait_for(lambda: sync_state(client).get("lease"))
        hold_sync_lease(client)  # its lease ran out and another sync took the calendar
        body = first.result().json()

    assert body["outcome"] == "superseded"
    state = sync_state(client)
    assert state["lease"]["owner"] == "another-sync"  # not released by the loser
    assert state["generation"] == before["generation"]
    assert "syncToken" not in state


def test_a_failed_renewal_still_runs_the_catch_up_sync(client: StackClient) -> None:
    booking_id, event_id = schedule(client)
    client.calendar.events().delete(
        calendarId=client.doc["calendar_id"], eventId=event_id
    ).execute()  # no channel: only the scheduled sync can bring this back
    client.set_faults(
        "calendar",
        {
            "rules": [
                {"method": "POST", "pathContains": "/watch", "status": 403, "reason": "forbidden"}
            ]
        },
    )

    answer = renew(client)

    assert answer.status_code == 502, answer.text
    assert emulator_channels(client) == []
    booking = client.booking(booking_id)
    assert booking["calendarStatus"] == "cancelled"
    assert booking["status"] == "cancelled"
    assert sync_state(client)["syncToken"]


def test_an_orphaned_pending_channel_is_refused_and_stopped_by_the_next_renewal(
    client: StackClient, watched: dict[str, Any]
) -> None:
    client.set_faults(
        "calendar",
        {"rules": [{"method": "POST", "pathContains": "/watch", "dropResponse": True, "count": 1}]},
    )
    assert renew(client, force=True).status_code >= 500  # Google opened it; we never heard
    client.clear_faults("calendar")
    [orphan] = [c for c in emulator_channels(client) if c["id"] != watched["id"]]
    ref = client.db.collection("calendar_channels").document(orphan["id"])
    assert (ref.get().to_dict() or {})["state"] == "pending"
    assert push(client, orphan, **{"X-Goog-Resource-State": "sync"}).status_code == 200
    ref.update({"createdAt": datetime.now(UTC) - timedelta(minutes=10)})

    refused = push(client, orphan)
    renewal = renew(client, force=True).json()

    assert refused.status_code == 404
    assert renewal["outcome"] == "renewed"
    assert sorted(renewal["stoppedChannels"]) == sorted([watched["id"], orphan["id"]])
    assert [c["id"] for c in emulator_channels(client)] == [renewal["channelId"]]
    assert (ref.get().to_dict() or {})["state"] == "stopped"
