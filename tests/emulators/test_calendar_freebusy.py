"""Conformance tests of `freebusy.query`: the real googleapiclient against the Calendar emulator.

Why a file of its own: free/busy needs two accounts behind their tokens (whose calendar is
shared with whom), so its emulator is wired with a `token_email` lookup that the main
conformance file's emulator does not have.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from emulators._base import ServerThread
from emulators.calendar import CalendarEmulator

TEACHER_TOKEN = "ya29.teacher-token"
ANA_TOKEN = "ya29.ana-token"
TEACHER = "teacher@classes.example"
ANA = "ana@example.com"
EMAILS = {TEACHER_TOKEN: TEACHER, ANA_TOKEN: ANA}
ROOM = "guitar-room@group.calendar.google.com"  # a second calendar the teacher writes to
DAY_MIN = "2026-03-02T00:00:00Z"
DAY_MAX = "2026-03-03T00:00:00Z"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    emu = CalendarEmulator(
        check_access_token=lambda token: token in EMAILS,
        token_email=EMAILS.get,
        owner_email=TEACHER,
        notify_timeout_s=1.0,
    )
    server = ServerThread(emu.app.app).start()
    yield server.url
    server.stop()


def make_service(base_url: str, token: str = TEACHER_TOKEN, http: Any = None) -> Any:
    auth: dict[str, Any] = {"http": http} if http else {"credentials": Credentials(token=token)}
    return build(
        "calendar",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": base_url + "/calendar/v3/"},
        **auth,
    )


@pytest.fixture(scope="module")
def service(base_url: str) -> Any:
    return make_service(base_url)


def control(base_url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


@pytest.fixture(autouse=True)
def clean(base_url: str) -> Iterator[None]:
    control(base_url, "POST", "/_emulator/calendar/reset", {})
    control(base_url, "DELETE", "/_emulator/faults")
    control(base_url, "POST", "/_emulator/stats/reset", {})
    yield
    control(base_url, "DELETE", "/_emulator/faults")


def add_event(
    service: Any, start: str, end: str, calendar_id: str = TEACHER, **extra: Any
) -> dict[str, Any]:
    body = {"summary": "Clase", "start": {"dateTime": start}, "end": {"dateTime": end}, **extra}
    event: dict[str, Any] = service.events().insert(calendarId=calendar_id, body=body).execute()
    return event


def query(
    service: Any,
    ids: list[str],
    time_min: str = DAY_MIN,
    time_max: str = DAY_MAX,
    **extra: Any,
) -> dict[str, Any]:
    body = {"timeMin": time_min, "timeMax": time_max, "items": [{"id": i} for i in ids], **extra}
    answer: dict[str, Any] = service.freebusy().query(body=body).execute()
    return answer


def refused(service: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The status and the first error item of a query that must fail."""
    with pytest.raises(HttpError) as exc:
        service.freebusy().query(body=body).execute()
    error = json.loads(exc.value.content)["error"]
    assert error["code"] == exc.value.status_code
    return exc.value.status_code, error["errors"][0]


def span(start: str, end: str) -> dict[str, str]:
    return {"start": start, "end": end}


# -- busy time ------------------------------------------------------------------------------


