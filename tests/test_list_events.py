"""list_events against the emulators: who may list, what they see, page by page."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as gexc

from devstack.client import StackClient
from devstack.instrument import firestore_rpcs
from devstack.when import BASE_DAY, CLASS_DAYS_AHEAD, ZONE, at, day, iso, wall
from shared.adapters.clients import firestore_client, reset_clients
from shared.adapters.google_calendar import class_event_body
from shared.domain.bookings import Booking, event_id_for_booking
from shared.views import listing

pytestmark = pytest.mark.usefixtures("stack")

DAYS = CLASS_DAYS_AHEAD
"""The tests' class day, this many days ahead: DAY is its midnight in Buenos Aires."""
DAY = at(DAYS, 0)
WINDOW = {"from": iso(DAYS, 0), "to": iso(DAYS + 7, 0)}


# -- helpers ------------------------------------------------------------------------------


def _next_july_15() -> int:
    """Days from the base day to the next 15 July: Argentine winter."""
    july = BASE_DAY.replace(month=7, day=15)
    if july <= BASE_DAY:
        july = july.replace(year=july.year + 1)
    return (july - BASE_DAY).days


def _utc(moment: datetime) -> str:
    """`moment` in UTC, written with a Z: `...T01:30:00Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _url(client: StackClient) -> str:
    return str(client.doc["functions"]["list_events"])


def _api_key(client: StackClient) -> dict[str, str]:
    return {"X-API-Key": client.doc["secrets"]["admin_api_key"]}


def _list(client: StackClient, headers: dict[str, str] | None = None, **params: str) -> Any:
    return requests.get(
        _url(client),
        params=params,
        headers=_api_key(client) if headers is None else headers,
        timeout=30,
    )


def _id_token(client: StackClient, **claims: Any) -> str:
    body = {
        "email": client.doc["admin_email"],
        "audience": client.doc["env"]["ID_TOKEN_AUDIENCE"],
        **claims,
    }
    response = requests.post(
        client.doc["emulators"]["oauth"] + "/_emulator/oauth/id-token", json=body, timeout=10
    )
    response.raise_for_status()
    return str(response.json()["id_token"])


def _class(
    client: StackClient,
    start: datetime,
    *,
    booking: bool = True,
    minutes: int = 60,
    calendar_id: str = "",
    **booking_fields: Any,
) -> str:
    """A paid class: its booking in Firestore and its event (with Meet) in Calendar (the
    platform's, unless `calendar_id` says another)."""
    booking_id = client.seed_booking(
        start=start.isoformat(),
        end=(start + timedelta(minutes=minutes)).isoformat(),
        **{"status": "scheduled", "paymentStatus": "approved", **booking_fields},
    )
    doc = client.booking(booking_id)
    body = class_event_body(Booking.from_document(booking_id, doc), "pay-1")
    event = (
        client.calendar.events()
        .insert(
            calendarId=calendar_id or client.doc["calendar_id"],
            body=body,
            conferenceDataVersion=1,
        )
        .execute()
    )
    client.db.collection("bookings").document(booking_id).update(
        {"googleEventId": event["id"], "meetLink": event.get("hangoutLink", "")}
    )
    if not booking:
        client.db.collection("bookings").document(booking_id).delete()
    return booking_id


def _plain_event(
    client: StackClient, start: datetime, summary: str = "Reunión docente", calendar_id: str = ""
) -> str:
    """An event someone put in the calendar by hand: no booking behind it."""
    body = {
        "summary": summary,
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
    }
    event = client.calendar.events().insert(
        calendarId=calendar_id or client.doc["calendar_id"], body=body
    )
    return str(event.execute()["id"])


class _FailingQueries:
    """Within the block, Firestore queries of `client` fail as a missing index does."""

    def __init__(self, firestore: Any) -> None:
        self._api = firestore._firestore_api
        self._original = self._api.run_query
        self.refused = 0

    def __enter__(self) -> None:
        def run_query(*args: Any, **kwargs: Any) -> Any:
            self.refused += 1
            raise gexc.FailedPrecondition("The query requires an index.")

        self._api.run_query = run_query

    def __exit__(self, *exc: object) -> None:
        self._api.run_query = self._original


# -- who may list -------------------------------------------------------------------------


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0xFF
    return f"{header}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("none", 401),
        ("not a bearer", 401),
        ("malformed", 401),
        ("bad signature", 401),
        ("expired", 401),
        ("wrong audience", 401),
        ("unverified email", 403),
        ("not an admin", 403),
        ("admin", 200),
        ("api key", 200),
        ("wrong api key", 401),
    ],
)
def test_only_admins_may_list(client: StackClient, case: str, expected: int) -> None:
    headers = {
        "none": lambda: {},
        "not a bearer": lambda: {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "malformed": lambda: {"Authorization": "Bearer not.a-jwt"},
        "bad signature": lambda: {"Authorization": f"Bearer {_tampered(_id_token(client))}"},
        "expired": lambda: {
            "Authorization": f"Bearer {_id_token(client, iat_offset=-7200, expires_in=3600)}"
        },
        "wrong audience": lambda: {
            "Authorization": f"Bearer {_id_token(client, audience='another-service')}"
        },
        "unverified email": lambda: {
            "Authorization": f"Bearer {_id_token(client, email_verified=False)}"
        },
        "not an admin": lambda: {
            "Authorization": f"Bearer {_id_token(client, email='student@example.com')}"
        },
        "admin": lambda: {"Authorization": f"Bearer {_id_token(client)}"},
        "api key": lambda: _api_key(client),
        "wrong api key": lambda: {"X-API-Key": "not-the-key"},
    }[case]()

    response = _list(client, headers, **WINDOW)

    assert response.status_code == expected, response.text
    if expected != 200:
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] in ("unauthenticated", "forbidden")


