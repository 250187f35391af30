"""The one store: every Firestore read and write, each bounded by the request's deadline.

Bookings, payment claims and issues, the calendar sync's state and audit, channels and
OAuth states all live in Firestore; this module is how the rest of the platform reads and
writes them. Each call goes through `shared.adapters.boundary.call` (the client library's own retry
is off), so a Firestore outage means the same everywhere: a `TransientUpstreamError`
within the deadline, hence 503 and a redelivery.

Concurrent writers are handled by optimistic concurrency, in one helper:
`until_committed(attempt)` runs "read, decide, commit if unchanged" and, when the commit
finds the document changed (`Contended`), runs the whole attempt again from fresh reads,
so a decision is never replayed from an old read. It is cheaper than transactions here:
twenty notifications racing for one booking would make Firestore abort transactions and
back off for seconds, where a failed precondition costs one more read.
"""

from __future__ import annotations

import enum
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.query import Query

from shared import clock, logs
from shared.adapters.boundary import ANSWER_MARGIN_SECONDS, Upstream, call
from shared.adapters.clients import firestore_client
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.bookings import Booking, BookingStatus, CalendarStatus, ConferenceStatus, Issue
from shared.domain.calendar_changes import BookingChange
from shared.domain.seats import Session
from shared.domain.writes import REMOVE, SERVER_TIME
from shared.errors import TransientUpstreamError, UpstreamConflict

__all__ = [
    "ATTENTION_HANDLED",
    "BATCH_BOOKINGS",
    "CALENDAR_CHANGES",
    "CHANNELS",
    "CLASS_SESSIONS",
    "INTEGRATIONS",
    "OAUTH_STATES",
    "PAYMENT_CLAIMS",
    "PAYMENT_ISSUES",
    "RECONCILE_RUNS",
    "SYNCS",
    "TEACHER_LOCKS",
    "WATCHES",
    "Backlog",
    "BookingRead",
    "Contended",
    "SessionRead",
    "backlog_page",
    "booking_ref",
    "bookings",
    "bookings_needing_attention",
    "channel_ref",
    "channels",
    "channels_of_calendar",
    "commit_booking",
    "commit_change",
    "commit_changes",
    "commit_session",
    "create",
    "create_session",
    "find_booking_by_event",
    "find_session_by_event",
    "get",
    "get_many",
    "handled_marker_ref",
    "integration_status_ref",
    "is_booking_id",
    "issue_ref",
    "oauth_state_ref",
    "open_issues",
    "payment_issues",
    "read_booking",
    "read_booking_for_payment",
    "read_bookings",
    "read_session",
    "recent_issues",
    "reconcile_run_ref",
    "record_issue",
    "release_lease",
    "resolve_issue",
    "scheduled_ending_between",
    "session_bookings",
    "session_ref",
    "sessions",
    "set_document",
    "stream",
    "sync_ref",
    "teacher_lease",
    "teacher_timetable",
    "until_committed",
    "upcoming_sessions",
    "update",
    "update_if_unchanged",
    "watch_ref",
]

# -- every collection and document, named once --------------------------------------------------

PAYMENT_CLAIMS = "payment_claims"
"""`payment_claims/{paymentId}`: the one booking a payment paid for."""
PAYMENT_ISSUES = "payment_issues"
"""`payment_issues/{paymentId}-{kind}`: what admins must look at."""
CLASS_SESSIONS = "class_sessions"
"""`class_sessions/{sessionId}`: group classes, their one event and their seats."""
SEAT_NOTICES = "seat_notices"
"""`seat_notices/{bookingId}-{joined|left}`: the email the platform's mailer owes one student."""
CALENDAR_CHANGES = "calendar_changes"
"""Subcollection of a booking: one document per event version applied to it (an audit)."""
CHANNELS = "calendar_channels"
"""`calendar_channels/{channelId}`: every push channel opened, with its token's hash."""
WATCHES = "calendar_watch"
"""`calendar_watch/{calendarId}`: the current channel and the renewal lease."""
SYNCS = "calendar_sync"
"""`calendar_sync/{calendarId}`: the sync token, the sync lease and its pace."""
INTEGRATIONS = "integrations"
"""`integrations/google_calendar`: whether the Google grant works, and usage limits."""
RECONCILE_RUNS = "reconcile_runs"
"""`reconcile_runs/last`: when the last reconcile sweep ran, who ran it and its counts."""
ATTENTION_HANDLED = "attention_handled"
"""`attention_handled/{key}`: an admin marked an attention item handled (who, when, note)."""
OAUTH_STATES = "oauth_states"
"""`oauth_states/{nonce}`: a consent in flight, consumed once."""
BATCH_BOOKINGS = 200
"""Bookings per commit: two writes each (booking and audit), under Firestore's 500."""
_CONTENDED = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict, gexc.Aborted)