def test_busy_comes_from_events_that_block_time(service: Any) -> None:
    add_event(service, "2026-03-02T10:00:00-03:00", "2026-03-02T11:00:00-03:00")
    add_event(service, "2026-03-02T15:00:00Z", "2026-03-02T16:00:00Z", status="tentative")
    add_event(service, "2026-03-02T17:00:00Z", "2026-03-02T18:00:00Z", transparency="transparent")
    add_event(service, "2026-03-02T19:00:00Z", "2026-03-02T20:00:00Z", transparency="opaque")
    deleted = add_event(service, "2026-03-02T08:00:00Z", "2026-03-02T09:00:00Z")
    service.events().delete(calendarId=TEACHER, eventId=deleted["id"]).execute()
    add_event(service, "2026-03-02T06:00:00Z", "2026-03-02T07:00:00Z", status="cancelled")
    freed = add_event(service, "2026-03-02T21:00:00Z", "2026-03-02T22:00:00Z")
    service.events().patch(
        calendarId=TEACHER, eventId=freed["id"], body={"transparency": "transparent"}
    ).execute()

    answer = query(service, [TEACHER], "2026-03-02T00:00:00-00:00", "2026-03-03T00:00:00+00:00")
    assert answer == {
        "kind": "calendar#freeBusy",
        "timeMin": "2026-03-02T00:00:00.000Z",
        "timeMax": "2026-03-03T00:00:00.000Z",
        "calendars": {
            TEACHER: {
                "busy": [
                    span("2026-03-02T13:00:00Z", "2026-03-02T14:00:00Z"),  # -03:00 read as UTC
                    span("2026-03-02T15:00:00Z", "2026-03-02T16:00:00Z"),  # tentative blocks
                    span("2026-03-02T19:00:00Z", "2026-03-02T20:00:00Z"),
                ]
            }
        },
    }


def test_busy_is_clipped_to_the_range_and_merged(service: Any) -> None:
    add_event(service, "2026-03-01T22:00:00Z", "2026-03-02T01:00:00Z")  # starts before timeMin
    add_event(service, "2026-03-01T20:00:00Z", "2026-03-02T00:00:00Z")  # ends at timeMin
    add_event(service, "2026-03-02T12:00:00Z", "2026-03-02T13:30:00Z")
    add_event(service, "2026-03-02T13:00:00Z", "2026-03-02T14:00:00Z")  # overlaps the one above
    add_event(service, "2026-03-02T12:30:00Z", "2026-03-02T12:45:00Z")  # inside it
    add_event(service, "2026-03-02T14:00:00Z", "2026-03-02T15:00:00Z")  # back to back
    add_event(service, "2026-03-02T09:00:00Z", "2026-03-02T09:00:00Z")  # no length
    add_event(service, "2026-03-02T23:00:00Z", "2026-03-03T02:00:00Z")  # ends after timeMax
    add_event(service, "2026-03-04T10:00:00Z", "2026-03-04T11:00:00Z")  # outside
    add_event(service, "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z", calendar_id=ROOM)

    answer = query(service, [TEACHER, ROOM])
    assert answer["calendars"][TEACHER]["busy"] == [
        span("2026-03-02T00:00:00Z", "2026-03-02T01:00:00Z"),
        span("2026-03-02T12:00:00Z", "2026-03-02T15:00:00Z"),
        span("2026-03-02T23:00:00Z", "2026-03-03T00:00:00Z"),
    ]
    assert answer["calendars"][ROOM]["busy"] == [
        span("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z")
    ]
    # an all-day event blocks its day (from midnight UTC, as the emulator reads dates)
    service.events().insert(
        calendarId=ROOM,
        body={"summary": "Feriado", "start": {"date": "2026-03-05"}, "end": {"date": "2026-03-06"}},
    ).execute()
    whole = query(service, [ROOM], "2026-03-05T12:00:00Z", "2026-03-07T00:00:00Z")
    assert whole["calendars"][ROOM]["busy"] == [
        span("2026-03-05T12:00:00Z", "2026-03-06T00:00:00Z")
    ]


def test_time_zone_is_checked_and_busy_stays_in_utc(service: Any) -> None:
    add_event(service, "2026-03-02T10:00:00-03:00", "2026-03-02T11:00:00-03:00")
    answer = query(service, [TEACHER], timeZone="America/Argentina/Buenos_Aires")
    assert answer["calendars"][TEACHER]["busy"] == [
        span("2026-03-02T13:00:00Z", "2026-03-02T14:00:00Z")
    ]
    status, error = refused(
        service,
        {"timeMin": DAY_MIN, "timeMax": DAY_MAX, "timeZone": "Mars/Olympus", "items": []},
    )
    assert (status, error["reason"]) == (400, "invalid")


# -- calendars the caller may not see -------------------------------------------------------


