"""Conformance tests: the real googleapiclient (static discovery) against the Calendar emulator.

Each test drives the emulator the way production code does, so a pass means our client code
sees what Google would send, errors included.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request as WzRequest
from werkzeug.wrappers import Response as WzResponse

from emulators import EmulatorCredentials, RunningEmulators, start_emulators
from emulators._base import ServerThread
from emulators.calendar import CalendarEmulator, meet_code

TOKEN = "ya29.emulator-test-token"
OTHER_TOKEN = "ya29.another-user-token"  # a second user, for per-user quotas
CAL = "primary"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[CalendarEmulator, str]]:
    emu = CalendarEmulator(
        check_access_token=lambda token: token in (TOKEN, OTHER_TOKEN), notify_timeout_s=1.0
    )
    server = ServerThread(emu.app.app).start()
    yield emu, server.url
    server.stop()


@pytest.fixture(scope="module")
def base_url(emulator: tuple[CalendarEmulator, str]) -> str:
    return emulator[1]


def make_service(base_url: str, http: Any = None, token: str = TOKEN) -> Any:
    kwargs: dict[str, Any] = (
        {"http": http} if http is not None else {"credentials": Credentials(token=token)}
    )
    return build(
        "calendar",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": base_url + "/calendar/v3/"},
        **kwargs,
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


class Receiver:
    """A tiny webhook receiver on 127.0.0.1 that records every notification."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = WzRequest(environ)
        with self._cond:
            self.messages.append(
                {"path": req.path, "headers": dict(req.headers), "body": req.get_data()}
            )
            self._cond.notify_all()
        return WzResponse(status=200)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def event_body(
    start: str = "2026-03-02T10:00:00-03:00", end: str = "2026-03-02T11:00:00-03:00", **extra: Any
) -> dict[str, Any]:
    return {
        "summary": "Clase de guitarra",
        "start": {"dateTime": start, "timeZone": "America/Sao_Paulo"},
        "end": {"dateTime": end, "timeZone": "America/Sao_Paulo"},
        **extra,
    }


def meet_request(request_id: str = "booking-1") -> dict[str, Any]:
    return {
        "createRequest": {
            "requestId": request_id,
            "conferenceSolutionKey": {"type": "hangoutsMeet"},
        }
    }


def error_of(exc: pytest.ExceptionInfo[HttpError]) -> dict[str, Any]:
    return json.loads(exc.value.content)["error"]


def reason_of(exc: pytest.ExceptionInfo[HttpError]) -> str:
    return str(error_of(exc)["errors"][0]["reason"])


# -- insert, ids, conferences ---------------------------------------------------------------


def test_insert_fills_the_event_resource(service: Any) -> None:
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(attendees=[{"email": "alumno@example.com"}], description="Acordes"),
        )
        .execute()
    )
    assert ev["kind"] == "calendar#event"
    assert ev["status"] == "confirmed"
    assert ev["etag"].startswith('"')
    assert ev["htmlLink"].startswith("https://www.google.com/calendar/event?eid=")
    assert ev["created"].endswith("Z") and len(ev["created"]) == len("2026-01-01T00:00:00.000Z")
    assert ev["updated"] >= ev["created"]
    assert ev["iCalUID"] == ev["id"] + "@google.com"
    assert ev["sequence"] == 0
    assert ev["organizer"]["self"] is True and ev["creator"]["email"]
    assert ev["attendees"] == [{"email": "alumno@example.com", "responseStatus": "needsAction"}]
    assert ev["start"] == {"dateTime": "2026-03-02T10:00:00-03:00", "timeZone": "America/Sao_Paulo"}
    assert ev["reminders"] == {"useDefault": True}
    assert set(ev["id"]) <= set("0123456789abcdefghijklmnopqrstuv")
    assert "conferenceData" not in ev and "hangoutLink" not in ev


def test_meet_link_only_with_conference_data_version_1(service: Any) -> None:
    plain = (
        service.events()
        .insert(calendarId=CAL, body=event_body(conferenceData=meet_request("r-plain")))
        .execute()
    )
    assert "conferenceData" not in plain and "hangoutLink" not in plain

    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(conferenceData=meet_request("r-1")),
            conferenceDataVersion=1,
        )
        .execute()
    )
    conf = ev["conferenceData"]
    code = meet_code("r-1")
    assert conf["createRequest"]["status"]["statusCode"] == "success"
    assert conf["createRequest"]["requestId"] == "r-1"
    assert conf["conferenceId"] == code
    assert conf["conferenceSolution"]["key"]["type"] == "hangoutsMeet"
    assert conf["conferenceSolution"]["name"] == "Google Meet"
    video = [e for e in conf["entryPoints"] if e["entryPointType"] == "video"]
    assert video[0]["uri"] == f"https://meet.google.com/{code}"
    assert ev["hangoutLink"] == video[0]["uri"]
    assert len(code) == 12 and code[3] == "-" and code[8] == "-"


def test_patch_or_update_without_version_keeps_conference(service: Any) -> None:
    ev = (
        service.events()
        .insert(
            calendarId=CAL, body=event_body(conferenceData=meet_request()), conferenceDataVersion=1
        )
        .execute()
    )
    link = ev["hangoutLink"]
    patched = (
        service.events()
        .patch(calendarId=CAL, eventId=ev["id"], body={"summary": "x", "conferenceData": None})
        .execute()
    )
    assert patched["hangoutLink"] == link and patched["summary"] == "x"
    body = {k: v for k, v in patched.items() if k not in ("conferenceData", "hangoutLink")}
    updated = service.events().update(calendarId=CAL, eventId=ev["id"], body=body).execute()
    assert updated["hangoutLink"] == link
    assert updated["conferenceData"] == ev["conferenceData"]
    # With version 1 a patch may add a conference to an event that had none.
    other = service.events().insert(calendarId=CAL, body=event_body()).execute()
    added = (
        service.events()
        .patch(
            calendarId=CAL,
            eventId=other["id"],
            body={"conferenceData": meet_request("r-2")},
            conferenceDataVersion=1,
        )
        .execute()
    )
    assert added["hangoutLink"] == f"https://meet.google.com/{meet_code('r-2')}"


def test_conference_pending_for_n_gets(service: Any, base_url: str) -> None:
    control(base_url, "POST", "/_emulator/calendar/conference", {"pendingGets": 2})
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(conferenceData=meet_request("r-p")),
            conferenceDataVersion=1,
        )
        .execute()
    )
    states = [ev["conferenceData"]["createRequest"]["status"]["statusCode"]]
    assert "hangoutLink" not in ev and "entryPoints" not in ev["conferenceData"]
    for _ in range(3):
        got = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
        states.append(got["conferenceData"]["createRequest"]["status"]["statusCode"])
    assert states == ["pending", "pending", "pending", "success"]
    assert got["hangoutLink"] == f"https://meet.google.com/{meet_code('r-p')}"


@pytest.mark.parametrize("bad_id", ["abcd", "ABCDEF", "abcdw1", "abc-def", "a" * 1025, "héllo"])
def test_client_event_id_validation(service: Any, bad_id: str) -> None:
    with pytest.raises(HttpError) as exc:
        service.events().insert(calendarId=CAL, body=event_body(id=bad_id)).execute()
    assert exc.value.status_code == 400
    assert reason_of(exc) == "invalid"