def channels() -> firestore.CollectionReference:
    return firestore_client().collection(CHANNELS)


def channel_ref(channel_id: str) -> firestore.DocumentReference:
    return channels().document(channel_id)


def session_ref(session_id: str) -> firestore.DocumentReference:
    return firestore_client().collection(CLASS_SESSIONS).document(session_id)


def issue_ref(issue_id: str) -> firestore.DocumentReference:
    return payment_issues().document(issue_id)


def watch_ref() -> firestore.DocumentReference:
    return firestore_client().collection(WATCHES).document(get_settings().calendar_id)


def sync_ref() -> firestore.DocumentReference:
    return firestore_client().collection(SYNCS).document(get_settings().calendar_id)


def integration_status_ref() -> firestore.DocumentReference:
    """The Google Calendar integration's status, shared by every instance."""
    return firestore_client().collection(INTEGRATIONS).document("google_calendar")


def reconcile_run_ref() -> firestore.DocumentReference:
    return firestore_client().collection(RECONCILE_RUNS).document("last")


def payment_issues() -> firestore.CollectionReference:
    return firestore_client().collection(PAYMENT_ISSUES)


def handled_marker_ref(key: str) -> firestore.DocumentReference:
    return firestore_client().collection(ATTENTION_HANDLED).document(key)


def oauth_state_ref(nonce: str) -> firestore.DocumentReference:
    return firestore_client().collection(OAUTH_STATES).document(nonce)


def channels_of_calendar(calendar_id: str) -> firestore.Query:
    return channels().where(filter=FieldFilter("calendarId", "==", calendar_id))


def bookings_needing_attention(fields: Iterable[str], limit: int) -> firestore.Query:
    return (
        bookings()
        .where(filter=FieldFilter("needsAttention", "!=", None))
        .select(list(fields))
        .limit(limit)
    )


def scheduled_ending_between(
    after: str, before: str, limit: int, fields: Iterable[str]
) -> firestore.Query:
    """Scheduled bookings by end time (ISO strings in one zone sort as times do)."""
    return (
        bookings()
        .where(filter=FieldFilter("status", "==", BookingStatus.SCHEDULED.value))
        .where(filter=FieldFilter("end", ">", after))
        .where(filter=FieldFilter("end", "<", before))
        .order_by("end")
        .limit(limit)
        .select(list(fields))
    )


def recent_issues(limit: int) -> firestore.Query:
    return payment_issues().order_by("createdAt", direction=firestore.Query.DESCENDING).limit(limit)


class Contended(Exception):
    """Someone wrote the document since it was read: read again and decide again."""


# -- bounded primitives -------------------------------------------------------------------------


def _firestore_call[R](what: str, attempt: Callable[[float], R], deadline: Deadline) -> R:
    timeout = get_settings().upstream_timeout_seconds
    return call(Upstream.FIRESTORE, attempt, deadline, what, attempt_timeout=timeout)


def _values(fields: dict[str, Any]) -> dict[str, Any]:
    """The platform's markers as Firestore's sentinels."""
    return {key: _value(value) for key, value in fields.items()}


def _value(value: Any) -> Any:
    if value is SERVER_TIME:
        return firestore.SERVER_TIMESTAMP
    if value is REMOVE:
        return firestore.DELETE_FIELD
    if isinstance(value, dict):
        return _values(value)  # a map's fields may hold the markers too
    return value


def get(
    ref: firestore.DocumentReference, deadline: Deadline, what: str
) -> firestore.DocumentSnapshot[Any]:
    return _firestore_call(what, lambda t: ref.get(retry=None, timeout=t), deadline)


def get_many(
    refs: list[firestore.DocumentReference],
    deadline: Deadline,
    what: str,
    field_paths: list[str] | None = None,
) -> dict[str, firestore.DocumentSnapshot[Any]]:
    """Several documents in one round trip (only `field_paths`, if given), by path."""

    def attempt(timeout: float) -> dict[str, firestore.DocumentSnapshot[Any]]:
        snaps = firestore_client().get_all(
            refs, field_paths=field_paths, retry=None, timeout=timeout
        )
        return {snap.reference.path: snap for snap in snaps}

    return _firestore_call(what, attempt, deadline) if refs else {}


