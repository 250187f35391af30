"""The one Calendar module: event ids, the booking-to-event mapper, and a small API facade.

Every function talks to Google Calendar through `CalendarApi`. The discovery-based service
is built once per instance; each thread gets its own authorized HTTP transport because
httplib2 connections must not be shared between threads. Errors come out as the platform's
own (`shared.errors`): rate limits and 5xx as `TransientUpstreamError`, a reused event id as
`UpstreamConflict`, a stale sync token as `UpstreamGone`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google_auth_httplib2
import httplib2
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from shared.bookings import Booking
from shared.clients import lazy
from shared.config import get_settings
from shared.errors import (
    PermanentUpstreamError,
    PlatformError,
    TransientUpstreamError,
    UpstreamConflict,
    UpstreamGone,
    UpstreamNotFound,
)
from shared.retry import Deadline, with_backoff
from shared.tokens import calendar_credentials

RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
MEET = "hangoutsMeet"


def event_id_for_booking(booking_id: str) -> str:
    """A Calendar event id that only this booking can have.

    base32hex (the alphabet Google accepts: a-v, 0-9) of a SHA-256 digest, so any booking id
    maps to a valid, fixed-length id, and a retry after a lost answer collides (409) with
    the event it already created instead of creating a second one.
    """
    digest = hashlib.sha256(f"booking:{booking_id}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def class_event_body(booking: Booking, payment_id: str) -> dict[str, Any]:
    """The event a paid booking becomes (mapper; no I/O)."""
    start, end = booking.class_times()
    teacher, student = booking.teacher, booking.student
    description = "\n".join(
        line
        for line in (
            f"Clase: {booking.class_title}",
            f"Docente: {teacher.name or teacher.email}",
            f"Estudiante: {student.name or student.email}",
            f"Reserva: {booking.id}",
        )
        if line
    )
    attendees = [
        {"email": person.email, "displayName": person.name or None}
        for person in (student, teacher)
        if person.email
    ]
    return {
        "id": event_id_for_booking(booking.id),
        "summary": f"{booking.class_title} con {teacher.name or teacher.email}",
        "description": description,
        "start": {"dateTime": start.isoformat(), "timeZone": booking.time_zone},
        "end": {"dateTime": end.isoformat(), "timeZone": booking.time_zone},
        "attendees": [{k: v for k, v in a.items() if v} for a in attendees],
        "reminders": {
            "useDefault": False,
            "overrides": [
                {"method": "email", "minutes": 24 * 60},
                {"method": "popup", "minutes": 15},
            ],
        },
        "transparency": "opaque",
        "guestsCanInviteOthers": False,
        "extendedProperties": {"private": {"bookingId": booking.id, "paymentId": payment_id}},
        "conferenceData": {
            "createRequest": {
                "requestId": f"meet-{event_id_for_booking(booking.id)[:40]}",
                "conferenceSolutionKey": {"type": MEET},
            }
        },
    }


@dataclass(frozen=True)
class EventLink:
    """What a booking keeps of its Calendar event."""

    event_id: str
    status: str
    html_link: str
    meet_link: str
    conference_status: str
    booking_id: str

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> EventLink:
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
        return cls(
            event_id=str(event.get("id", "")),
            status=str(event.get("status") or "confirmed"),
            html_link=str(event.get("htmlLink") or ""),
            meet_link=str(meet or ""),
            conference_status=str(status or ("success" if meet else "none")),
            booking_id=str(private.get("bookingId") or ""),
        )


def _translate(exc: HttpError) -> PlatformError:
    status = int(exc.resp.status)
    reason = ""
    try:
        errors = json.loads(exc.content or b"{}").get("error", {}).get("errors") or []
        reason = str(errors[0].get("reason", "")) if errors else ""
    except (ValueError, AttributeError):
        pass
    message = f"Google Calendar answered {status} {reason}".strip()
    if status == 429 or status >= 500 or (status == 403 and reason in RATE_LIMIT_REASONS):
        return TransientUpstreamError(message, status=status, reason=reason)
    if status == 401:
        return TransientUpstreamError(message, status=status, reason=reason)
    if status == 409:
        return UpstreamConflict(message, status=status, reason=reason)
    if status == 404:
        return UpstreamNotFound(message, status=status, reason=reason)
    if status == 410:
        return UpstreamGone(message, status=status, reason=reason)
    return PermanentUpstreamError(message, status=status, reason=reason)


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

    def _execute(self, request: Any, http: httplib2.Http | None = None) -> Any:
        try:
            return request.execute(http=http if http is not None else self._http(), num_retries=0)
        except HttpError as exc:
            raise _translate(exc) from exc
        except (TimeoutError, httplib2.HttpLib2Error, OSError) as exc:
            self._local.http = None  # a broken connection: start the next call afresh
            raise TransientUpstreamError("Google Calendar unreachable") from exc

    def call(self, make: Callable[[Any], Any], deadline: Deadline | None = None) -> Any:
        """Run one API call (`make(events_or_channels_service)`) with backoff in `deadline`."""
        if deadline is None:
            return self._execute(make(self._service))
        return with_backoff(lambda: self._execute(make(self._service)), deadline)

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
        )
        return result

    def get_event(self, event_id: str, deadline: Deadline) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            lambda s: s.events().get(calendarId=self.calendar_id, eventId=event_id), deadline
        )
        return result

    def watch_events(self, channel: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """Open a push channel on the calendar's events; the answer holds the real expiration."""
        result: dict[str, Any] = self.call(
            lambda s: s.events().watch(calendarId=self.calendar_id, body=channel), deadline
        )
        return result

    def stop_channel(self, channel_id: str, resource_id: str, deadline: Deadline) -> None:
        """Stop a push channel; an unknown or expired one is `UpstreamNotFound`."""
        self.call(
            lambda s: s.channels().stop(body={"id": channel_id, "resourceId": resource_id}),
            deadline,
        )

    def list_events(self, query: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """One page of `events.list` on the platform's calendar (`query`: timeMin, pageToken...)."""
        result: dict[str, Any] = self.call(
            lambda s: s.events().list(calendarId=self.calendar_id, **query), deadline
        )
        return result

    def access_role(self, access_token: str, deadline: Deadline) -> str:
        """The calendar's `accessRole` (owner, writer, reader...) for another grant's token.

        `events.list` answers it; a consent is checked this way before its refresh token
        replaces the stored one. 404 or 403: that account cannot see the calendar.
        """
        request = self._service.events().list(
            calendarId=self.calendar_id, maxResults=1, fields="accessRole"
        )
        request.headers["authorization"] = f"Bearer {access_token}"
        http = httplib2.Http(timeout=self._timeout)
        result: dict[str, Any] = with_backoff(lambda: self._execute(request, http), deadline)
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
        request = self._service.events().list(calendarId=calendar_id, key=api_key, **query)
        result: dict[str, Any] = with_backoff(lambda: self._execute(request, plain), deadline)
        return result


def calendar_api() -> CalendarApi:
    return lazy("calendar_api", CalendarApi)