def _forged_id_token(client: StackClient) -> str:
    """An admin's claims signed by a key Google never published (a `kid` nobody knows)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": client.doc["env"]["ID_TOKEN_AUDIENCE"],
        "email": client.doc["admin_email"],
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    return pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": uuid.uuid4().hex})


def _certificate_fetches(client: StackClient) -> int:
    return client.stats("oauth").get("GET /oauth2/v1/certs", 0)


def test_tokens_with_unknown_kids_fetch_googles_certificates_once_per_interval(
    client: StackClient,
) -> None:
    forged = [{"Authorization": f"Bearer {_forged_id_token(client)}"} for _ in range(20)]
    client.reset_stats("oauth")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda headers: _list(client, headers, **WINDOW), forged))
    admin = _list(client, {"Authorization": f"Bearer {_id_token(client)}"}, **WINDOW)

    assert [a.status_code for a in answers] == [401] * 20
    assert _certificate_fetches(client) == 1  # the first unknown kid fetched; none after
    assert admin.status_code == 200  # Google's real keys came with that one fetch


def test_an_admin_does_not_wait_behind_forged_tokens_while_certificates_are_slow(
    client: StackClient,
) -> None:
    admin = {"Authorization": f"Bearer {_id_token(client)}"}
    assert _list(client, admin, **WINDOW).status_code == 200  # the certificates are cached
    client.set_faults("oauth", {"rules": [{"pathContains": "/certs", "latencyMs": 2000}]})
    forged = [{"Authorization": f"Bearer {_forged_id_token(client)}"} for _ in range(6)]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(_list, client, headers, **WINDOW) for headers in forged]
        time.sleep(0.2)
        started = time.monotonic()
        genuine = _list(client, admin, **WINDOW)
        waited = time.monotonic() - started
        refused = [future.result() for future in pending]

    assert genuine.status_code == 200
    assert waited < 1.5, f"the admin waited {waited:.1f}s"
    assert [r.status_code for r in refused] == [401] * 6


def test_an_id_token_of_deeply_nested_json_is_a_401(client: StackClient) -> None:
    nested = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    token = f"{nested}.{nested}.c2ln"

    response = _list(client, {"Authorization": f"Bearer {token}"}, **WINDOW)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_only_get_is_allowed(client: StackClient) -> None:
    response = requests.post(_url(client), headers=_api_key(client), timeout=10)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": day(DAYS).isoformat()}, "from"),  # a date without a time
        ({"from": wall(DAYS, 10)}, "from"),  # no offset
        ({"from": "tomorrow"}, "from"),
        ({"to": f"{day(DAYS):%Y}-13-01T10:00:00-03:00"}, "to"),  # no 13th month
        ({"from": iso(DAYS + 1, 0), "to": iso(DAYS, 0)}, "to"),
        ({"from": iso(DAYS, 0), "to": iso(DAYS, 0)}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "251"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"pageToken": "garbage"}, "pageToken"),
        ({"teacher": "ana"}, "teacher"),
        ({"status": "paid-ish"}, "status"),
        ({"format": "xml"}, "format"),
        ({"format": "ics", "limit": "10"}, "limit"),
        ({"sort": "start"}, "sort"),
    ],
)
def test_every_invalid_parameter_is_a_400_naming_it(
    client: StackClient, params: dict[str, str], named: str
) -> None:
    response = _list(client, **params)

    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


def test_repeated_parameter_is_a_400(client: StackClient) -> None:
    response = requests.get(_url(client) + "?limit=5&limit=6", headers=_api_key(client), timeout=10)

    assert response.status_code == 400
    assert "limit" in response.json()["error"]["message"]


def test_unencoded_plus_in_an_offset_is_understood(client: StackClient) -> None:
    _class(client, DAY.replace(hour=10))

    response = requests.get(
        _url(client) + f"?from={wall(DAYS, 12)}+03:00&to={iso(DAYS + 1, 0)}",
        headers=_api_key(client),
        timeout=10,
    )

    assert response.status_code == 200, response.text
    assert response.json()["from"] == iso(DAYS, 6)
    assert len(response.json()["events"]) == 1


def test_default_window_is_now_to_thirty_days(client: StackClient) -> None:
    now = datetime.now(ZONE)
    soon = _class(client, (now + timedelta(days=2)).replace(microsecond=0))
    _class(client, (now + timedelta(days=40)).replace(microsecond=0))
    _class(client, (now - timedelta(days=2)).replace(microsecond=0))

    body = _list(client).json()

    assert [e["bookingId"] for e in body["events"]] == [soon]
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert abs((start - now).total_seconds()) < 120
    assert end - start == timedelta(days=30)


# -- what an admin sees -------------------------------------------------------------------


def test_events_are_joined_with_their_bookings(client: StackClient) -> None:
    booking_id = _class(
        client,
        DAY.replace(hour=18),
        student={"name": "Juan Pérez", "email": "juan.perez@example.com"},
    )
    orphan_id = _class(client, DAY.replace(hour=19), booking=False)
    plain_id = _plain_event(client, DAY.replace(hour=20))

    events = _list(client, **WINDOW).json()["events"]

    booked, orphan, plain = events
    assert booked["id"] == event_id_for_booking(booking_id)
    assert booked["bookingId"] == booking_id
    assert booked["hasBooking"] is True
    assert booked["status"] == "scheduled"
    assert booked["paymentStatus"] == "approved"
    assert booked["student"] == {"name": "Juan Pérez", "email": "juan.perez@example.com"}
    assert booked["teacher"] == {"name": "Ana Gómez", "email": "ana.gomez@example.com"}
    assert booked["meetLink"].startswith("https://meet.google.com/")
    assert booked["meetLink"] == client.booking(booking_id)["meetLink"]
    assert booked["htmlLink"]
    assert booked["summary"] == "Álgebra I con Ana Gómez"
    assert {(a["email"], a["responseStatus"]) for a in booked["attendees"]} == {
        ("juan.perez@example.com", "needsAction"),
        ("ana.gomez@example.com", "needsAction"),
    }
    assert orphan["bookingId"] == orphan_id
    assert orphan["hasBooking"] is False
    assert orphan["student"] is None
    assert plain["id"] == plain_id
    assert plain["bookingId"] is None
    assert plain["hasBooking"] is False
    assert plain["paymentStatus"] is None


def test_attendee_response_status_is_shown(client: StackClient) -> None:
    booking_id = _class(client, DAY.replace(hour=18))
    client.calendar.events().patch(
        calendarId=client.doc["calendar_id"],
        eventId=event_id_for_booking(booking_id),
        body={
            "attendees": [
                {"email": "juan.perez@example.com", "responseStatus": "accepted"},
                {"email": "ana.gomez@example.com", "responseStatus": "declined"},
            ]
        },
    ).execute()

    [event] = _list(client, **WINDOW).json()["events"]

    assert {a["email"]: a["responseStatus"] for a in event["attendees"]} == {
        "juan.perez@example.com": "accepted",
        "ana.gomez@example.com": "declined",
    }


def test_times_are_buenos_aires_time_across_the_utc_date_boundary(client: StackClient) -> None:
    # 22:30 in Buenos Aires is 01:30 UTC of the next day; the event is stored in UTC.
    late_id = _plain_event(client, at(DAYS, 22, 30).astimezone(UTC), "Tarde")
    early_next_day = _plain_event(client, at(DAYS + 1, 0, 30).astimezone(UTC))
    july_15 = _next_july_15()
    winter = _plain_event(client, at(july_15, 18).astimezone(UTC), "Invierno")

    argentine_day = _list(client, **{"from": iso(DAYS, 0), "to": iso(DAYS + 1, 0)}).json()
    # 15 July from midnight to midnight UTC: 21:00 the day before in Buenos Aires.
    july_window = {"from": _utc(at(july_15 - 1, 21)), "to": _utc(at(july_15, 21))}
    july = _list(client, **july_window).json()

    [late] = argentine_day["events"]
    assert late["id"] == late_id != early_next_day
    assert late["start"] == iso(DAYS, 22, 30)
    assert late["end"] == iso(DAYS, 23, 30)
    [july_event] = july["events"]
    assert july_event["id"] == winter
    # No daylight saving in Argentina: the offset is -03:00 in summer and in winter alike.
    assert july_event["start"] == iso(july_15, 18)
    assert july_event["start"].endswith("T18:00:00-03:00")
    assert july["from"] == iso(july_15 - 1, 21)


def test_three_pages_list_every_event_once_in_order(client: StackClient) -> None:
    ids = [_class(client, DAY + timedelta(hours=9 + n)) for n in range(7)]
    seen: list[str] = []
    token: str | None = None
    pages = 0

    while True:
        params = {**WINDOW, "limit": "3", **({"pageToken": token} if token else {})}
        body = _list(client, **params).json()
        pages += 1
        seen.extend(e["bookingId"] for e in body["events"])
        token = body["nextPageToken"]
        if not token:
            break

    assert pages == 3
    assert seen == ids


def test_later_pages_keep_the_default_window(client: StackClient) -> None:
    now = datetime.now(ZONE).replace(microsecond=0)
    ids = [_class(client, now + timedelta(days=1, hours=n)) for n in range(3)]

    first = _list(client, limit="2").json()
    second = _list(client, pageToken=first["nextPageToken"]).json()

    assert second["from"] == first["from"]
    assert [e["bookingId"] for e in first["events"] + second["events"]] == ids


def test_page_token_of_another_window_is_a_400(client: StackClient) -> None:
    for n in range(3):
        _class(client, DAY + timedelta(hours=9 + n))
    token = _list(client, **WINDOW, limit="1").json()["nextPageToken"]

    response = _list(client, pageToken=token, **{**WINDOW, "to": iso(DAYS + 8, 0)})

    assert response.status_code == 400
    assert "pageToken" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ({"to": "9999-12-31T23:59:59-14:00", "from": WINDOW["from"]}, "to"),
        ({"from": "9999-12-31T00:00:00+00:00"}, "from"),  # and the default 30 days after it
        ({"from": "1969-12-31T23:59:59+00:00", "to": WINDOW["to"]}, "from"),
    ],
)
def test_an_instant_at_the_ends_of_the_calendar_is_a_400(
    client: StackClient, params: dict[str, str], named: str
) -> None:
    response = _list(client, **params)

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{named} must")
    assert client.stats("calendar") == {}


def test_a_limit_of_five_thousand_digits_is_a_400(client: StackClient) -> None:
    response = _list(client, limit="9" * 5000, **WINDOW)

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("limit must")


def _crafted_token(**fields: str) -> str:
    raw = {"m": "admin", "f": WINDOW["from"], "t": WINDOW["to"], "g": "", **fields}
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        _crafted_token(f="0001-01-01T00:00:00+14:00"),
        _crafted_token(t="9999-12-31T23:59:59-14:00"),
        _crafted_token(f=wall(DAYS, 0)),  # no offset
        base64.urlsafe_b64encode(b"[" * 3000).decode(),
        "A" * 5000,
    ],
    ids=["year 1", "year 10000", "naive", "nested json", "long"],
)
def test_a_crafted_page_token_is_a_400(client: StackClient, token: str) -> None:
    response = _list(client, pageToken=token)

    assert response.status_code == 400
    assert "pageToken" in response.json()["error"]["message"]
    assert client.stats("calendar") == {}


def test_teacher_and_status_filter_after_the_join(client: StackClient) -> None:
    beto = {"name": "Beto Ruiz", "email": "beto.ruiz@example.com"}
    mine = _class(client, DAY.replace(hour=9), teacher=beto)
    _class(client, DAY.replace(hour=10))
    cancelled = _class(client, DAY.replace(hour=11), teacher=beto, status="cancelled")
    _plain_event(client, DAY.replace(hour=12))

    by_teacher = _list(client, **WINDOW, teacher="Beto.Ruiz@example.com").json()["events"]
    by_both = _list(client, **WINDOW, teacher="beto.ruiz@example.com", status="scheduled").json()[
        "events"
    ]

    assert [e["bookingId"] for e in by_teacher] == [mine, cancelled]
    assert [e["bookingId"] for e in by_both] == [mine]


def test_filtered_pages_may_be_short_but_paging_finds_every_match(client: StackClient) -> None:
    beto = {"name": "Beto Ruiz", "email": "beto.ruiz@example.com"}
    wanted = [
        _class(client, DAY + timedelta(hours=9 + n), **({"teacher": beto} if n in (1, 5) else {}))
        for n in range(6)
    ]
    found: list[list[str]] = []
    token: str | None = None
    while True:
        params = {**WINDOW, "limit": "2", "teacher": beto["email"]}
        body = _list(client, **params, **({"pageToken": token} if token else {})).json()
        found.append([e["bookingId"] for e in body["events"]])
        token = body["nextPageToken"]
        if not token:
            break

    assert found == [[wanted[1]], [], [wanted[5]]]


def _rpcs_per_page(client: StackClient, **params: str) -> tuple[list[dict[str, int]], list[Any]]:
    """Page through the window; the Firestore RPCs of each page (the function runs in this
    process: its Firestore client is the one counted) and the events listed."""
    token: str | None = None
    per_page: list[dict[str, int]] = []
    events: list[Any] = []
    while True:
        query = {**WINDOW, **params, **({"pageToken": token} if token else {})}
        with firestore_rpcs(firestore_client()) as rpcs:
            body = _list(client, **query).json()
        per_page.append(dict(rpcs))
        events += body["events"]
        token = body["nextPageToken"]
        if not token:
            return per_page, events


def test_one_firestore_query_per_page_read_beside_calendar(client: StackClient) -> None:
    for n in range(7):
        _class(client, DAY + timedelta(hours=9 + n))
    _plain_event(client, DAY + timedelta(hours=20))

    per_page, events = _rpcs_per_page(client, limit="3")

    assert per_page == [{"run_query": 1}] * 3
    assert [e["hasBooking"] for e in events] == [True] * 7 + [False]


def test_each_page_reads_ahead_from_where_the_previous_page_ended(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Page tokens carry the page's last start: with no more slack than the class that
    ended the previous page, every page still finds its booking read ahead."""
    monkeypatch.setattr(listing, "PREFETCH_SLACK", 1)
    for n in range(4):
        _class(client, DAY + timedelta(hours=9 + n))

    per_page, events = _rpcs_per_page(client, limit="1")

    assert per_page == [{"run_query": 1}] * 4
    assert [e["start"][11:16] for e in events] == ["09:00", "10:00", "11:00", "12:00"]