def stream(query: Query, deadline: Deadline, what: str) -> list[firestore.DocumentSnapshot[Any]]:
    return _firestore_call(what, lambda t: list(query.stream(retry=None, timeout=t)), deadline)


def create(
    ref: firestore.DocumentReference, document: dict[str, Any], deadline: Deadline, what: str
) -> None:
    _firestore_call(what, lambda t: ref.create(_values(document), retry=None, timeout=t), deadline)


def update(
    ref: firestore.DocumentReference, fields: dict[str, Any], deadline: Deadline, what: str
) -> None:
    _firestore_call(what, lambda t: ref.update(_values(fields), retry=None, timeout=t), deadline)


def set_document(
    ref: firestore.DocumentReference,
    document: dict[str, Any],
    deadline: Deadline,
    what: str,
    *,
    merge: bool = False,
) -> None:
    _firestore_call(
        what,
        lambda t: ref.set(_values(document), merge=merge, retry=None, timeout=t),
        deadline,
    )


def _commit(batch: Any, deadline: Deadline, what: str) -> None:
    """Commit `batch`; a failed guard (or a create that finds the document) is `Contended`."""

    def attempt(timeout: float) -> None:
        try:
            batch.commit(retry=None, timeout=timeout)
        except _CONTENDED as exc:
            raise Contended(what) from exc

    _firestore_call(what, attempt, deadline)


def _guard(snap: firestore.DocumentSnapshot[Any]) -> Any:
    return firestore_client().write_option(last_update_time=snap.update_time)


# -- read, decide, commit if unchanged ---------------------------------------------------------


def until_committed[R](attempt: Callable[[], R], deadline: Deadline, what: str) -> R:
    """Run `attempt` (read, decide, commit) until its commit finds nothing changed."""
    tries = 0
    while True:
        try:
            return attempt()
        except Contended:
            tries += 1
            if deadline.remaining() < ANSWER_MARGIN_SECONDS:
                raise TransientUpstreamError(f"{what}: the document kept changing") from None
            time.sleep(random.uniform(0, min(0.05, 0.005 * tries)))


def update_if_unchanged[R](
    ref: firestore.DocumentReference,
    decide: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, R]],
    deadline: Deadline,
    what: str,
) -> R:
    """Read `ref`, let `decide` choose the update ((None, result): none), write it guarded."""

    def attempt() -> R:
        snap = get(ref, deadline, what)
        updates, result = decide(snap.to_dict() or {} if snap.exists else {})
        if updates is None:
            return result
        batch = firestore_client().batch()
        if snap.exists:
            batch.update(ref, _values(updates), option=_guard(snap))
        else:
            batch.create(ref, _values(updates))
        _commit(batch, deadline, what)
        return result

    return until_committed(attempt, deadline, what)


def release_lease(
    ref: firestore.DocumentReference, owner: str, deadline: Deadline, what: str
) -> None:
    """Drop `owner`'s lease on `ref` if it still holds it; an expired lease needs nothing."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, None]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, None
        return {"lease": REMOVE}, None

    try:
        update_if_unchanged(ref, decide, Deadline(max(2.0, deadline.remaining())), what)
    except TransientUpstreamError:
        logs.warning(f"{what}: not released; it expires by itself")


TEACHER_LOCKS = "teacher_locks"
_TEACHER_LEASE_SECONDS = 30.0
"""Covers one admin change (read, check, move the event, commit); a crashed one frees the
teacher this long after."""


@contextmanager
def teacher_lease(teacher_email: str, deadline: Deadline) -> Iterator[None]:
    """One change to a teacher's timetable at a time: an overlap check and the move it allows
    must not interleave with another admin's (two moves into one free hour would both pass).
    A lease held by another change is waited for, within the request's budget."""
    digest = hashlib.sha256(teacher_email.strip().lower().encode()).hexdigest()[:40]
    ref = firestore_client().collection(TEACHER_LOCKS).document(digest)
    owner = uuid.uuid4().hex

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        now = clock.now()
        lease = data.get("lease") or {}
        if lease.get("owner") and lease.get("until") and lease["until"] > now:
            return None, False
        until = now + timedelta(seconds=_TEACHER_LEASE_SECONDS)
        return {"lease": {"owner": owner, "until": until}}, True

    while not update_if_unchanged(ref, decide, deadline, "take teacher lease"):
        if deadline.remaining() < ANSWER_MARGIN_SECONDS + 0.5:
            raise TransientUpstreamError("another change to this teacher's classes is under way")
        time.sleep(random.uniform(0.05, 0.2))
    try:
        yield
    finally:
        release_lease(ref, owner, deadline, "release teacher lease")