def test_unknown_and_unshared_calendars_answer_not_found(service: Any, base_url: str) -> None:
    add_event(service, "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z")
    empty = "empty-room@group.calendar.google.com"
    service.calendars().get(calendarId=empty).execute()  # used once: it exists, with no events
    unknown = "nobody@example.com"

    answer = query(service, [TEACHER, unknown, empty, "primary"])
    not_found = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
    assert answer["calendars"] == {
        TEACHER: {"busy": [span("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z")]},
        unknown: not_found,
        empty: {"busy": []},
        "primary": {"busy": []},  # ids are taken literally, as by events.list
    }

    # the teacher's calendar is not shared with Ana: her query may not see it
    control(base_url, "POST", "/_emulator/calendar/forbid", {"calendarId": TEACHER, "email": ANA})
    ana = make_service(base_url, token=ANA_TOKEN)
    assert query(ana, [TEACHER, ANA])["calendars"] == {TEACHER: not_found, ANA: {"busy": []}}
    assert query(service, [TEACHER])["calendars"][TEACHER]["busy"] != []


# -- refusals -------------------------------------------------------------------------------


def test_more_than_fifty_calendars_are_refused(service: Any) -> None:
    ids = [f"room-{n}@group.calendar.google.com" for n in range(51)]
    status, error = refused(
        service, {"timeMin": DAY_MIN, "timeMax": DAY_MAX, "items": [{"id": i} for i in ids]}
    )
    assert (status, error["reason"], error["domain"]) == (
        400,
        "tooManyCalendarsRequested",
        "global",
    )
    assert len(query(service, ids[:50])["calendars"]) == 50
    # calendarExpansionMax lowers the limit; past its documented maximum it is refused
    status, error = refused(
        service,
        {
            "timeMin": DAY_MIN,
            "timeMax": DAY_MAX,
            "calendarExpansionMax": 2,
            "items": [{"id": i} for i in ids[:3]],
        },
    )
    assert (status, error["reason"]) == (400, "tooManyCalendarsRequested")
    for name, value in (("calendarExpansionMax", 51), ("groupExpansionMax", 101)):
        status, error = refused(
            service, {"timeMin": DAY_MIN, "timeMax": DAY_MAX, name: value, "items": []}
        )
        assert (status, error["reason"], error["location"]) == (400, "invalid", name)


@pytest.mark.parametrize(
    ("time_min", "time_max", "reason", "location"),
    [
        ("2026-03-02T10:00:00Z", "2026-03-02T09:00:00Z", "timeRangeEmpty", "timeMax"),
        ("2026-03-02T10:00:00Z", "2026-03-02T07:00:00-03:00", "timeRangeEmpty", "timeMax"),
        ("2026-01-01T00:00:00Z", "2026-04-01T00:00:01Z", "invalid", "timeMax"),  # 90 days + 1 s
        ("2026-03-02", "2026-03-03T00:00:00Z", "badRequest", "timeMin"),
        ("2026-03-02T10:00:00Z", "tomorrow", "badRequest", "timeMax"),
    ],
)
def test_bad_ranges_are_refused(
    service: Any, time_min: str, time_max: str, reason: str, location: str
) -> None:
    status, error = refused(
        service, {"timeMin": time_min, "timeMax": time_max, "items": [{"id": TEACHER}]}
    )
    assert (status, error["reason"], error["location"]) == (400, reason, location)


def test_ninety_days_is_the_longest_range(service: Any) -> None:
    add_event(service, "2026-02-10T10:00:00Z", "2026-02-10T11:00:00Z")
    answer = query(service, [TEACHER], "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert answer["calendars"][TEACHER]["busy"] == [
        span("2026-02-10T10:00:00Z", "2026-02-10T11:00:00Z")
    ]
    status, error = refused(service, {"timeMax": DAY_MAX, "items": []})
    assert (status, error["reason"], error["location"]) == (400, "required", "timeMin")