def test_reused_id_conflicts_even_after_delete(service: Any) -> None:
    good = "booking0123456789v"
    assert service.events().insert(calendarId=CAL, body=event_body(id=good)).execute()["id"] == good
    with pytest.raises(HttpError) as exc:
        service.events().insert(calendarId=CAL, body=event_body(id=good)).execute()
    assert exc.value.status_code == 409
    err = error_of(exc)
    assert err["errors"][0] == {
        "domain": "global",
        "reason": "duplicate",
        "message": "The requested identifier already exists.",
    }
    service.events().delete(calendarId=CAL, eventId=good).execute()
    with pytest.raises(HttpError) as exc:
        service.events().insert(calendarId=CAL, body=event_body(id=good)).execute()
    assert exc.value.status_code == 409
    # ids are per calendar
    assert service.events().insert(calendarId="other", body=event_body(id=good)).execute()


def test_concurrent_inserts_with_one_id_have_one_winner(service: Any) -> None:
    creds = Credentials(token=TOKEN)
    barrier = threading.Barrier(20)

    def attempt(_: int) -> int:
        req = service.events().insert(calendarId=CAL, body=event_body(id="racer00001"))
        http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=10))
        barrier.wait()
        try:
            req.execute(http=http)
            return 200
        except HttpError as err:
            return err.status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert sorted(codes) == [200] + [409] * 19


# -- get / patch / update / delete ---------------------------------------------------------


def test_get_patch_update_delete_lifecycle(service: Any) -> None:
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(extendedProperties={"private": {"bookingId": "b1"}}, location="Online"),
        )
        .execute()
    )
    got = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    assert got == ev

    patched = (
        service.events()
        .patch(
            calendarId=CAL,
            eventId=ev["id"],
            body={"description": "nuevo", "extendedProperties": {"private": {"paid": "yes"}}},
        )
        .execute()
    )
    assert patched["summary"] == ev["summary"] and patched["description"] == "nuevo"
    assert patched["extendedProperties"]["private"] == {"bookingId": "b1", "paid": "yes"}
    assert patched["sequence"] == 0 and patched["etag"] != ev["etag"]

    moved = (
        service.events()
        .patch(
            calendarId=CAL,
            eventId=ev["id"],
            body={"start": {"dateTime": "2026-03-02T10:30:00-03:00"}},
        )
        .execute()
    )
    assert moved["sequence"] == 1
    assert moved["start"]["timeZone"] == "America/Sao_Paulo"

    replaced = (
        service.events()
        .update(
            calendarId=CAL,
            eventId=ev["id"],
            body=event_body(
                "2026-03-03T10:00:00-03:00", "2026-03-03T11:00:00-03:00", summary="Nueva"
            ),
        )
        .execute()
    )
    assert replaced["summary"] == "Nueva" and "location" not in replaced
    assert "extendedProperties" not in replaced and replaced["sequence"] == 2
    assert replaced["created"] == ev["created"] and replaced["id"] == ev["id"]

    assert service.events().delete(calendarId=CAL, eventId=ev["id"]).execute() == ""
    gone = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    assert gone["status"] == "cancelled"
    with pytest.raises(HttpError) as exc:
        service.events().delete(calendarId=CAL, eventId=ev["id"]).execute()
    assert exc.value.status_code == 410 and reason_of(exc) == "deleted"
    for call in (
        service.events().get(calendarId=CAL, eventId="nosuchevent"),
        service.events().patch(calendarId=CAL, eventId="nosuchevent", body={"summary": "x"}),
        service.events().delete(calendarId=CAL, eventId="nosuchevent"),
    ):
        with pytest.raises(HttpError) as exc:
            call.execute()
        assert exc.value.status_code == 404 and reason_of(exc) == "notFound"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (event_body(end="2026-03-02T09:00:00-03:00"), "timeRangeEmpty"),
        (
            {
                "summary": "x",
                "start": {"dateTime": "2026-03-02T10:00:00", "timeZone": "Mars/Base"},
                "end": {"dateTime": "2026-03-02T11:00:00", "timeZone": "Mars/Base"},
            },
            "invalid",
        ),
        ({"summary": "x", "start": {"dateTime": "2026-03-02T10:00:00Z"}}, "required"),
        (
            {
                "summary": "x",
                "start": {"dateTime": "2026-03-02T10:00:00"},
                "end": {"dateTime": "2026-03-02T11:00:00"},
            },
            "required",
        ),
    ],
)
def test_invalid_times_are_rejected(service: Any, body: dict[str, Any], reason: str) -> None:
    with pytest.raises(HttpError) as exc:
        service.events().insert(calendarId=CAL, body=body).execute()
    assert exc.value.status_code == 400 and reason_of(exc) == reason


def test_failed_patch_leaves_event_untouched(service: Any) -> None:
    ev = service.events().insert(calendarId=CAL, body=event_body()).execute()
    with pytest.raises(HttpError) as exc:
        service.events().patch(
            calendarId=CAL,
            eventId=ev["id"],
            body={"summary": "x", "end": {"dateTime": "2026-03-01T00:00:00Z"}},
        ).execute()
    assert reason_of(exc) == "timeRangeEmpty"
    assert service.events().get(calendarId=CAL, eventId=ev["id"]).execute() == ev


# -- list -----------------------------------------------------------------------------------


def insert_day(service: Any, day: int, **extra: Any) -> dict[str, Any]:
    return (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(
                f"2026-04-{day:02d}T10:00:00Z", f"2026-04-{day:02d}T11:00:00Z", **extra
            ),
        )
        .execute()
    )


def test_list_time_window_overlap_and_order(service: Any) -> None:
    for day in (5, 1, 3):
        insert_day(service, day, summary=f"day {day}")
    res = (
        service.events()
        .list(
            calendarId=CAL,
            timeMin="2026-04-01T10:30:00Z",
            timeMax="2026-04-05T10:00:00Z",
            singleEvents=True,
            orderBy="startTime",
        )
        .execute()
    )
    assert res["kind"] == "calendar#events" and res["timeZone"]
    assert "summary" in res and "updated" in res and "nextSyncToken" in res
    # day 1 overlaps timeMin (ends 11:00); day 5 starts exactly at timeMax (exclusive)
    assert [e["summary"] for e in res["items"]] == ["day 1", "day 3"]
    by_updated = service.events().list(calendarId=CAL, orderBy="updated").execute()
    assert [e["summary"] for e in by_updated["items"]] == ["day 5", "day 1", "day 3"]
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, orderBy="startTime").execute()
    assert exc.value.status_code == 400
    with pytest.raises(HttpError) as exc:
        service.events().list(
            calendarId=CAL, timeMin="2026-04-05T00:00:00Z", timeMax="2026-04-01T00:00:00Z"
        ).execute()
    assert reason_of(exc) == "timeRangeEmpty"


def test_list_pagination_stays_consistent(service: Any) -> None:
    ids = [insert_day(service, day)["id"] for day in range(1, 8)]
    first = service.events().list(calendarId=CAL, maxResults=3).execute()
    assert [e["id"] for e in first["items"]] == ids[:3]
    assert "nextPageToken" in first and "nextSyncToken" not in first
    # Changes between pages: a seen event is modified, an unseen one deleted, one added.
    service.events().patch(calendarId=CAL, eventId=ids[0], body={"summary": "moved"}).execute()
    service.events().delete(calendarId=CAL, eventId=ids[4]).execute()
    new_id = insert_day(service, 9)["id"]
    seen = [e["id"] for e in first["items"]]
    token = first["nextPageToken"]
    while token:
        page = service.events().list(calendarId=CAL, maxResults=3, pageToken=token).execute()
        seen += [e["id"] for e in page["items"]]
        token = page.get("nextPageToken")
    assert page["nextSyncToken"]
    assert seen == ids[:4] + ids[5:] + [new_id]
    # list_next follows nextPageToken like production code does
    req = service.events().list(calendarId=CAL, maxResults=4)
    collected = []
    while req is not None:
        resp = req.execute()
        collected += resp["items"]
        req = service.events().list_next(req, resp)
    assert len(collected) == 7
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, pageToken="garbage").execute()
    assert exc.value.status_code == 400


