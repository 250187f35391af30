"""The admin listing of upcoming classes, and the public read feed of a public calendar.

Admin mode: one page of `events.list` on the platform's calendar, joined with the bookings
behind its events, rendered as JSON or as an iCalendar feed. Times are rendered in Buenos
Aires time with their offset.

The join does not wait for Calendar. Which bookings a page names is only known once the
page arrives, but which bookings a page will hold can be guessed before: the page is the
next `limit` events ending after `from` (or after the previous page's last start), ordered
by start, and scheduled bookings carry their times. So one Firestore query for the
scheduled bookings ending after that instant, ordered by end, `limit` plus a little slack,
runs beside `events.list`; once the page is there, only the events whose booking the guess
missed (a booking not `scheduled`, times stored with another offset, a tie beyond the
slack) cost one batched read after it. The guess only decides what is read early, never
what is answered: every event is joined with its own booking document either way. The ICS
feed also asks for its next Calendar page while it joins the current one.

Filters on booking fields (`teacher`, `status`) apply after the join, to each Calendar page:
a page holds at most `limit` events and may hold fewer, even none, while `nextPageToken`
still says there is more (as Google's own `events.list` does with `q`). Filling pages up to
`limit` would cost several Calendar pages and Firestore reads per answer, with no bound.

Public mode: title, start and end of a calendar made public (`PUBLIC_CALENDAR_ID`), read
with a Google API key and no OAuth; nothing else of an event (attendees, Meet links,
bookings) reaches the answer. It is never the platform's own calendar: making that one
public would hand its attendees and Meet links to anyone asking Google directly, whatever
this answer leaves out; without a separate public calendar the feed answers 404.

Page tokens are ours: they wrap Google's token together with the window, so page two of a
default window ("from now") keeps the window of page one, and the start of the page's last
event, where the next page's bookings are looked for.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar

from shared import clock, logs
from shared.adapters import firestore
from shared.adapters.google_calendar import calendar_api, class_event
from shared.adapters.secret_manager import read_secret
from shared.clock import TIME_ZONE, ZONE, Deadline, parse_local
from shared.config import get_settings
from shared.domain.bookings import BookingStatus, ClassEvent, Person
from shared.errors import InvalidRequest, NotFound, PermanentUpstreamError, PlatformError

__all__ = [
    "Listing",
    "Query",
    "Timings",
    "list_events",
    "parse_query",
    "render_ics",
    "require_public_enabled",
    "wants_public",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
DEFAULT_WINDOW = timedelta(days=30)
FEED_PAGE_SIZE = 250
MAX_FEED_EVENTS = 2500
ADMIN_CACHE_CONTROL = "private, max-age=30"
# Public data, fetched with our API key's quota: let shared caches keep it a while.
PUBLIC_CACHE_CONTROL = "public, max-age=300"
BOOKING_FIELDS = ("status", "student", "teacher", "paymentStatus", "meetLink", "htmlLink")
PUBLIC_EVENT_FIELDS = "nextPageToken,items(id,iCalUID,updated,status,summary,start,end)"
ADMIN_PARAMS = frozenset({"from", "to", "limit", "pageToken", "teacher", "status", "format"})
PUBLIC_PARAMS = frozenset({"public", "from", "to", "limit", "pageToken", "format"})
FORMATS = ("json", "ics")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""`from` and `to` lie in [EPOCH, LATEST): near year 1 or 9999 converting to Buenos Aires
time, adding the default window or rendering the feed's time zone overflows."""
MAX_PAGE_TOKEN_CHARS = 4096
PREFETCH_SLACK = 10
"""Bookings read early beyond a page's size: the previous page's last class, overlaps."""
PREFETCH_HORIZON = timedelta(days=1)
"""How far past `to` a class may end and still be on the page (the longest class)."""
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="listing")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# "+03:00" arrives as " 03:00" when a caller forgets to percent-encode the "+".
_UNENCODED_PLUS = re.compile(r"(.*\d) (\d{2}(?::?\d{2})?)")
_PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
}


@dataclass(frozen=True)
class Query:
    """A validated listing request."""

    public: bool
    time_min: datetime
    time_max: datetime
    limit: int
    google_page_token: str
    teacher: str
    status: BookingStatus | None
    ics: bool
    page_start: datetime | None = None
    """The previous page's last start (from our page token): this page's first instant."""