# -- bookings -----------------------------------------------------------------------------------


def bookings() -> firestore.CollectionReference:
    return firestore_client().collection(get_settings().bookings_collection)


def booking_ref(booking_id: str) -> firestore.DocumentReference:
    return bookings().document(booking_id)


def _claim_ref(payment_id: str) -> firestore.DocumentReference:
    return firestore_client().collection(PAYMENT_CLAIMS).document(payment_id)


def is_booking_id(value: str) -> bool:
    """Whether `value` can name a booking document (`external_reference` comes from outside)."""
    return (
        0 < len(value.encode()) <= 1500
        and "/" not in value
        and value not in (".", "..")
        and not (value.startswith("__") and value.endswith("__"))
    )


@dataclass(frozen=True)
class BookingRead:
    """A booking as read, with what guards the commit that follows the decision.

    `data` is None when there is no such booking; `claimed_by` is the booking the payment's
    claim points at (payment reads only).
    """

    booking_id: str
    data: dict[str, Any] | None
    claimed_by: str | None = None
    snapshot: firestore.DocumentSnapshot[Any] | None = None


def _read_of(
    snap: firestore.DocumentSnapshot[Any] | None, claim: firestore.DocumentSnapshot[Any] | None
) -> BookingRead:
    claimed_by = (
        str((claim.to_dict() or {}).get("bookingId") or "") or None
        if claim is not None and claim.exists
        else None
    )
    if snap is None or not snap.exists:
        return BookingRead(snap.id if snap is not None else "", None, claimed_by)
    return BookingRead(snap.id, snap.to_dict() or {}, claimed_by, snap)


def read_booking_for_payment(
    payment_id: str, booking_id: str, preference_id: str, deadline: Deadline
) -> BookingRead:
    """The booking a payment is for (by id, else by Checkout Pro preference) and its claim,
    in one round trip when the booking id is known."""
    claim = _claim_ref(payment_id)
    if booking_id and is_booking_id(booking_id):
        booking = booking_ref(booking_id)
        snaps = get_many([booking, claim], deadline, "read booking and payment claim")
        return _read_of(snaps[booking.path], snaps[claim.path])
    found = None
    if not booking_id and preference_id:
        query = bookings().where(filter=FieldFilter("preferenceId", "==", preference_id))
        matches = stream(query.limit(2), deadline, "find booking by preference")
        found = matches[0] if len(matches) == 1 else None
    return _read_of(found, get(claim, deadline, "read payment claim"))


def read_booking(booking_id: str, deadline: Deadline) -> BookingRead:
    return _read_of(get(booking_ref(booking_id), deadline, "read booking"), None)


def commit_booking(
    read: BookingRead,
    fields: dict[str, Any],
    claim_payment: str,
    deadline: Deadline,
    session: SessionRead | None = None,
    session_fields: dict[str, Any] | None = None,
    notice: dict[str, Any] | None = None,
) -> None:
    """One atomic commit, valid only if nobody wrote the booking since `read` (nor its
    session since `session`, when its seats change too); with `claim_payment`, the
    payment's claim is created in it (and the commit fails if another booking claimed it
    first)."""
    assert read.snapshot is not None
    batch = firestore_client().batch()
    if fields:
        batch.update(read.snapshot.reference, _values(fields), option=_guard(read.snapshot))
    if session_fields:
        assert session is not None and session.snapshot is not None
        batch.update(
            session.snapshot.reference, _values(session_fields), option=_guard(session.snapshot)
        )
    if notice:
        notice_id = f"{read.booking_id}-{notice['kind']}"
        batch.set(firestore_client().collection(SEAT_NOTICES).document(notice_id), _values(notice))
    if claim_payment:
        claim = {"bookingId": read.booking_id, "createdAt": firestore.SERVER_TIMESTAMP}
        batch.create(_claim_ref(claim_payment), claim)
    _commit(batch, deadline, "write booking")