def test_list_max_results_bounds(service: Any) -> None:
    insert_day(service, 1)
    assert len(service.events().list(calendarId=CAL, maxResults=5000).execute()["items"]) == 1
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, maxResults=0).execute()
    assert exc.value.status_code == 400


def test_list_free_text_and_extended_properties(service: Any) -> None:
    insert_day(
        service,
        1,
        summary="Guitarra",
        extendedProperties={
            "private": {"bookingId": "b1", "teacher": "t1"},
            "shared": {"room": "r1"},
        },
    )
    insert_day(
        service,
        2,
        summary="Piano",
        location="Sala Norte",
        attendees=[{"email": "ana@example.com"}],
        extendedProperties={"private": {"bookingId": "b2", "teacher": "t1"}},
    )

    def summaries(**kw: Any) -> list[str]:
        return [
            e["summary"] for e in service.events().list(calendarId=CAL, **kw).execute()["items"]
        ]

    assert summaries(q="guitarra") == ["Guitarra"]
    assert summaries(q="norte") == ["Piano"]
    assert summaries(q="ana@example.com") == ["Piano"]
    assert summaries(privateExtendedProperty="teacher=t1") == ["Guitarra", "Piano"]
    assert summaries(privateExtendedProperty=["teacher=t1", "bookingId=b2"]) == ["Piano"]
    assert summaries(privateExtendedProperty="room=r1") == []
    assert summaries(sharedExtendedProperty="room=r1") == ["Guitarra"]
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, privateExtendedProperty="noequals").execute()
    assert exc.value.status_code == 400


def test_show_deleted_and_updated_min(service: Any) -> None:
    keep = insert_day(service, 1)
    gone = insert_day(service, 2)
    service.events().delete(calendarId=CAL, eventId=gone["id"]).execute()
    assert [e["id"] for e in service.events().list(calendarId=CAL).execute()["items"]] == [
        keep["id"]
    ]
    shown = service.events().list(calendarId=CAL, showDeleted=True).execute()["items"]
    assert [(e["id"], e["status"]) for e in shown] == [
        (keep["id"], "confirmed"),
        (gone["id"], "cancelled"),
    ]
    since = service.events().list(calendarId=CAL, updatedMin=keep["updated"]).execute()["items"]
    assert {e["id"] for e in since} == {keep["id"], gone["id"]}


# -- incremental sync -----------------------------------------------------------------------


def full_sync(service: Any, **kw: Any) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    page_token = None
    while True:
        res = service.events().list(calendarId=CAL, pageToken=page_token, **kw).execute()
        items += res["items"]
        page_token = res.get("nextPageToken")
        if not page_token:
            return items, res["nextSyncToken"]


def test_sync_token_flow(service: Any, base_url: str) -> None:
    a = insert_day(service, 1)
    b = insert_day(service, 2)
    c = insert_day(service, 3)
    items, token = full_sync(service, maxResults=2)
    assert [e["id"] for e in items] == [a["id"], b["id"], c["id"]]

    empty, token2 = full_sync(service, syncToken=token)
    assert empty == []

    service.events().patch(calendarId=CAL, eventId=a["id"], body={"summary": "changed"}).execute()
    service.events().delete(calendarId=CAL, eventId=b["id"]).execute()
    d = insert_day(service, 4)
    changes, token3 = full_sync(service, syncToken=token2, maxResults=1)
    assert {(e["id"], e["status"]) for e in changes} == {
        (a["id"], "confirmed"),
        (b["id"], "cancelled"),
        (d["id"], "confirmed"),
    }
    assert full_sync(service, syncToken=token3)[0] == []

    control(base_url, "POST", "/_emulator/calendar/expire-sync-tokens", {})
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, syncToken=token3).execute()
    assert exc.value.status_code == 410
    assert error_of(exc)["errors"][0]["reason"] == "fullSyncRequired"
    assert error_of(exc)["message"] == "Sync token is no longer valid, a full sync is required."
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, syncToken="not-a-token").execute()
    assert exc.value.status_code == 410
    # a token of another calendar is not valid here either
    _, other_token = full_sync(service)
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId="other", syncToken=other_token).execute()
    assert exc.value.status_code == 410


@pytest.mark.parametrize(
    "extra",
    [
        {"timeMin": "2026-01-01T00:00:00Z"},
        {"timeMax": "2026-01-01T00:00:00Z"},
        {"orderBy": "updated"},
        {"q": "x"},
        {"privateExtendedProperty": "a=b"},
        {"sharedExtendedProperty": "a=b"},
        {"updatedMin": "2026-01-01T00:00:00Z"},
        {"iCalUID": "x@google.com"},
    ],
)
def test_sync_token_rejects_filters(service: Any, extra: dict[str, Any]) -> None:
    _, token = full_sync(service)
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL, syncToken=token, **extra).execute()
    assert exc.value.status_code == 400


# -- request validation and auth -------------------------------------------------------------


def test_unknown_query_parameter_is_400(service: Any) -> None:
    req = service.events().list(calendarId=CAL)
    req.uri += "&colour=red"
    with pytest.raises(HttpError) as exc:
        req.execute()
    assert exc.value.status_code == 400
    assert "colour" in error_of(exc)["message"]
    assert error_of(exc)["status"] == "INVALID_ARGUMENT"


def test_bad_typed_and_repeated_parameters_are_400(service: Any) -> None:
    req = service.events().list(calendarId=CAL)
    req.uri += "&maxResults=many"
    with pytest.raises(HttpError) as exc:
        req.execute()
    assert exc.value.status_code == 400
    req = service.events().list(calendarId=CAL)
    req.uri += "&q=a&q=b"
    with pytest.raises(HttpError) as exc:
        req.execute()
    assert exc.value.status_code == 400


def test_missing_or_foreign_token_is_401(base_url: str) -> None:
    anonymous = make_service(base_url, http=httplib2.Http(timeout=5))
    with pytest.raises(HttpError) as exc:
        anonymous.events().list(calendarId=CAL).execute()
    assert exc.value.status_code == 401
    err = error_of(exc)
    assert err["code"] == 401 and err["status"] == "UNAUTHENTICATED"
    assert (
        err["errors"][0]["domain"] == "global" and err["errors"][0]["location"] == "Authorization"
    )
    # google-auth reacts to a 401 by refreshing; a token-only Credentials cannot refresh.
    foreign = make_service(base_url, token="not-issued-by-local-oauth")
    with pytest.raises(RefreshError):
        foreign.events().list(calendarId=CAL).execute()
    raw = httplib2.Http(timeout=5)
    resp, content = raw.request(
        base_url + "/calendar/v3/calendars/primary/events",
        headers={"Authorization": "Bearer not-issued"},
    )
    assert resp.status == 401
    assert json.loads(content)["error"]["errors"][0]["reason"] == "authError"