def test_bookings_the_read_ahead_misses_are_read_after_the_page(client: StackClient) -> None:
    """A booking not `scheduled` (its cancel half done), or whose times are Firestore
    timestamps rather than ISO strings, is not among the bookings read ahead: one batched
    read after the page joins both."""
    half_cancelled = _class(client, DAY.replace(hour=9), status="cancelled")
    timestamps = _class(client, DAY.replace(hour=10))
    client.db.collection("bookings").document(timestamps).update(
        {"start": DAY.replace(hour=10), "end": DAY.replace(hour=11)}
    )
    scheduled = _class(client, DAY.replace(hour=11))

    per_page, events = _rpcs_per_page(client)

    assert per_page == [{"run_query": 1, "batch_get_documents": 1}]
    assert [(e["bookingId"], e["status"]) for e in events] == [
        (half_cancelled, "cancelled"),
        (timestamps, "scheduled"),
        (scheduled, "scheduled"),
    ]


def test_a_failed_read_ahead_still_answers_with_every_booking(client: StackClient) -> None:
    booking_id = _class(client, DAY.replace(hour=9))
    failing = _FailingQueries(firestore_client())

    with failing:
        events = _list(client, **WINDOW).json()["events"]

    assert failing.refused == 1
    assert [(e["bookingId"], e["status"]) for e in events] == [(booking_id, "scheduled")]