@dataclass
class Timings:
    """Where a listing's time went, for the log line and `Server-Timing` (milliseconds).

    `calendar` and `firestore` run side by side; `join` is what the answer waited for
    Firestore after Calendar had answered (the booking read's share of the latency).
    """

    calendar: float = 0.0
    firestore: float = 0.0
    join: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @contextmanager
    def measure(self, upstream: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            with self._lock:  # the reads ahead add theirs from the pool's threads
                setattr(self, upstream, getattr(self, upstream) + elapsed)


@dataclass(frozen=True)
class Listing:
    """The HTTP answer of a listing: 200 with a body, or 304 without one."""

    status: int
    body: bytes
    headers: dict[str, str]
    events: int
    timings: Timings


@dataclass(frozen=True)
class _Row:
    """One Calendar event and the booking document behind it (None: no booking); `link`,
    the event as a booking sees it, once read (a page's worth of them is not free)."""

    event: dict[str, Any]
    booking: dict[str, Any] | None
    link: ClassEvent | None = None
    session: dict[str, Any] | None = None


# -- parameters ---------------------------------------------------------------------------


def wants_public(args: Mapping[str, list[str]]) -> bool:
    """Whether the request asks for the public feed (`?public=1`); checked before any auth."""
    return "public" in args


_warned_unconfigured = False


def require_public_enabled() -> str:
    """The public calendar's id, or 404 if the feed is off or has no calendar of its own."""
    global _warned_unconfigured
    settings = get_settings()
    if not settings.public_events_enabled:
        raise NotFound("the public listing is not enabled")
    public_id = settings.public_calendar_id
    if not public_id or public_id == settings.calendar_id:
        if not _warned_unconfigured:
            _warned_unconfigured = True
            logs.warning(
                "public feed not configured: PUBLIC_CALENDAR_ID must name a public calendar "
                "other than CALENDAR_ID"
            )
        raise NotFound("public feed not configured")
    return public_id


def parse_query(args: Mapping[str, list[str]], now: datetime | None = None) -> Query:
    """Validate every parameter; anything wrong is a 400 that names the parameter."""
    public = wants_public(args)
    allowed = PUBLIC_PARAMS if public else ADMIN_PARAMS
    for name, values in args.items():
        if name not in allowed:
            mode = "the public listing" if public else "this listing"
            raise InvalidRequest(f"unknown parameter for {mode}: {name}", parameter=name)
        if len(values) != 1:
            raise InvalidRequest(f"{name} must be given once", parameter=name)
    value = {name: values[0] for name, values in args.items()}
    if public and value["public"] not in ("1", "true"):
        raise InvalidRequest("public must be 1 or true", parameter="public")
    output = value.get("format", "json")
    if output not in FORMATS:
        raise InvalidRequest("format must be json or ics", parameter="format")
    ics = output == "ics"
    if ics:
        for name in ("limit", "pageToken"):
            if name in value:
                raise InvalidRequest(f"{name} does not apply to format=ics", parameter=name)
    limit = _limit(value["limit"]) if "limit" in value else DEFAULT_LIMIT
    time_min = _parameter_time(value["from"], "from") if "from" in value else None
    time_max = _parameter_time(value["to"], "to") if "to" in value else None
    google_token = ""
    page_start = None
    if "pageToken" in value:
        google_token, token_min, token_max, page_start = _unwrap_token(value["pageToken"], public)
        if (time_min and time_min != token_min) or (time_max and time_max != token_max):
            raise InvalidRequest(
                "pageToken belongs to another from/to window", parameter="pageToken"
            )
        time_min, time_max = token_min, token_max
    if time_min is None:
        # Whole minutes, so repeated default requests share an ETag for the cache's lifetime.
        time_min = (now or clock.now()).astimezone(ZONE).replace(second=0, microsecond=0)
    if time_max is None:
        time_max = time_min + DEFAULT_WINDOW
    if time_max <= time_min:
        raise InvalidRequest("to must be later than from", parameter="to")
    teacher = value.get("teacher", "").strip().lower()
    if "teacher" in value and (len(teacher) > 254 or not _EMAIL.fullmatch(teacher)):
        raise InvalidRequest("teacher must be an email address", parameter="teacher")
    status = None
    if "status" in value:
        try:
            status = BookingStatus(value["status"])
        except ValueError:
            names = ", ".join(s.value for s in BookingStatus)
            raise InvalidRequest(f"status must be one of {names}", parameter="status") from None
    return Query(public, time_min, time_max, limit, google_token, teacher, status, ics, page_start)


def _limit(raw: str) -> int:
    # Length first: int() refuses thousands of digits with a ValueError.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", parameter="limit")
    return int(raw)


def _parameter_time(raw: str, name: str) -> datetime:
    text = raw.strip()
    if match := _UNENCODED_PLUS.fullmatch(text):
        text = f"{match[1]}+{match[2]}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or "T" not in text.upper():
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date and time with an offset, "
            "e.g. 2026-12-01T18:00:00-03:00",
            parameter=name,
        )
    try:
        return _local(value)
    except ValueError:
        raise InvalidRequest(
            f"{name} must lie between 1970-01-01 and 9999-01-01", parameter=name
        ) from None