def test_free_busy_needs_a_bearer_token(base_url: str) -> None:
    anonymous = make_service(base_url, http=httplib2.Http(timeout=5))
    with pytest.raises(HttpError) as exc:
        query(anonymous, [TEACHER])
    assert exc.value.status_code == 401


# -- usage limits and injected faults -------------------------------------------------------


def test_free_busy_counts_against_the_per_user_rate(service: Any, base_url: str) -> None:
    control(
        base_url,
        "POST",
        "/_emulator/calendar/quota",
        {"requestsPerMinute": 2, "rateLimitStatus": 429},
    )
    service.events().list(calendarId=TEACHER).execute()
    query(service, [TEACHER])
    status, error = refused(service, {"timeMin": DAY_MIN, "timeMax": DAY_MAX, "items": []})
    assert (status, error["reason"], error["domain"]) == (429, "rateLimitExceeded", "usageLimits")
    # another user has a window of its own
    assert query(make_service(base_url, token=ANA_TOKEN), [ANA])["calendars"] == {ANA: {"busy": []}}
    state = control(base_url, "GET", "/_emulator/calendar/quota")
    assert state["requests"] == {TEACHER: 2, ANA: 1}
    assert state["rejected"] == {"rateLimitExceeded": 1}


def test_injected_per_calendar_error(service: Any, base_url: str) -> None:
    add_event(service, "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z")
    add_event(service, "2026-03-02T12:00:00Z", "2026-03-02T13:00:00Z", calendar_id=ROOM)
    fault_route = "/_emulator/calendar/freebusy-errors"
    assert control(base_url, "POST", fault_route, {"calendarId": ROOM, "count": 1}) == {
        ROOM: {"reason": "internalError", "count": 1}
    }
    answer = query(service, [TEACHER, ROOM])
    assert answer["calendars"][ROOM] == {
        "errors": [{"domain": "global", "reason": "internalError"}],
        "busy": [],
    }
    assert answer["calendars"][TEACHER]["busy"] != []  # the other calendar is unaffected
    # count=1: the next query sees the room again
    assert query(service, [ROOM])["calendars"][ROOM]["busy"] == [
        span("2026-03-02T12:00:00Z", "2026-03-02T13:00:00Z")
    ]
    assert control(base_url, "GET", fault_route) == {}
    # without a count the error stays until DELETE (or reset); any reason can be injected
    control(base_url, "POST", fault_route, {"calendarId": TEACHER, "reason": "backendError"})
    for _ in range(2):
        assert query(service, [TEACHER])["calendars"][TEACHER]["errors"][0]["reason"] == (
            "backendError"
        )
    control(base_url, "DELETE", fault_route)
    assert "errors" not in query(service, [TEACHER])["calendars"][TEACHER]
    req = urllib.request.Request(
        base_url + fault_route,
        data=json.dumps({"calendarId": ROOM, "count": 0}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 400


def test_whole_request_faults_hit_free_busy(service: Any, base_url: str) -> None:
    control(
        base_url,
        "POST",
        "/_emulator/faults",
        {
            "rules": [
                {"status": 503, "reason": "backendError", "count": 1, "pathContains": "/freeBusy"}
            ]
        },
    )
    service.events().list(calendarId=TEACHER).execute()  # another path is not hit
    body = {"timeMin": DAY_MIN, "timeMax": DAY_MAX, "items": [{"id": TEACHER}]}
    status, error = refused(service, body)
    assert (status, error["reason"]) == (503, "backendError")
    control(
        base_url,
        "POST",
        "/_emulator/faults",
        {
            "rules": [
                {"status": 503, "reason": "backendError", "count": 1, "pathContains": "/freeBusy"}
            ]
        },
    )
    retried = service.freebusy().query(body=body)
    retried._sleep = lambda _seconds: None  # skip googleapiclient's backoff sleep
    assert retried.execute(num_retries=2)["calendars"] == {TEACHER: {"busy": []}}
    stats = control(base_url, "GET", "/_emulator/stats")["calls"]
    assert stats["POST /calendar/v3/freeBusy"] == 3