def test_unimplemented_method_is_501_and_unknown_path_404(service: Any, base_url: str) -> None:
    with pytest.raises(HttpError) as exc:
        service.colors().get().execute()
    assert exc.value.status_code == 501
    resp, _ = httplib2.Http(timeout=5).request(
        base_url + "/calendar/v3/nothing/here", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 404
    assert service.calendars().get(calendarId=CAL).execute()["timeZone"] == "UTC"


def test_send_updates_is_recorded(service: Any, base_url: str) -> None:
    body = event_body(attendees=[{"email": "a@example.com"}, {"email": "b@gmail.com"}])
    service.events().insert(calendarId=CAL, body=body, sendUpdates="all").execute()
    service.events().insert(calendarId=CAL, body=body, sendUpdates="externalOnly").execute()
    service.events().insert(calendarId=CAL, body=body, sendUpdates="none").execute()
    service.events().insert(calendarId=CAL, body=body).execute()
    invitations = control(base_url, "GET", "/_emulator/calendar/invitations")
    assert invitations["total"] == 3


# -- push notifications ----------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["has space", "a" * 65, "semi;colon", ""])
def test_watch_rejects_bad_channel_id(service: Any, receiver: Receiver, bad_id: str) -> None:
    with pytest.raises(HttpError) as exc:
        service.events().watch(
            calendarId=CAL, body={"id": bad_id, "type": "web_hook", "address": receiver.url}
        ).execute()
    assert exc.value.status_code == 400


def test_watch_sends_sync_then_exists(service: Any, base_url: str, receiver: Receiver) -> None:
    before_ms = int(time.time() * 1000)
    channel = (
        service.events()
        .watch(
            calendarId=CAL,
            body={
                "id": "chan-1_A+/=",
                "type": "web_hook",
                "address": receiver.url,
                "token": "target=bookings",
                "params": {"ttl": "3600"},
            },
        )
        .execute()
    )
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1_A+/="
    assert channel["resourceId"] and "/calendars/primary/events" in channel["resourceUri"]
    assert channel["token"] == "target=bookings"
    assert isinstance(channel["expiration"], str)
    assert before_ms + 3_599_000 <= int(channel["expiration"]) <= before_ms + 3_700_000

    first = receiver.wait_for(1)
    ev = insert_day(service, 1)
    service.events().patch(calendarId=CAL, eventId=ev["id"], body={"summary": "p"}).execute()
    service.events().delete(calendarId=CAL, eventId=ev["id"]).execute()
    insert_day(service, 2)
    service.events().insert(calendarId="other", body=event_body()).execute()  # not watched
    messages = receiver.wait_for(5)
    assert first[0]["headers"]["X-Goog-Resource-State"] == "sync"
    assert [m["headers"]["X-Goog-Resource-State"] for m in messages] == ["sync"] + ["exists"] * 4
    numbers = [int(m["headers"]["X-Goog-Message-Number"]) for m in messages]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5
    for msg in messages:
        h = msg["headers"]
        assert msg["path"] == "/hook" and msg["body"] == b""
        assert h["X-Goog-Channel-Id"] == channel["id"]
        assert h["X-Goog-Channel-Token"] == "target=bookings"
        assert h["X-Goog-Resource-Id"] == channel["resourceId"]
        assert h["X-Goog-Resource-Uri"] == channel["resourceUri"]
        assert h["X-Goog-Channel-Expiration"].endswith(" GMT")
        parsed = time.strptime(h["X-Goog-Channel-Expiration"], "%a, %d %b %Y %H:%M:%S GMT")
        assert (
            abs(time.mktime(parsed) - time.mktime(time.gmtime(int(channel["expiration"]) / 1000)))
            <= 1
        )

    log = control(base_url, "GET", "/_emulator/calendar/deliveries?wait=1")
    assert [(d["channelId"], d["state"], d["status"]) for d in log] == [
        (channel["id"], "sync", 200)
    ] + [(channel["id"], "exists", 200)] * 4

    assert (
        service.channels()
        .stop(body={"id": channel["id"], "resourceId": channel["resourceId"]})
        .execute()
        == ""
    )
    insert_day(service, 3)
    control(base_url, "GET", "/_emulator/calendar/deliveries?wait=1")
    assert len(receiver.messages) == 5
    with pytest.raises(HttpError) as exc:
        service.channels().stop(
            body={"id": channel["id"], "resourceId": channel["resourceId"]}
        ).execute()
    assert exc.value.status_code == 404


def test_watch_defaults_and_unreachable_receiver(service: Any, base_url: str) -> None:
    before_ms = int(time.time() * 1000)
    channel = (
        service.events()
        .watch(
            calendarId=CAL,
            body={"id": "dead", "type": "web_hook", "address": "http://127.0.0.1:9/x"},
        )
        .execute()
    )
    assert "token" not in channel
    assert int(channel["expiration"]) >= before_ms + 604_800_000 - 1000
    with pytest.raises(HttpError) as exc:  # ids are unique while the channel lives
        service.events().watch(
            calendarId=CAL, body={"id": "dead", "type": "web_hook", "address": "http://x/"}
        ).execute()
    assert exc.value.status_code == 400
    insert_day(service, 1)  # the API call does not wait for the failing receiver
    log = control(base_url, "GET", "/_emulator/calendar/deliveries?wait=1")
    assert [(d["state"], d["status"]) for d in log] == [("sync", None), ("exists", None)]
    assert all(d["error"] for d in log)


def test_expired_channel_gets_nothing(service: Any, base_url: str, receiver: Receiver) -> None:
    # A requested `expiration` earlier than now + ttl wins, as at Google.
    expires_ms = int(time.time() * 1000) + 200
    channel = (
        service.events()
        .watch(
            calendarId=CAL,
            body={
                "id": "short",
                "type": "web_hook",
                "address": receiver.url,
                "expiration": expires_ms,
            },
        )
        .execute()
    )
    assert channel["expiration"] == str(expires_ms)
    receiver.wait_for(1)
    time.sleep(0.25)
    insert_day(service, 1)
    control(base_url, "GET", "/_emulator/calendar/deliveries?wait=1")
    assert len(receiver.messages) == 1


# -- fault injection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "domain", "message"),
    [
        (429, "rateLimitExceeded", "usageLimits", "Rate Limit Exceeded"),
        (403, "rateLimitExceeded", "usageLimits", "Rate Limit Exceeded"),
        (503, "backendError", "global", "Backend Error"),
        (500, "backendError", "global", "Backend Error"),
    ],
)
def test_injected_faults_look_like_google(
    service: Any, base_url: str, status: int, reason: str, domain: str, message: str
) -> None:
    control(
        base_url,
        "POST",
        "/_emulator/faults",
        {"rules": [{"status": status, "reason": reason, "count": 1, "method": "POST"}]},
    )
    with pytest.raises(HttpError) as exc:
        service.events().insert(calendarId=CAL, body=event_body()).execute()
    assert exc.value.status_code == status
    assert exc.value.reason == message
    assert exc.value.error_details[0] == {"domain": domain, "reason": reason, "message": message}
    assert error_of(exc)["code"] == status and error_of(exc)["status"]
    # count=1: the next call goes through, and num_retries rides over a transient fault
    control(
        base_url,
        "POST",
        "/_emulator/faults",
        {"rules": [{"status": status, "reason": reason, "count": 1}]},
    )
    retried = service.events().list(calendarId=CAL)
    retried._sleep = lambda _seconds: None  # skip googleapiclient's backoff sleep
    assert retried.execute(num_retries=2)["items"] == []