def _local(value: datetime) -> datetime:
    """An aware instant in Buenos Aires time; ValueError outside [EPOCH, LATEST)."""
    if value.tzinfo is None or not EPOCH <= value < LATEST:
        raise ValueError("instant out of range")
    return value.astimezone(ZONE)


def _wrap_token(google_token: str, query: Query, last_start: datetime | None = None) -> str:
    raw = {
        "m": "public" if query.public else "admin",
        "f": query.time_min.isoformat(),
        "t": query.time_max.isoformat(),
        "g": google_token,
    }
    if last_start is not None and not query.public:
        raw["s"] = last_start.isoformat()
    encoded = base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode())
    return encoded.decode().rstrip("=")


def _unwrap_token(token: str, public: bool) -> tuple[str, datetime, datetime, datetime | None]:
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError("longer than any token of ours")
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw["m"] != ("public" if public else "admin"):
            raise ValueError("a token of the other listing")
        last_start = _local(datetime.fromisoformat(raw["s"])) if "s" in raw else None
        return (
            str(raw["g"]),
            _local(datetime.fromisoformat(raw["f"])),
            _local(datetime.fromisoformat(raw["t"])),
            last_start,
        )
    # RecursionError: a crafted token of deeply nested JSON arrays.
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError, RecursionError):
        raise InvalidRequest(
            "pageToken is not a token of this listing", parameter="pageToken"
        ) from None


# -- reading ------------------------------------------------------------------------------


def list_events(query: Query, if_none_match: str, deadline: Deadline) -> Listing:
    """The answer to a validated query: a page (JSON) or the whole window (ICS)."""
    timings = Timings()
    if query.ics:
        rows: list[_Row] = []
        for page in _pages(query, FEED_PAGE_SIZE, "", deadline, timings, follow=True):
            rows.extend(page.rows)
            if page.next_token and len(rows) >= MAX_FEED_EVENTS:
                raise InvalidRequest(
                    f"the window holds more than {MAX_FEED_EVENTS} events; choose an earlier to",
                    parameter="to",
                )
        body = render_ics(rows, query)
        content_type = "text/calendar; charset=utf-8"
    else:
        page = next(_pages(query, query.limit, query.google_page_token, deadline, timings))
        rows = page.rows
        token = _wrap_token(page.next_token, query, page.last_start) if page.next_token else None
        body = render_json(rows, query, token)
        content_type = "application/json"
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": PUBLIC_CACHE_CONTROL if query.public else ADMIN_CACHE_CONTROL,
    }
    if not query.public:
        headers["Vary"] = "Authorization, X-API-Key"
        headers["Server-Timing"] = (
            f"calendar;dur={timings.calendar:.1f}, firestore;dur={timings.firestore:.1f}, "
            f"join;dur={timings.join:.1f}"
        )
    if etag_matches(if_none_match, etag):
        return Listing(304, b"", headers, len(rows), timings)
    return Listing(200, body, {**headers, "Content-Type": content_type}, len(rows), timings)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: `W/` prefixes do not matter, `*` matches."""
    candidates = [tag.strip() for tag in if_none_match.split(",") if tag.strip()]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in candidates)


@dataclass(frozen=True)
class _Page:
    """One Calendar page joined and filtered, Google's next token, and its last start."""

    rows: list[_Row]
    next_token: str
    last_start: datetime | None