# -- group sessions -----------------------------------------------------------------------------


def sessions() -> firestore.CollectionReference:
    return firestore_client().collection(CLASS_SESSIONS)


@dataclass(frozen=True)
class SessionRead:
    """A group session as read (`data` None: no such session), guarding the next commit."""

    session_id: str
    data: dict[str, Any] | None
    snapshot: firestore.DocumentSnapshot[Any] | None = None


def read_session(session_id: str, deadline: Deadline) -> SessionRead:
    if not is_booking_id(session_id):
        return SessionRead(session_id, None)
    snap = get(sessions().document(session_id), deadline, "read session")
    return SessionRead(session_id, snap.to_dict() or {} if snap.exists else None, snap)


def create_session(session_id: str, document: dict[str, Any], deadline: Deadline) -> bool:
    """Record a new session; False when one with this id exists (a retried request)."""
    try:
        create(sessions().document(session_id), document, deadline, "record session")
    except UpstreamConflict:
        return False
    return True


def upcoming_sessions(since: str, limit: int, deadline: Deadline) -> list[SessionRead]:
    query = sessions().where(filter=FieldFilter("end", ">=", since)).order_by("end").limit(limit)
    return [
        SessionRead(s.id, s.to_dict() or {}, s) for s in stream(query, deadline, "list sessions")
    ]


def session_bookings(session_id: str, deadline: Deadline) -> list[BookingRead]:
    query = bookings().where(filter=FieldFilter("sessionId", "==", session_id))
    return [_read_of(s, None) for s in stream(query, deadline, "find the session's bookings")]


def commit_session(read: SessionRead, fields: dict[str, Any], deadline: Deadline) -> None:
    assert read.snapshot is not None
    batch = firestore_client().batch()
    batch.update(read.snapshot.reference, _values(fields), option=_guard(read.snapshot))
    _commit(batch, deadline, "write session")


def record_issue(issue: Issue, payment_id: str, deadline: Deadline, *, about: str = "") -> None:
    """Keep, once per payment and kind, something an admin must look at (`about` instead of
    a payment: an issue of a session, keyed by it)."""
    key = about or payment_id
    document = {
        "kind": issue.kind,
        **({"paymentId": payment_id} if payment_id else {}),
        "createdAt": SERVER_TIME,
        "resolved": False,
        **{k: v for k, v in issue.details.items() if v not in (None, "")},
    }
    ref = firestore_client().collection(PAYMENT_ISSUES).document(f"{key}-{issue.kind}")
    set_document(ref, document, deadline, "record payment issue")


class Backlog(enum.StrEnum):
    """The kinds of bookings the reconcile sweep pages through."""

    WAITING_FOR_EVENT = "waiting_for_event"  # paid, the event still to be created
    MEET_PENDING = "meet_pending"  # scheduled, Meet still creating the link
    PAYMENT_PENDING = "payment_pending"  # a payment that Mercado Pago had not decided
    UPCOMING = "upcoming"  # scheduled classes not over yet: their events must exist


def _backlog_query(kind: Backlog, since: str) -> Query:
    conditions: dict[Backlog, list[tuple[str, str, Any]]] = {
        Backlog.WAITING_FOR_EVENT: [
            ("status", "==", BookingStatus.PAID.value),
            ("calendarStatus", "==", CalendarStatus.PENDING_CREATION.value),
        ],
        Backlog.MEET_PENDING: [
            ("status", "==", BookingStatus.SCHEDULED.value),
            ("conferenceStatus", "==", ConferenceStatus.PENDING.value),
        ],
        Backlog.PAYMENT_PENDING: [
            ("status", "==", BookingStatus.AWAITING_PAYMENT.value),
            ("paymentStatus", "in", ["pending", "in_process", "authorized"]),
        ],
        Backlog.UPCOMING: [
            ("status", "==", BookingStatus.SCHEDULED.value),
            ("end", ">=", since),
        ],
    }
    where = conditions[kind]
    query = bookings().where(filter=FieldFilter(*where[0]))
    for condition in where[1:]:
        query = query.where(filter=FieldFilter(*condition))
    if kind == Backlog.UPCOMING:
        query = query.order_by("end")
    return query.order_by("__name__")