def test_ics_feed_parses_back_with_the_same_classes(client: StackClient) -> None:
    late = _class(client, DAY.replace(hour=22, minute=30))
    early = _class(client, DAY.replace(hour=9))
    _plain_event(client, DAY.replace(hour=12))

    response = _list(client, **WINDOW, format="ics")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/calendar")
    feed = icalendar.Calendar.from_ical(response.content)
    events = feed.walk("VEVENT")
    assert len(events) == 3
    assert [str(e["SUMMARY"]) for e in events] == [
        "Álgebra I con Ana Gómez",
        "Reunión docente",
        "Álgebra I con Ana Gómez",
    ]
    last = events[-1]
    assert last.decoded("DTSTART") == at(DAYS, 22, 30)
    assert last["DTSTART"].params["TZID"] == "America/Argentina/Buenos_Aires"
    assert str(last["UID"]).startswith(event_id_for_booking(late))
    assert str(last["LOCATION"]).startswith("https://meet.google.com/")
    assert f"Reserva: {late}" in str(last["DESCRIPTION"])
    attendees = {str(a) for a in last.get("ATTENDEE")}
    assert attendees == {"mailto:juan.perez@example.com", "mailto:ana.gomez@example.com"}
    assert str(events[0]["UID"]).startswith(event_id_for_booking(early))
    assert feed.walk("VTIMEZONE")[0]["TZID"] == "America/Argentina/Buenos_Aires"