def _pages(
    query: Query,
    size: int,
    google_token: str,
    deadline: Deadline,
    timings: Timings,
    *,
    follow: bool = False,
) -> Iterator[_Page]:
    """Pages from `google_token` on, each joined with its bookings.

    The bookings a page will name are read beside its `events.list`; with `follow` (the
    ICS feed) the next Calendar page and its bookings are asked for while this one is
    joined, so neither upstream waits for the other.
    """
    after = query.page_start or query.time_min
    bookings = (
        None if query.public else _in_background(_prefetch(query, size, after, deadline, timings))
    )
    page = _calendar_page(query, size, google_token, deadline, timings)
    while True:
        events: list[dict[str, Any]] = page.get("items") or []
        next_token = str(page.get("nextPageToken") or "")
        after = _last_start(events) or after
        upcoming: Future[dict[str, Any]] | None = None
        upcoming_bookings = None
        if follow and next_token:
            upcoming = _in_background(
                functools.partial(_calendar_page, query, size, next_token, deadline, timings)
            )
            if not query.public:
                upcoming_bookings = _in_background(_prefetch(query, size, after, deadline, timings))
        yield _Page(_join(query, events, bookings, deadline, timings), next_token, after)
        if upcoming is None:
            return
        page, bookings = upcoming.result(), upcoming_bookings


def _in_background[R](work: Callable[[], R]) -> Future[R]:
    """Run `work` on the listing's pool, with this request's log fields."""
    return _pool.submit(contextvars.copy_context().run, work)


def _calendar_page(
    query: Query, size: int, google_token: str, deadline: Deadline, timings: Timings
) -> dict[str, Any]:
    """One page of `events.list` (the public calendar's, with the API key, in public mode)."""
    params: dict[str, Any] = {
        "timeMin": query.time_min.isoformat(),
        "timeMax": query.time_max.isoformat(),
        "singleEvents": True,
        "orderBy": "startTime",
        "maxResults": size,
    }
    if google_token:
        params["pageToken"] = google_token
    api = calendar_api()
    try:
        with timings.measure("calendar"):
            if query.public:
                settings = get_settings()
                page: dict[str, Any] = api.list_public_events(
                    require_public_enabled(),
                    read_secret(settings.secrets.public_api_key, deadline),
                    {**params, "fields": PUBLIC_EVENT_FIELDS},
                    deadline,
                )
            else:
                page = api.list_events(params, deadline)
    except PermanentUpstreamError as exc:
        if google_token and exc.details.get("status") in (400, 410):  # a token Google forgot
            raise InvalidRequest(
                "pageToken has expired; start again", parameter="pageToken"
            ) from exc
        raise
    return page


def _prefetch(
    query: Query, size: int, after: datetime, deadline: Deadline, timings: Timings
) -> Callable[[], dict[str, dict[str, Any]]]:
    """The read of the scheduled bookings a page starting at `after` will most likely name.

    The page holds the first `size` events ending after `after` (ordered by start); their
    bookings are, nearly always, the first scheduled ones ending after it (ordered by end).
    Stored times are ISO strings in Buenos Aires time, so their order is the strings'.
    """
    found = firestore.scheduled_ending_between(
        after.isoformat(),
        (query.time_max + PREFETCH_HORIZON).isoformat(),
        size + PREFETCH_SLACK,
        BOOKING_FIELDS,
    )

    def read() -> dict[str, dict[str, Any]]:
        with timings.measure("firestore"):
            snaps = firestore.stream(found, deadline, "read the bookings of a page ahead")
        return {snap.id: snap.to_dict() or {} for snap in snaps}

    return read


def _join(
    query: Query,
    events: list[dict[str, Any]],
    bookings: Future[dict[str, dict[str, Any]]] | None,
    deadline: Deadline,
    timings: Timings,
) -> list[_Row]:
    """Each event with its booking (admin) and filtered: what was read ahead, and one
    batched read for the bookings it missed."""
    if bookings is None:
        return [_Row(event, None) for event in events]
    links = [class_event(event) for event in events]
    named = [_usable(link.booking_id) for link in links]
    with timings.measure("join"):
        try:
            found = dict(bookings.result())
        except PlatformError as exc:
            # Never worse than no reading ahead: a missing index, say, costs the read after.
            logs.warning("bookings not read ahead of the page", detail=exc.message)
            found = {}
        missing = {booking_id for booking_id in named if booking_id and booking_id not in found}
        if missing:
            with timings.measure("firestore"):
                found.update(_listed_fields(missing, deadline))
    sessions = _sessions_of(events, deadline, timings)
    rows = [
        _Row(
            event,
            found.get(booking_id) if booking_id else None,
            link,
            sessions.get(_session_id(event)),
        )
        for event, booking_id, link in zip(events, named, links, strict=True)
    ]
    return [row for row in rows if _wanted(row, query)]