def test_drop_response_commits_the_write(service: Any, base_url: str) -> None:
    control(
        base_url,
        "POST",
        "/_emulator/faults",
        {"rules": [{"dropResponse": True, "count": 1, "method": "POST"}]},
    )
    outcome: object
    try:
        outcome = (
            service.events().insert(calendarId=CAL, body=event_body(id="dropped001")).execute()
        )
    except HttpError as err:  # httplib2 retried the POST once: the retry sees the commit
        outcome = err.status_code
    except (ConnectionError, OSError, httplib2.HttpLib2Error) as err:
        outcome = type(err).__name__
    assert outcome == 409 or isinstance(outcome, str), outcome
    got = service.events().get(calendarId=CAL, eventId="dropped001").execute()
    assert got["status"] == "confirmed"
    calls = control(base_url, "GET", "/_emulator/stats")["calls"]
    assert calls["POST /calendar/v3/calendars/<calendarId>/events"] == (2 if outcome == 409 else 1)


# -- extras ----------------------------------------------------------------------------------


def test_page_size_defaults_to_250_and_caps_at_2500(
    service: Any, emulator: tuple[CalendarEmulator, str]
) -> None:
    store = emulator[0].store
    for n in range(2501):  # seeded in-process: 2501 HTTP inserts would be slow
        store.insert_event(CAL, event_body(summary=f"e{n}"), {})
    first = service.events().list(calendarId=CAL).execute()
    assert len(first["items"]) == 250 and "nextPageToken" in first
    capped = service.events().list(calendarId=CAL, maxResults=2500).execute()
    assert len(capped["items"]) == 2500 and "nextPageToken" in capped
    rest = (
        service.events()
        .list(calendarId=CAL, maxResults=2500, pageToken=capped["nextPageToken"])
        .execute()
    )
    assert [e["summary"] for e in rest["items"]] == ["e2500"] and "nextSyncToken" in rest


def test_conference_failure_knob(service: Any, base_url: str) -> None:
    control(
        base_url,
        "POST",
        "/_emulator/calendar/conference",
        {"pendingGets": 1, "statusCode": "failure"},
    )
    assert control(base_url, "GET", "/_emulator/calendar/conference") == {
        "pendingGets": 1,
        "statusCode": "failure",
    }
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(conferenceData=meet_request("r-f")),
            conferenceDataVersion=1,
        )
        .execute()
    )
    statuses = []
    for _ in range(2):
        got = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
        statuses.append(got["conferenceData"]["createRequest"]["status"]["statusCode"])
    assert statuses == ["pending", "failure"]
    assert "hangoutLink" not in got and "entryPoints" not in got["conferenceData"]


def test_production_shaped_booking_event(service: Any, base_url: str) -> None:
    """The body the Calendar adapter builds for a paid booking, sent the way it sends it."""
    body = event_body(
        id="0123456789abcdefghijklmnopqrstuv0123456789abcdefghij",
        description="Clase: Guitarra\nReserva: b-1",
        attendees=[
            {"email": "alumno@example.com", "displayName": "Alumno"},
            {"email": "docente@example.com"},
        ],
        reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 15}]},
        transparency="opaque",
        guestsCanInviteOthers=False,
        extendedProperties={"private": {"bookingId": "b-1", "paymentId": "p-1"}},
        conferenceData=meet_request("meet-0123456789abcdefghijklmnopqrstuv012345"),
    )
    ev = (
        service.events()
        .insert(calendarId=CAL, body=body, conferenceDataVersion=1, sendUpdates="all")
        .execute()
    )
    assert ev["reminders"] == body["reminders"] and ev["guestsCanInviteOthers"] is False
    assert ev["attendees"][0] == {
        "email": "alumno@example.com",
        "displayName": "Alumno",
        "responseStatus": "needsAction",
    }
    assert ev["hangoutLink"].startswith("https://meet.google.com/")
    invitations = control(base_url, "GET", "/_emulator/calendar/invitations")
    assert invitations["log"][0]["recipients"] == ["alumno@example.com", "docente@example.com"]
    found = (
        service.events()
        .list(calendarId=CAL, privateExtendedProperty="bookingId=b-1")
        .execute()["items"]
    )
    assert [e["id"] for e in found] == [body["id"]]


def test_all_day_events(service: Any) -> None:
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body={
                "summary": "Feriado",
                "start": {"date": "2026-05-01"},
                "end": {"date": "2026-05-02"},
            },
        )
        .execute()
    )
    assert ev["start"] == {"date": "2026-05-01"}
    inside = (
        service.events()
        .list(calendarId=CAL, timeMin="2026-05-01T12:00:00Z", timeMax="2026-05-01T13:00:00Z")
        .execute()["items"]
    )
    assert [e["id"] for e in inside] == [ev["id"]]


# -- etags and conditional requests ----------------------------------------------------------

PRECONDITION_FAILED = {
    "error": {
        "code": 412,
        "message": "Precondition Failed",
        "errors": [
            {
                "domain": "global",
                "reason": "conditionNotMet",
                "message": "Precondition Failed",
                "locationType": "header",
                "location": "If-Match",
            }
        ],
        "status": "FAILED_PRECONDITION",
    }
}


def with_headers(req: Any, **headers: str) -> Any:
    """Sets request headers the way a caller of googleapiclient does."""
    for name, value in headers.items():
        req.headers[name.replace("_", "-")] = value
    return req


def test_etag_changes_on_every_modification(service: Any) -> None:
    ev = service.events().insert(calendarId=CAL, body=event_body()).execute()
    etags = [ev["etag"]]
    etags.append(
        service.events()
        .patch(calendarId=CAL, eventId=ev["id"], body={"summary": "a"})
        .execute()["etag"]
    )
    etags.append(
        service.events()
        .update(calendarId=CAL, eventId=ev["id"], body=event_body(summary="b"))
        .execute()["etag"]
    )
    got = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    assert got["etag"] == etags[-1]  # reading changes nothing
    service.events().delete(calendarId=CAL, eventId=ev["id"]).execute()
    etags.append(service.events().get(calendarId=CAL, eventId=ev["id"]).execute()["etag"])
    assert len(set(etags)) == 4
    assert all(e.startswith('"') and e.endswith('"') for e in etags)
    listed = service.events().list(calendarId=CAL, showDeleted=True).execute()["items"]
    assert listed[0]["etag"] == etags[-1]


