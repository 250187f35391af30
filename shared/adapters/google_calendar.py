"""The one Calendar module: the booking-to-event mapper and a small API facade.

Every function talks to Google Calendar through `CalendarApi`. The discovery-based service
is built once per instance; each thread gets its own authorized HTTP transport because
httplib2 connections must not be shared between threads. Every call runs through
`shared.adapters.boundary.call`, which bounds it by the request's deadline and translates Google's
errors: rate limits and 5xx are transient, a reused event id is `UpstreamConflict`, a stale
sync token `UpstreamGone`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import google_auth_httplib2
import httplib2
from googleapiclient import discovery

from shared.adapters.boundary import Upstream, call
from shared.adapters.clients import lazy
from shared.adapters.google_credentials import calendar_credentials
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.bookings import (
    Booking,
    CalendarStatus,
    ClassEvent,
    ConferenceStatus,
    Person,
    event_id_for_booking,
)
from shared.domain.seats import Session, event_id_for_session
from shared.errors import (
    PermanentUpstreamError,
    UpstreamConflict,
    UpstreamGone,
    UpstreamNotFound,
    UpstreamPreconditionFailed,
)

__all__ = [
    "MEET",
    "SEAT_SEND_UPDATES",
    "CalendarApi",
    "add_attendee",
    "calendar_api",
    "cancel_event",
    "class_event",
    "class_event_body",
    "ensure_class_event",
    "ensure_session_event",
    "move_event",
    "remove_attendee",
    "session_event_body",
]

MEET = "hangoutsMeet"
SEAT_SEND_UPDATES = "none"
"""sendUpdates when a seat's student joins or leaves a session's event. Google has no way
to email only that student: `all` would email every enrolled student each time (and burn
the external-invitation limit in a burst), so nobody is emailed and the platform's mailer
tells the one student (`seat_notices`). See docs/calendar-invitations.md."""


def class_event(event: dict[str, Any]) -> ClassEvent:
    """What a booking keeps of a Calendar event: its id, status, links, the Meet
    conference's state, the booking it names, and its version."""
    conference = event.get("conferenceData") or {}
    status = ((conference.get("createRequest") or {}).get("status") or {}).get("statusCode")
    meet = event.get("hangoutLink") or next(
        (
            entry.get("uri", "")
            for entry in conference.get("entryPoints", [])
            if entry.get("entryPointType") == "video"
        ),
        "",
    )
    private = (event.get("extendedProperties") or {}).get("private") or {}
    return ClassEvent(
        event_id=str(event.get("id", "")),
        status=str(event.get("status") or CalendarStatus.CONFIRMED),
        html_link=str(event.get("htmlLink") or ""),
        meet_link=str(meet or ""),
        conference_status=str(
            status or (ConferenceStatus.SUCCESS if meet else ConferenceStatus.NONE)
        ),
        booking_id=str(private.get("bookingId") or ""),
        updated=str(event.get("updated") or ""),
        etag=str(event.get("etag") or ""),
    )


def _event_body(
    event_id: str,
    summary: str,
    description: str,
    times: tuple[datetime, datetime],
    time_zone: str,
    guests: list[Person],
    private: dict[str, str],
) -> dict[str, Any]:
    """What every class event has: its id, times, guests, reminders and a Meet request."""
    start, end = times
    return {
        "id": event_id,
        "summary": summary,
        "description": description,
        "start": {"dateTime": start.isoformat(), "timeZone": time_zone},
        "end": {"dateTime": end.isoformat(), "timeZone": time_zone},
        "attendees": [
            {k: v for k, v in {"email": p.email, "displayName": p.name}.items() if v}
            for p in guests
            if p.email
        ],
        "reminders": {
            "useDefault": False,
            "overrides": [
                {"method": "email", "minutes": 24 * 60},
                {"method": "popup", "minutes": 15},
            ],
        },
        "transparency": "opaque",
        "guestsCanInviteOthers": False,
        "extendedProperties": {"private": private},
        "conferenceData": {
            "createRequest": {
                "requestId": f"meet-{event_id[:40]}",
                "conferenceSolutionKey": {"type": MEET},
            }
        },
    }


def class_event_body(booking: Booking, payment_id: str) -> dict[str, Any]:
    """The event a paid booking becomes (mapper; no I/O)."""
    teacher, student = booking.teacher, booking.student
    description = "\n".join(
        (
            f"Clase: {booking.class_title}",
            f"Docente: {teacher.name or teacher.email}",
            f"Estudiante: {student.name or student.email}",
            f"Reserva: {booking.id}",
        )
    )
    return _event_body(
        event_id_for_booking(booking.id),
        f"{booking.class_title} con {teacher.name or teacher.email}",
        description,
        booking.class_times(),
        booking.time_zone,
        [student, teacher],
        {"bookingId": booking.id, "paymentId": payment_id},
    )