def _session_id(event: dict[str, Any]) -> str:
    private = (event.get("extendedProperties") or {}).get("private") or {}
    return _usable(str(private.get("sessionId") or ""))


def _sessions_of(
    events: list[dict[str, Any]], deadline: Deadline, timings: Timings
) -> dict[str, dict[str, Any]]:
    """The group sessions a page's events belong to (one event each), in one batched read."""
    ids = sorted({_session_id(event) for event in events} - {""})
    if not ids:
        return {}
    with timings.measure("firestore"):
        snaps = firestore.get_many(
            [firestore.session_ref(i) for i in ids], deadline, "read the sessions of a page"
        )
    return {snap.id: snap.to_dict() or {} for snap in snaps.values() if snap.exists}


def _last_start(events: list[dict[str, Any]]) -> datetime | None:
    """The start of the page's last timed event: the next page starts there or later."""
    for event in reversed(events):
        try:
            start = local_time(event.get("start") or {})
        except ValueError:
            continue
        if isinstance(start, datetime):
            return start
    return None


def _usable(booking_id: str) -> str:
    return booking_id if firestore.is_booking_id(booking_id) else ""


def _listed_fields(booking_ids: Iterable[str], deadline: Deadline) -> dict[str, dict[str, Any]]:
    """The named bookings, in one batched read (one round trip), only the listed fields."""
    refs = [firestore.booking_ref(b) for b in sorted({b for b in booking_ids if b})]
    snapshots = firestore.get_many(
        refs, deadline, "read the bookings of a page", list(BOOKING_FIELDS)
    )
    return {snap.id: snap.to_dict() or {} for snap in snapshots.values() if snap.exists}


def _wanted(row: _Row, query: Query) -> bool:
    if not query.teacher and query.status is None:
        return True
    if row.booking is None:
        return False
    if query.teacher and Person.from_document(row.booking.get("teacher")).email.lower() != (
        query.teacher
    ):
        return False
    return query.status is None or row.booking.get("status") == query.status.value


# -- rendering ----------------------------------------------------------------------------


def local_time(when: dict[str, Any]) -> datetime | date | None:
    """An EventDateTime as Buenos Aires time (all-day events stay dates)."""
    if when.get("dateTime"):
        return parse_local(str(when["dateTime"]))
    if when.get("date"):
        return date.fromisoformat(str(when["date"]))
    return None


def _iso(when: dict[str, Any]) -> str | None:
    value = local_time(when)
    return value.isoformat() if value is not None else None