def test_if_match_refuses_a_stale_write_and_a_reread_reapplies(service: Any) -> None:
    """Two admins enroll at once: the loser gets 412, re-reads and re-applies its change."""
    ev = (
        service.events()
        .insert(calendarId=CAL, body=event_body(attendees=[{"email": "ana@example.com"}]))
        .execute()
    )
    seen_by_a = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    # admin B changes the class first
    by_b = (
        service.events()
        .patch(
            calendarId=CAL,
            eventId=ev["id"],
            body={"attendees": [*seen_by_a["attendees"], {"email": "beto@example.com"}]},
        )
        .execute()
    )
    # admin A, still holding the old etag, appends its own student
    stale = service.events().patch(
        calendarId=CAL,
        eventId=ev["id"],
        body={"attendees": [*seen_by_a["attendees"], {"email": "caro@example.com"}]},
    )
    with pytest.raises(HttpError) as exc:
        with_headers(stale, If_Match=seen_by_a["etag"]).execute()
    assert exc.value.status_code == 412
    assert json.loads(exc.value.content) == PRECONDITION_FAILED
    assert service.events().get(calendarId=CAL, eventId=ev["id"]).execute() == by_b

    fresh = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    retried = service.events().patch(
        calendarId=CAL,
        eventId=ev["id"],
        body={"attendees": [*fresh["attendees"], {"email": "caro@example.com"}]},
    )
    done = with_headers(retried, If_Match=fresh["etag"]).execute()
    assert [a["email"] for a in done["attendees"]] == [
        "ana@example.com",
        "beto@example.com",
        "caro@example.com",
    ]
    assert done["etag"] != fresh["etag"]

    # update and delete honour If-Match too; `*` matches any current version
    for call in (
        service.events().update(calendarId=CAL, eventId=ev["id"], body=event_body()),
        service.events().delete(calendarId=CAL, eventId=ev["id"]),
    ):
        with pytest.raises(HttpError) as exc:
            with_headers(call, If_Match=fresh["etag"]).execute()
        assert exc.value.status_code == 412 and reason_of(exc) == "conditionNotMet"
    starred = service.events().patch(calendarId=CAL, eventId=ev["id"], body={"summary": "s"})
    assert with_headers(starred, If_Match="*").execute()["summary"] == "s"
    current = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()["etag"]
    deleted = service.events().delete(calendarId=CAL, eventId=ev["id"])
    assert with_headers(deleted, If_Match=current).execute() == ""


def test_if_none_match_answers_304_while_unchanged(service: Any) -> None:
    ev = service.events().insert(calendarId=CAL, body=event_body()).execute()

    def conditional_get(etag: str) -> Any:
        req = service.events().get(calendarId=CAL, eventId=ev["id"])
        return with_headers(req, If_None_Match=etag).execute()

    for etag in (ev["etag"], "W/" + ev["etag"], f'"other", {ev["etag"]}', "*"):
        with pytest.raises(HttpError) as exc:
            conditional_get(etag)
        assert exc.value.status_code == 304 and exc.value.content == b""
    assert conditional_get('"not-this-one"') == ev
    patched = (
        service.events().patch(calendarId=CAL, eventId=ev["id"], body={"summary": "x"}).execute()
    )
    assert conditional_get(ev["etag"]) == patched


def test_conditional_get_sees_a_conference_that_finished(service: Any, base_url: str) -> None:
    """A get may itself complete a pending Meet link: that is a change, so no 304."""
    control(base_url, "POST", "/_emulator/calendar/conference", {"pendingGets": 1})
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(conferenceData=meet_request("r-etag")),
            conferenceDataVersion=1,
        )
        .execute()
    )
    req = service.events().get(calendarId=CAL, eventId=ev["id"])
    with pytest.raises(HttpError) as exc:  # still pending: unchanged
        with_headers(req, If_None_Match=ev["etag"]).execute()
    assert exc.value.status_code == 304
    req = service.events().get(calendarId=CAL, eventId=ev["id"])
    done = with_headers(req, If_None_Match=ev["etag"]).execute()
    assert done["hangoutLink"] and done["etag"] != ev["etag"]


# -- arrays, guest visibility ----------------------------------------------------------------


def test_patch_replaces_arrays_whole(service: Any) -> None:
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(
                attendees=[{"email": "ana@example.com"}, {"email": "beto@example.com"}],
                reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]},
            ),
        )
        .execute()
    )
    # "Array fields, if specified, overwrite the existing arrays": one attendee sent, one kept
    only_caro = (
        service.events()
        .patch(
            calendarId=CAL, eventId=ev["id"], body={"attendees": [{"email": "caro@example.com"}]}
        )
        .execute()
    )
    assert only_caro["attendees"] == [
        {"email": "caro@example.com", "responseStatus": "needsAction"}
    ]
    # arrays inside objects too, while the object itself merges
    reminders = (
        service.events()
        .patch(
            calendarId=CAL,
            eventId=ev["id"],
            body={"reminders": {"overrides": [{"method": "email", "minutes": 60}]}},
        )
        .execute()["reminders"]
    )
    assert reminders == {"useDefault": False, "overrides": [{"method": "email", "minutes": 60}]}
    # a patch that leaves the array out leaves it alone; an empty one empties it
    kept = service.events().patch(calendarId=CAL, eventId=ev["id"], body={"summary": "x"}).execute()
    assert kept["attendees"] == only_caro["attendees"]
    emptied = (
        service.events().patch(calendarId=CAL, eventId=ev["id"], body={"attendees": []}).execute()
    )
    assert emptied["attendees"] == []


def test_guests_cannot_see_other_guests_but_the_organizer_sees_all(
    service: Any, base_url: str
) -> None:
    students = [{"email": f"alumno{n}@example.com"} for n in range(3)]
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(attendees=students, guestsCanSeeOtherGuests=False),
            sendUpdates="all",
        )
        .execute()
    )
    assert ev["guestsCanSeeOtherGuests"] is False
    got = service.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    assert [a["email"] for a in got["attendees"]] == [s["email"] for s in students]
    listed = service.events().list(calendarId=CAL).execute()["items"][0]
    assert listed["guestsCanSeeOtherGuests"] is False and len(listed["attendees"]) == 3
    patched = (
        service.events()
        .patch(calendarId=CAL, eventId=ev["id"], body={"summary": "Grupal"}, sendUpdates="all")
        .execute()
    )
    assert patched["guestsCanSeeOtherGuests"] is False
    log = control(base_url, "GET", "/_emulator/calendar/invitations")["log"]
    assert [entry["guestsCanSeeOtherGuests"] for entry in log] == [False, False]
    plain = service.events().insert(calendarId=CAL, body=event_body()).execute()
    assert "guestsCanSeeOtherGuests" not in plain  # Google's default (true) is implied


# -- invitations: who is emailed, and with what ----------------------------------------------

TEACHER = "docente@classes.local"  # the organizer's own domain: a Google Calendar user
GMAIL = "alumna@gmail.com"  # a Google Calendar user outside the organizer's domain
ANA, BETO, CARO = "ana@example.com", "beto@example.com", "caro@example.com"  # no Google Calendar


def emails_of(entry: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((e["to"], e["kind"]) for e in entry["emails"])


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        ("all", {TEACHER, GMAIL, ANA, BETO, CARO}),
        ("externalOnly", {ANA, BETO, CARO}),
        ("none", set()),
    ],
)
def test_invitation_log_kinds_for_a_group_class(
    service: Any, base_url: str, mode: str, who: set[str]
) -> None:
    """Add one student, remove one, cancel: what each guest receives under each mode."""

    def expected(**kinds: list[str]) -> list[tuple[str, str]]:
        return sorted(
            (email, kind) for kind, emails in kinds.items() for email in emails if email in who
        )

    owner = service.calendars().get(calendarId=CAL).execute()["id"]
    group = [{"email": e} for e in (TEACHER, GMAIL, ANA, BETO)]
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(attendees=[{"email": owner, "organizer": True}, *group]),
            sendUpdates=mode,
        )
        .execute()
    )
    service.events().patch(
        calendarId=CAL,
        eventId=ev["id"],
        body={"attendees": [*ev["attendees"], {"email": CARO}]},
        sendUpdates=mode,
    ).execute()
    service.events().patch(
        calendarId=CAL,
        eventId=ev["id"],
        body={"attendees": [a for a in ev["attendees"] if a["email"] != ANA] + [{"email": CARO}]},
        sendUpdates=mode,
    ).execute()
    service.events().delete(calendarId=CAL, eventId=ev["id"], sendUpdates=mode).execute()

    invitations = control(base_url, "GET", "/_emulator/calendar/invitations")
    log = invitations["log"]
    if mode == "none":
        assert invitations == {"total": 0, "log": []}
        return
    assert [(e["action"], e["sendUpdates"]) for e in log] == [
        ("insert", mode),
        ("update", mode),
        ("update", mode),
        ("delete", mode),
    ]
    assert emails_of(log[0]) == expected(invitation=[TEACHER, GMAIL, ANA, BETO])
    # the new student is invited; everyone already there gets an update
    assert emails_of(log[1]) == expected(invitation=[CARO], update=[TEACHER, GMAIL, ANA, BETO])
    # the removed student gets a cancellation; the rest an update
    assert emails_of(log[2]) == expected(cancel=[ANA], update=[TEACHER, GMAIL, BETO, CARO])
    assert emails_of(log[3]) == expected(cancel=[TEACHER, GMAIL, BETO, CARO])
    assert all(owner not in e["recipients"] for e in log)  # the organizer is never emailed
    assert all(e["recipients"] == [m["to"] for m in e["emails"]] for e in log)
    assert invitations["total"] == sum(len(e["emails"]) for e in log)