def session_event_body(session: Session) -> dict[str, Any]:
    """The one event of a group session: the teacher invited, students added seat by seat,
    and none of them sees the others' addresses."""
    teacher = session.teacher
    body = _event_body(
        event_id_for_session(session.id),
        f"{session.title} con {teacher.name or teacher.email} (grupal)",
        f"Clase grupal: {session.title}\nDocente: {teacher.name or teacher.email}",
        session.as_booking().class_times(),
        session.time_zone,
        [teacher],
        {"sessionId": session.id},
    )
    return {**body, "guestsCanSeeOtherGuests": False}


class CalendarApi:
    """A small facade over the Calendar v3 service, one per instance."""

    def __init__(self) -> None:
        settings = get_settings()
        options = (
            {"api_endpoint": settings.calendar_api_endpoint}
            if settings.calendar_api_endpoint
            else None
        )
        self.calendar_id = settings.calendar_id
        self._timeout = settings.upstream_timeout_seconds
        self._service = discovery.build(
            "calendar",
            "v3",
            http=httplib2.Http(timeout=self._timeout),
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
        self._local = threading.local()

    def _http(self) -> google_auth_httplib2.AuthorizedHttp:
        http = getattr(self._local, "http", None)
        if http is None:
            http = google_auth_httplib2.AuthorizedHttp(
                calendar_credentials(), http=httplib2.Http(timeout=self._timeout)
            )
            self._local.http = http
        return http

    def _execute(self, request: Any, http: httplib2.Http | None) -> Any:
        """One attempt; httplib2's socket timeout (`UPSTREAM_TIMEOUT_SECONDS`) bounds it."""
        http = http if http is not None else self._http()
        try:
            return request.execute(http=http, num_retries=0)
        except (httplib2.HttpLib2Error, OSError):
            if http is getattr(self._local, "http", None):
                self._local.http = None  # a broken connection: start the next call afresh
            raise

    def call(
        self,
        make: Callable[[Any], Any],
        deadline: Deadline,
        what: str,
        http: httplib2.Http | None = None,
    ) -> Any:
        """Run one API call (`make(service)` builds it) with backoff inside `deadline`."""
        return call(
            Upstream.CALENDAR,
            lambda _timeout: self._execute(make(self._service), http),
            deadline,
            what,
            attempt_timeout=self._timeout,
        )

    # The calls the platform makes ---------------------------------------------------
    def insert_event(self, body: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            lambda s: s.events().insert(
                calendarId=self.calendar_id,
                body=body,
                conferenceDataVersion=1,
                sendUpdates="all",
            ),
            deadline,
            "insert event",
        )
        return result

    def get_event(self, event_id: str, deadline: Deadline) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            lambda s: s.events().get(calendarId=self.calendar_id, eventId=event_id),
            deadline,
            "get event",
        )
        return result

    def patch_event(
        self,
        event_id: str,
        changes: dict[str, Any],
        deadline: Deadline,
        *,
        etag: str = "",
        send_updates: str = "all",
    ) -> dict[str, Any]:
        """Change an event and tell its guests; `conferenceDataVersion=1` keeps the Meet link
        (without it Google drops conference changes on a modifying call). With `etag`, only
        if nobody changed the event since (else `UpstreamPreconditionFailed`)."""

        def make(service: Any) -> Any:
            request = service.events().patch(
                calendarId=self.calendar_id,
                eventId=event_id,
                body=changes,
                conferenceDataVersion=1,
                sendUpdates=send_updates,
            )
            if etag:
                request.headers["If-Match"] = etag
            return request

        result: dict[str, Any] = self.call(make, deadline, "patch event")
        return result

    def watch_events(self, channel: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """Open a push channel on the calendar's events; the answer holds the real expiration."""
        result: dict[str, Any] = self.call(
            lambda s: s.events().watch(calendarId=self.calendar_id, body=channel),
            deadline,
            "watch events",
        )
        return result

    def stop_channel(self, channel_id: str, resource_id: str, deadline: Deadline) -> None:
        """Stop a push channel; an unknown or expired one is `UpstreamNotFound`."""
        self.call(
            lambda s: s.channels().stop(body={"id": channel_id, "resourceId": resource_id}),
            deadline,
            "stop channel",
        )

    def list_events(self, query: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """One page of `events.list` on the platform's calendar (`query`: timeMin, pageToken...)."""
        result: dict[str, Any] = self.call(
            lambda s: s.events().list(calendarId=self.calendar_id, **query),
            deadline,
            "list events",
        )
        return result

    def access_role(self, access_token: str, deadline: Deadline) -> str:
        """The calendar's `accessRole` (owner, writer, reader...) for another grant's token.

        `events.list` answers it; a consent is checked this way before its refresh token
        replaces the stored one. 404 or 403: that account cannot see the calendar.
        """

        def make(service: Any) -> Any:
            request = service.events().list(
                calendarId=self.calendar_id, maxResults=1, fields="accessRole"
            )
            request.headers["authorization"] = f"Bearer {access_token}"
            return request

        http = httplib2.Http(timeout=self._timeout)
        result: dict[str, Any] = self.call(make, deadline, "read access role", http)
        return str(result.get("accessRole") or "")

    def list_public_events(
        self, calendar_id: str, api_key: str, query: dict[str, Any], deadline: Deadline
    ) -> dict[str, Any]:
        """One page of a public calendar, read with an API key alone: no OAuth token is sent.

        Google serves read methods of calendars made public to `key=` callers, so this path
        never touches the admin's refresh token.
        """
        plain = getattr(self._local, "plain_http", None)
        if plain is None:
            plain = self._local.plain_http = httplib2.Http(timeout=self._timeout)
        result: dict[str, Any] = self.call(
            lambda s: s.events().list(calendarId=calendar_id, key=api_key, **query),
            deadline,
            "list public events",
            plain,
        )
        return result


def calendar_api() -> CalendarApi:
    return lazy("calendar_api", CalendarApi)


def ensure_class_event(booking: Booking, payment_id: str, deadline: Deadline) -> ClassEvent:
    """Create the booking's event, or adopt it if an earlier attempt already did.

    The event id is derived from the booking, so a second attempt (a duplicated webhook, a
    retry after a lost answer, the reconcile step) meets a 409 and adopts the event that
    exists instead of creating another.
    """
    api = calendar_api()
    body = class_event_body(booking, payment_id)
    try:
        event = class_event(api.insert_event(body, deadline))
    except UpstreamConflict:
        event = class_event(api.get_event(body["id"], deadline))
    if event.booking_id and event.booking_id != booking.id:
        raise PermanentUpstreamError(f"event {event.event_id} belongs to another booking")
    return event


def cancel_event(event_id: str, deadline: Deadline) -> ClassEvent | None:
    """Cancel the event and tell its guests, once: a cancelled or missing one is left alone
    (None when it does not exist), so a repeated cancel emails nobody twice."""
    api = calendar_api()
    try:
        event = class_event(api.get_event(event_id, deadline))
    except (UpstreamNotFound, UpstreamGone):
        return None
    if event.status == CalendarStatus.CANCELLED:
        return event
    return class_event(api.patch_event(event_id, {"status": "cancelled"}, deadline))


def move_event(booking: Booking, start: datetime, end: datetime, deadline: Deadline) -> ClassEvent:
    """Move the booking's event to new times (the guests are told; the Meet link stays)."""
    changes = {
        "start": {"dateTime": start.isoformat(), "timeZone": booking.time_zone},
        "end": {"dateTime": end.isoformat(), "timeZone": booking.time_zone},
    }
    return class_event(calendar_api().patch_event(booking.google_event_id, changes, deadline))


def ensure_session_event(session: Session, deadline: Deadline) -> ClassEvent:
    """Create the session's event, or adopt it (a retried request meets a 409)."""
    api = calendar_api()
    body = session_event_body(session)
    try:
        return class_event(api.insert_event(body, deadline))
    except UpstreamConflict:
        return class_event(api.get_event(body["id"], deadline))


def _change_attendees(
    event_id: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None],
    deadline: Deadline,
) -> ClassEvent | None:
    """Read the event, change its guest list, write it back only if nobody changed it since
    (`If-Match`); on 412 read again and re-apply. A patch replaces the whole attendees
    array, so an unconditional one could drop a guest another seat added meanwhile."""
    api = calendar_api()
    while True:
        try:
            event = api.get_event(event_id, deadline)
        except (UpstreamNotFound, UpstreamGone):
            return None
        if event.get("status") == "cancelled":
            return class_event(event)  # a cancelled class takes no guests
        changed = change(list(event.get("attendees") or []))
        if changed is None:
            return class_event(event)  # nothing to do: already as wanted
        try:
            patched = api.patch_event(
                event_id,
                {"attendees": changed},
                deadline,
                etag=str(event.get("etag") or ""),
                send_updates=SEAT_SEND_UPDATES,
            )
        except UpstreamPreconditionFailed:
            continue  # another seat changed the guest list: read it again
        return class_event(patched)


def add_attendee(
    event_id: str, guest: Person, deadline: Deadline, seated: Sequence[Person] = ()
) -> ClassEvent | None:
    """Add one student to a session's event, once (already there: no write).

    The first write also brings in every other seat already held (`seated`): in an
    enrollment burst one write carries many students, and a writer that loses the race
    finds itself added by the winner, so a seat costs about one write, not one per rival.
    """
    wanted = [guest, *(p for p in seated if p.email.lower() != guest.email.lower())]

    def change(attendees: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        present = {str(a.get("email", "")).lower() for a in attendees}
        if guest.email.lower() in present:
            return None
        missing = [p for p in wanted if p.email.lower() not in present]
        added = [
            {k: v for k, v in {"email": p.email, "displayName": p.name}.items() if v}
            for p in missing
        ]
        return [*attendees, *added]

    return _change_attendees(event_id, change, deadline)


def remove_attendee(event_id: str, email: str, deadline: Deadline) -> ClassEvent | None:
    """Take one student out of a session's event (gone already: no write)."""

    def change(attendees: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        kept = [a for a in attendees if str(a.get("email", "")).lower() != email.lower()]
        return kept if len(kept) != len(attendees) else None

    return _change_attendees(event_id, change, deadline)