def _person(raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        return None
    person = Person.from_document(raw)
    return {"name": person.name, "email": person.email}


def admin_item(row: _Row) -> dict[str, Any]:
    """Event + booking -> the JSON an admin sees (mapper; no I/O)."""
    event, booking = row.event, row.booking or {}
    link = row.link or class_event(event)
    return {
        "id": link.event_id,
        "summary": str(event.get("summary") or ""),
        "start": _iso(event.get("start") or {}),
        "end": _iso(event.get("end") or {}),
        "eventStatus": link.status,
        "htmlLink": link.html_link or booking.get("htmlLink") or None,
        "meetLink": link.meet_link or booking.get("meetLink") or None,
        "attendees": [
            {
                "email": attendee.get("email"),
                "displayName": attendee.get("displayName"),
                "responseStatus": attendee.get("responseStatus", "needsAction"),
            }
            for attendee in event.get("attendees") or []
        ],
        "bookingId": link.booking_id or None,
        "hasBooking": row.booking is not None,
        "status": booking.get("status"),
        "student": _person(booking.get("student")),
        "teacher": _person(booking.get("teacher")),
        "paymentStatus": booking.get("paymentStatus"),
        "session": _session_item(row) if row.session is not None else None,
    }


def _session_item(row: _Row) -> dict[str, Any]:
    """A group class once, with its seats (seats taken of capacity, each seat's booking)."""
    session = row.session or {}
    seats = session.get("seats") if isinstance(session.get("seats"), dict) else {}
    return {
        "sessionId": _session_id(row.event),
        "capacity": session.get("capacity"),
        "seatsTaken": len(seats or {}),
        "seats": [
            {"bookingId": booking_id, "status": seat.get("status")}
            for booking_id, seat in sorted((seats or {}).items())
            if isinstance(seat, dict)
        ],
        "teacher": _person(session.get("teacher")),
    }


def public_item(event: dict[str, Any]) -> dict[str, Any]:
    """Title, start and end: all a public calendar's reader gets."""
    return {
        "summary": str(event.get("summary") or ""),
        "start": _iso(event.get("start") or {}),
        "end": _iso(event.get("end") or {}),
    }


def render_json(rows: list[_Row], query: Query, next_token: str | None) -> bytes:
    items = [public_item(r.event) if query.public else admin_item(r) for r in rows]
    body = {
        "from": query.time_min.isoformat(),
        "to": query.time_max.isoformat(),
        "timeZone": TIME_ZONE,
        "events": items,
        "nextPageToken": next_token,
    }
    return json.dumps(body, ensure_ascii=False).encode()


def render_ics(rows: list[_Row], query: Query) -> bytes:
    """The window as an iCalendar feed that calendar apps can subscribe to."""
    feed = icalendar.Calendar()
    feed.add("prodid", "-//Clases virtuales//Calendario//ES")
    feed.add("version", "2.0")
    feed.add("calscale", "GREGORIAN")
    feed.add("method", "PUBLISH")
    feed.add("x-wr-calname", "Clases" if query.public else "Clases (administración)")
    feed.add("x-wr-timezone", TIME_ZONE)
    for row in rows:
        feed.add_component(_ics_event(row, query.public))
    feed.add_missing_timezones(
        first_date=query.time_min.date() - timedelta(days=1),
        last_date=query.time_max.date() + timedelta(days=2),
    )
    body: bytes = feed.to_ical()
    return body


def _ics_event(row: _Row, public: bool) -> icalendar.Event:
    event = row.event
    entry = icalendar.Event()
    entry.add("uid", str(event.get("iCalUID") or f"{event.get('id')}@google.com"))
    # DTSTAMP from the event, not the clock, so an unchanged window keeps its ETag.
    updated = event.get("updated")
    entry.add("dtstamp", datetime.fromisoformat(updated) if updated else EPOCH)
    entry.add("summary", str(event.get("summary") or ""))
    for name in ("start", "end"):
        value = local_time(event.get(name) or {})
        if value is not None:
            entry.add(f"dt{name}", value)
    if public:
        return entry
    item = admin_item(row)
    entry.add("status", "TENTATIVE" if item["eventStatus"] == "tentative" else "CONFIRMED")
    if item["htmlLink"]:
        entry.add("url", item["htmlLink"])
    if item["meetLink"]:
        entry.add("location", item["meetLink"])
    entry.add("description", _ics_description(item))
    for attendee in item["attendees"]:
        if not attendee["email"]:
            continue
        address = icalendar.vCalAddress(f"mailto:{attendee['email']}")
        if attendee["displayName"]:
            address.params["CN"] = attendee["displayName"]
        address.params["PARTSTAT"] = _PARTSTAT.get(attendee["responseStatus"], "NEEDS-ACTION")
        entry.add("attendee", address)
    return entry


def _ics_description(item: dict[str, Any]) -> str:
    if not item["hasBooking"]:
        return "Sin reserva"
    lines = [
        f"Reserva: {item['bookingId']} ({item['status'] or 'sin estado'})",
        f"Docente: {_who(item['teacher'])}",
        f"Estudiante: {_who(item['student'])}",
        f"Pago: {item['paymentStatus'] or 'sin pago'}",
    ]
    if item["meetLink"]:
        lines.append(f"Meet: {item['meetLink']}")
    return "\n".join(lines)


def _who(person: dict[str, str] | None) -> str:
    if not person:
        return "-"
    return f"{person['name']} <{person['email']}>" if person["name"] else person["email"]