def test_cancelling_by_status_and_unchanged_writes(service: Any, base_url: str) -> None:
    ev = (
        service.events()
        .insert(calendarId=CAL, body=event_body(attendees=[{"email": ANA}]), sendUpdates="all")
        .execute()
    )
    # a write that changes nothing a guest sees sends nothing
    service.events().patch(
        calendarId=CAL, eventId=ev["id"], body={"summary": ev["summary"]}, sendUpdates="all"
    ).execute()
    service.events().patch(
        calendarId=CAL, eventId=ev["id"], body={"status": "cancelled"}, sendUpdates="all"
    ).execute()
    # once cancelled, nobody is on the event any more: a second cancel tells nobody
    service.events().patch(
        calendarId=CAL, eventId=ev["id"], body={"status": "cancelled"}, sendUpdates="all"
    ).execute()
    log = control(base_url, "GET", "/_emulator/calendar/invitations")["log"]
    assert [(e["action"], emails_of(e)) for e in log] == [
        ("insert", [(ANA, "invitation")]),
        ("cancel", [(ANA, "cancel")]),
    ]


# -- usage limits ----------------------------------------------------------------------------


def google_error(status: int, reason: str, message: str, domain: str = "usageLimits") -> Any:
    status_name = {403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}[status]
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": domain, "reason": reason, "message": message}],
            "status": status_name,
        }
    }


def quota(base_url: str, settings: dict[str, Any] | None = None) -> Any:
    if settings is None:
        return control(base_url, "GET", "/_emulator/calendar/quota")
    return control(base_url, "POST", "/_emulator/calendar/quota", settings)


@pytest.mark.parametrize(
    ("settings", "status", "reason", "message"),
    [
        ({}, 403, "rateLimitExceeded", "Rate Limit Exceeded"),
        ({"rateLimitStatus": 429}, 429, "rateLimitExceeded", "Rate Limit Exceeded"),
        (
            {"rateLimitReason": "userRateLimitExceeded"},
            403,
            "userRateLimitExceeded",
            "User Rate Limit Exceeded",
        ),
    ],
)
def test_requests_per_minute_per_user(
    service: Any,
    base_url: str,
    settings: dict[str, Any],
    status: int,
    reason: str,
    message: str,
) -> None:
    quota(base_url, {"requestsPerMinute": 3, "requestWindowSeconds": 1, **settings})
    for _ in range(3):
        service.events().list(calendarId=CAL).execute()
    with pytest.raises(HttpError) as exc:
        service.events().insert(calendarId=CAL, body=event_body()).execute()
    assert exc.value.status_code == status
    assert json.loads(exc.value.content) == google_error(status, reason, message)
    # another user has a window of its own, and sees that the refused insert made nothing
    other = make_service(base_url, token=OTHER_TOKEN)
    assert other.events().list(calendarId=CAL).execute()["items"] == []
    state = quota(base_url)
    assert sorted(state["requests"].values()) == [1, 3]  # refused calls are not counted
    assert state["rejected"] == {reason: 1}
    # the window slides: googleapiclient's own retries ride over the limit
    retried = service.events().insert(calendarId=CAL, body=event_body())
    retried._sleep = lambda _seconds: time.sleep(0.3)
    assert retried.execute(num_retries=6)["status"] == "confirmed"
    assert quota(base_url)["rejected"][reason] >= 2