def backlog_page(
    kind: Backlog, after: BookingRead | None, limit: int, deadline: Deadline, since: str = ""
) -> list[BookingRead]:
    """The next `limit` bookings of a kind after `after` (a stable order, so a sweep pages
    through a backlog even when some of it stays where it was)."""
    query = _backlog_query(kind, since)
    if after is not None and after.snapshot is not None:
        query = query.start_after(after.snapshot)
    found = stream(query.limit(limit), deadline, f"page {kind.value} bookings")
    return [_read_of(snap, None) for snap in found]


def open_issues(kind: str, limit: int, deadline: Deadline) -> list[tuple[str, dict[str, Any]]]:
    """Payment issues of `kind` not resolved yet: (document id, document)."""
    query = (
        firestore_client()
        .collection(PAYMENT_ISSUES)
        .where(filter=FieldFilter("kind", "==", kind))
        .where(filter=FieldFilter("resolved", "==", False))
        .limit(limit)
    )
    return [(s.id, s.to_dict() or {}) for s in stream(query, deadline, f"find {kind} issues")]


def resolve_issue(issue_id: str, outcome: str, deadline: Deadline) -> None:
    ref = firestore_client().collection(PAYMENT_ISSUES).document(issue_id)
    update(
        ref,
        {"resolved": True, "resolvedAt": SERVER_TIME, "resolution": outcome},
        deadline,
        "resolve issue",
    )


def teacher_timetable(
    teacher_email: str, deadline: Deadline
) -> tuple[list[Booking], list[Session]]:
    """The teacher's scheduled classes and group sessions (to refuse an overlapping move)."""
    teaches = FieldFilter("teacher.email", "==", teacher_email)
    classes = (
        bookings()
        .where(filter=teaches)
        .where(filter=FieldFilter("status", "==", BookingStatus.SCHEDULED.value))
    )
    groups = sessions().where(filter=teaches).where(filter=FieldFilter("status", "==", "scheduled"))
    return (
        [
            Booking.from_document(s.id, s.to_dict() or {})
            for s in stream(classes, deadline, "find the teacher's classes")
        ],
        [
            Session.from_document(s.id, s.to_dict() or {})
            for s in stream(groups, deadline, "find the teacher's sessions")
        ],
    )


# -- calendar changes ---------------------------------------------------------------------------


def read_bookings(booking_ids: Iterable[str], deadline: Deadline) -> dict[str, BookingRead]:
    """The existing bookings among `booking_ids`, in one round trip."""
    refs = [booking_ref(b) for b in booking_ids if is_booking_id(b)]
    snaps = get_many(refs, deadline, "read bookings")
    return {snap.id: _read_of(snap, None) for snap in snaps.values() if snap.exists}


def find_session_by_event(event_id: str, deadline: Deadline) -> str:
    """The session whose one event is `event_id` ("" when none is)."""
    query = sessions().where(filter=FieldFilter("googleEventId", "==", event_id)).limit(1)
    matches = stream(query, deadline, "find session by event")
    return matches[0].id if matches else ""


def find_booking_by_event(event_id: str, deadline: Deadline) -> str:
    """The booking linked to `event_id` ("" when none, or more than one, is)."""
    query = bookings().where(filter=FieldFilter("googleEventId", "==", event_id)).limit(2)
    matches = stream(query, deadline, "find booking by event")
    return matches[0].id if len(matches) == 1 else ""


def _change_batch(pairs: list[tuple[BookingRead, BookingChange]]) -> Any:
    batch = firestore_client().batch()
    for read, change in pairs:
        assert read.snapshot is not None
        ref = read.snapshot.reference
        batch.update(ref, _values(change.fields), option=_guard(read.snapshot))
        batch.create(
            ref.collection(CALENDAR_CHANGES).document(change.version), _values(change.record)
        )
    return batch


def commit_changes(pairs: list[tuple[BookingRead, BookingChange]], deadline: Deadline) -> bool:
    """All of `pairs` (at most `BATCH_BOOKINGS`) in one atomic commit, each booking guarded
    by its read; False when one was written meanwhile or a version was applied already."""
    try:
        _commit(_change_batch(pairs), deadline, "apply calendar changes")
    except Contended:
        return False
    return True


def commit_change(read: BookingRead, change: BookingChange, deadline: Deadline) -> bool:
    """One booking's change; False if this event version was applied already, `Contended`
    if the booking was written since `read`."""
    try:
        _commit(_change_batch([(read, change)]), deadline, "apply calendar change")
    except Contended as exc:
        if isinstance(exc.__cause__, gexc.AlreadyExists):
            return False
        raise
    return True