def test_an_ics_feed_of_several_pages_reads_each_page_s_bookings_beside_it(
    client: StackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed asks for its next Calendar page while it joins the current one; every class
    still comes once, in order, with its booking, and each page costs one Firestore query."""
    monkeypatch.setattr(listing, "FEED_PAGE_SIZE", 2)  # the function runs in this process
    booked = [_class(client, DAY + timedelta(hours=9 + n)) for n in range(5)]

    with firestore_rpcs(firestore_client()) as rpcs:
        response = _list(client, **WINDOW, format="ics")

    events = icalendar.Calendar.from_ical(response.content).walk("VEVENT")
    assert [str(e["UID"]).split("@")[0] for e in events] == [
        event_id_for_booking(b) for b in booked
    ]
    assert all("(scheduled)" in str(e["DESCRIPTION"]) for e in events)
    assert dict(rpcs) == {"run_query": 3}


def test_etag_answers_304_to_a_matching_if_none_match(client: StackClient) -> None:
    _class(client, DAY.replace(hour=9))

    first = _list(client, **WINDOW)
    again = _list(client, {**_api_key(client), "If-None-Match": first.headers["ETag"]}, **WINDOW)
    _class(client, DAY.replace(hour=10))
    changed = _list(client, {**_api_key(client), "If-None-Match": first.headers["ETag"]}, **WINDOW)

    assert first.headers["Cache-Control"] == "private, max-age=30"
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert changed.status_code == 200
    assert changed.headers["ETag"] != first.headers["ETag"]


def test_calendar_outage_is_a_503(client: StackClient) -> None:
    client.set_faults(
        "calendar", {"rules": [{"status": 500, "reason": "backendError", "method": "GET"}]}
    )

    response = _list(client, **WINDOW)

    assert response.status_code == 503
    assert response.headers["Retry-After"]


# -- public read --------------------------------------------------------------------------


PUBLIC_CALENDAR = "clases-publicas@demo-virtual-classes.local"


@pytest.fixture
def public_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLIC_EVENTS_ENABLED", "true")
    monkeypatch.setenv("PUBLIC_CALENDAR_ID", PUBLIC_CALENDAR)
    reset_clients()


def _public(client: StackClient, **params: str) -> Any:
    return requests.get(_url(client), params={"public": "1", **params}, timeout=30)


def test_public_listing_is_off_by_default(client: StackClient) -> None:
    response = _public(client, **WINDOW)

    assert response.status_code == 404


@pytest.mark.parametrize("public_calendar", ["", "platform"])
def test_public_listing_needs_a_public_calendar_of_its_own(
    client: StackClient,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    public_calendar: str,
) -> None:
    """The platform's calendar holds attendees and Meet links: it is never the public one."""
    monkeypatch.setenv("PUBLIC_EVENTS_ENABLED", "true")
    same = client.doc["calendar_id"] if public_calendar == "platform" else ""
    monkeypatch.setenv("PUBLIC_CALENDAR_ID", same)
    monkeypatch.setattr(listing, "_warned_unconfigured", False)
    reset_clients()
    _class(client, DAY.replace(hour=18))
    client.reset_stats("calendar")
    capfd.readouterr()

    answers = [_public(client, **WINDOW) for _ in range(2)]

    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json()["error"]["message"] == "public feed not configured"
    assert client.stats("calendar") == {}  # nothing was read
    warnings = [
        line for line in capfd.readouterr().out.splitlines() if "PUBLIC_CALENDAR_ID" in line
    ]
    assert len(warnings) == 1


@pytest.mark.usefixtures("public_mode")
def test_public_listing_shows_title_and_times_only(client: StackClient) -> None:
    _class(client, DAY.replace(hour=18), calendar_id=PUBLIC_CALENDAR)
    _plain_event(client, DAY.replace(hour=20), "Taller abierto", calendar_id=PUBLIC_CALENDAR)
    _plain_event(client, DAY.replace(hour=19), "Clase privada")  # the platform's calendar
    requests.post(client.doc["emulators"]["oauth"] + "/_emulator/oauth/stats/reset", timeout=5)

    response = _public(client, **WINDOW)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["events"] == [
        {
            "summary": "Álgebra I con Ana Gómez",
            "start": iso(DAYS, 18),
            "end": iso(DAYS, 19),
        },
        {
            "summary": "Taller abierto",
            "start": iso(DAYS, 20),
            "end": iso(DAYS, 21),
        },
    ]
    assert "@" not in response.text
    assert "meet.google.com" not in response.text
    assert response.headers["Cache-Control"].startswith("public")
    oauth_stats = requests.get(
        client.doc["emulators"]["oauth"] + "/_emulator/oauth/stats", timeout=5
    ).json()
    assert oauth_stats["tokenRequests"] == 0  # an API key, no OAuth


@pytest.mark.usefixtures("public_mode")
def test_public_ics_feed_leaks_no_private_field(client: StackClient) -> None:
    _class(client, DAY.replace(hour=18), calendar_id=PUBLIC_CALENDAR)

    response = _public(client, **WINDOW, format="ics")

    assert response.status_code == 200
    [event] = icalendar.Calendar.from_ical(response.content).walk("VEVENT")
    assert set(event) == {"UID", "DTSTAMP", "SUMMARY", "DTSTART", "DTEND"}
    assert b"@example.com" not in response.content
    assert b"meet.google.com" not in response.content


@pytest.mark.usefixtures("public_mode")
@pytest.mark.parametrize("name", ["teacher", "status"])
def test_public_listing_refuses_booking_filters(client: StackClient, name: str) -> None:
    response = _public(client, **{name: "x"})

    assert response.status_code == 400
    assert name in response.json()["error"]["message"]


@pytest.mark.usefixtures("public_mode")
def test_the_public_feed_with_a_window_past_the_year_9999_is_a_400(client: StackClient) -> None:
    response = _public(client, **{"from": "9999-12-31T00:00:00+00:00"})  # no credential

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("from must")
    assert client.stats("calendar") == {}


@pytest.mark.usefixtures("public_mode")
def test_public_page_token_is_not_an_admin_page_token(client: StackClient) -> None:
    for n in range(3):
        _class(client, DAY + timedelta(hours=9 + n))
    admin_token = _list(client, **WINDOW, limit="1").json()["nextPageToken"]

    response = _public(client, pageToken=admin_token)

    assert response.status_code == 400
    assert "pageToken" in response.json()["error"]["message"]