def test_quota_settings_are_checked(base_url: str) -> None:
    for bad in (
        {"rateLimitStatus": 429, "rateLimitReason": "userRateLimitExceeded"},
        {"rateLimitStatus": 500},
        {"requestsPerMinute": -1},
        {"invitationWindowSeconds": 0},
        {"requestsPerMinutes": 3},
        {"internalDomains": "example.com"},
    ):
        req = urllib.request.Request(
            base_url + "/_emulator/calendar/quota",
            data=json.dumps(bad).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 400, bad
    assert quota(base_url)["settings"]["requestsPerMinute"] is None


QUOTA_EXCEEDED = google_error(403, "quotaExceeded", "Calendar usage limits exceeded.")


def test_external_invitations_limit_and_the_limited_calendar(service: Any, base_url: str) -> None:
    quota(
        base_url,
        {"invitationsPerWindow": 3, "invitationWindowSeconds": 60, "limitedForSeconds": 1},
    )
    ev = (
        service.events()
        .insert(
            calendarId=CAL,
            body=event_body(attendees=[{"email": ANA}, {"email": BETO}, {"email": TEACHER}]),
            sendUpdates="all",
        )
        .execute()
    )
    assert quota(base_url)["externalEmails"] == {CAL: 2}  # the teacher is internal
    # one more student with sendUpdates=all: an invitation plus two external updates = 5 > 3
    enroll = {"attendees": [*ev["attendees"], {"email": CARO}]}
    with pytest.raises(HttpError) as exc:
        service.events().patch(
            calendarId=CAL, eventId=ev["id"], body=enroll, sendUpdates="all"
        ).execute()
    assert exc.value.status_code == 403
    assert json.loads(exc.value.content) == QUOTA_EXCEEDED
    assert service.events().get(calendarId=CAL, eventId=ev["id"]).execute() == ev
    state = quota(base_url)
    assert CAL in state["limited"] and state["rejected"] == {"quotaExceeded": 1}
    # limited: whatever would email an external guest is refused, even one email...
    with pytest.raises(HttpError) as exc:
        service.events().insert(
            calendarId=CAL, body=event_body(attendees=[{"email": CARO}]), sendUpdates="all"
        ).execute()
    assert json.loads(exc.value.content) == QUOTA_EXCEEDED
    # ...while writes that email nobody outside go through (sendUpdates=none, internal guests)
    silent = (
        service.events()
        .patch(calendarId=CAL, eventId=ev["id"], body=enroll, sendUpdates="none")
        .execute()
    )
    assert [a["email"] for a in silent["attendees"]][-1] == CARO
    service.events().insert(
        calendarId=CAL, body=event_body(attendees=[{"email": TEACHER}]), sendUpdates="all"
    ).execute()
    assert service.events().list(calendarId=CAL).execute()["items"]  # reads always work
    time.sleep(1.1)  # the hold ends; the window still holds the first 2 emails
    service.events().insert(
        calendarId=CAL, body=event_body(attendees=[{"email": CARO}]), sendUpdates="all"
    ).execute()
    assert quota(base_url)["externalEmails"] == {CAL: 3}
    log = control(base_url, "GET", "/_emulator/calendar/invitations")["log"]
    assert [e["action"] for e in log] == ["insert", "insert", "insert"]  # nothing refused logged


def test_read_only_when_limited_and_internal_domains(service: Any, base_url: str) -> None:
    quota(
        base_url,
        {
            "invitationsPerWindow": 1,
            "readOnlyWhenLimited": True,
            "internalDomains": ["example.com"],
        },
    )
    ev = (
        service.events()
        .insert(calendarId=CAL, body=event_body(attendees=[{"email": ANA}]), sendUpdates="all")
        .execute()
    )
    assert quota(base_url)["externalEmails"] == {}  # example.com counts as internal now
    service.events().insert(
        calendarId=CAL, body=event_body(attendees=[{"email": GMAIL}]), sendUpdates="all"
    ).execute()
    with pytest.raises(HttpError):
        service.events().insert(
            calendarId=CAL, body=event_body(attendees=[{"email": "b@gmail.com"}]), sendUpdates="all"
        ).execute()
    for call in (  # read-only: every write is refused, even one that emails nobody
        service.events().patch(calendarId=CAL, eventId=ev["id"], body={"summary": "x"}),
        service.events().delete(calendarId=CAL, eventId=ev["id"]),
        service.events().insert(calendarId=CAL, body=event_body()),
    ):
        with pytest.raises(HttpError) as exc:
            call.execute()
        assert json.loads(exc.value.content) == QUOTA_EXCEEDED
    assert service.events().get(calendarId=CAL, eventId=ev["id"]).execute() == ev
    # another calendar (another organizer) is not limited
    assert service.events().insert(calendarId="other", body=event_body()).execute()


def test_reset_and_delete_clear_the_usage_limits(service: Any, base_url: str) -> None:
    quota(base_url, {"requestsPerMinute": 1, "invitationsPerWindow": 0})
    with pytest.raises(HttpError):
        service.events().insert(
            calendarId=CAL, body=event_body(attendees=[{"email": ANA}]), sendUpdates="all"
        ).execute()
    with pytest.raises(HttpError) as exc:
        service.events().list(calendarId=CAL).execute()
    assert exc.value.status_code == 403 and reason_of(exc) == "rateLimitExceeded"
    assert quota(base_url)["limited"]
    off = control(base_url, "DELETE", "/_emulator/calendar/quota")
    assert off["settings"]["requestsPerMinute"] is None and off["rejected"] == {}
    quota(base_url, {"requestsPerMinute": 1})
    service.events().list(calendarId=CAL).execute()
    control(base_url, "POST", "/_emulator/calendar/reset", {})
    assert quota(base_url) == {
        "settings": {
            "requestsPerMinute": None,
            "requestWindowSeconds": 60.0,
            "rateLimitStatus": 403,
            "rateLimitReason": "rateLimitExceeded",
            "invitationsPerWindow": None,
            "invitationWindowSeconds": 60.0,
            "limitedForSeconds": None,
            "readOnlyWhenLimited": False,
            "internalDomains": [],
        },
        "requests": {},
        "externalEmails": {},
        "limited": {},
        "rejected": {},
    }
    for _ in range(3):
        service.events().insert(
            calendarId=CAL, body=event_body(attendees=[{"email": ANA}]), sendUpdates="all"
        ).execute()
    assert control(base_url, "GET", "/_emulator/calendar/invitations")["total"] == 3


# -- service accounts, with the OAuth emulator's real tokens ---------------------------------

SA_EMAIL = "enrollments@classes-test.iam.gserviceaccount.com"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events"
FORBIDDEN_FOR_SERVICE_ACCOUNTS = google_error(
    403,
    "forbiddenForServiceAccounts",
    "Service accounts cannot invite attendees without Domain-Wide Delegation of Authority.",
    domain="calendar",
)


@pytest.fixture(scope="module")
def wired() -> Iterator[RunningEmulators]:
    """The emulators wired as the local stack wires them (token_email from the OAuth server)."""
    running = start_emulators(
        EmulatorCredentials("client-id", "client-secret", "1//refresh", "APP_USR-test")
    )
    yield running
    running.stop()


def service_account_calendar(running: RunningEmulators, subject: str | None) -> Any:
    """A Calendar client authorized by the JWT-bearer grant, as ADC would do it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    oauth = running.urls()["oauth"]
    req = urllib.request.Request(
        oauth + "/_emulator/oauth/service-accounts",
        data=json.dumps(
            {"client_email": SA_EMAIL, "public_key_pem": public.decode(), "key_id": "k1"}
        ).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).close()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    creds = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "project_id": "classes-test",
            "private_key_id": "k1",
            "private_key": private.decode(),
            "client_email": SA_EMAIL,
            "client_id": "1234567890",
            "token_uri": oauth + "/token",
        },
        scopes=[CALENDAR_SCOPE],
    )
    if subject:
        creds = creds.with_subject(subject)
    return build(
        "calendar",
        "v3",
        static_discovery=True,
        credentials=creds,
        client_options={"api_endpoint": running.urls()["calendar"]},
    )


def test_service_account_needs_delegation_to_invite(wired: RunningEmulators) -> None:
    base = running_base = wired.urls()["calendar"].split("/calendar/v3/")[0]
    control(running_base, "POST", "/_emulator/calendar/reset", {})
    robot = service_account_calendar(wired, subject=None)
    # without attendees a service account may write its own calendar
    ev = robot.events().insert(calendarId=CAL, body=event_body()).execute()
    for call in (
        robot.events().insert(calendarId=CAL, body=event_body(attendees=[{"email": ANA}])),
        robot.events().patch(
            calendarId=CAL, eventId=ev["id"], body={"attendees": [{"email": ANA}]}
        ),
        robot.events().update(
            calendarId=CAL, eventId=ev["id"], body=event_body(attendees=[{"email": ANA}])
        ),
    ):
        with pytest.raises(HttpError) as exc:
            call.execute()
        assert exc.value.status_code == 403
        assert json.loads(exc.value.content) == FORBIDDEN_FOR_SERVICE_ACCOUNTS
    assert "attendees" not in robot.events().get(calendarId=CAL, eventId=ev["id"]).execute()
    assert control(base, "GET", "/_emulator/calendar/quota")["rejected"] == {
        "forbiddenForServiceAccounts": 3
    }

    # with domain-wide delegation the token is the teacher's: inviting works
    delegated = service_account_calendar(wired, subject=TEACHER)
    invited = (
        delegated.events()
        .patch(
            calendarId=CAL,
            eventId=ev["id"],
            body={"attendees": [{"email": ANA}]},
            sendUpdates="all",
        )
        .execute()
    )
    assert [a["email"] for a in invited["attendees"]] == [ANA]
    # the undelegated account may still drop attendees and edit an event that has them
    robot.events().patch(calendarId=CAL, eventId=ev["id"], body={"summary": "x"}).execute()
    emptied = (
        robot.events().patch(calendarId=CAL, eventId=ev["id"], body={"attendees": []}).execute()
    )
    assert emptied["attendees"] == []
    log = control(base, "GET", "/_emulator/calendar/invitations")["log"]
    assert [emails_of(e) for e in log] == [[(ANA, "invitation")]]
