"""Push channels on the platform's calendar: opening, renewing, stopping, and trusting them.

Google delivers Calendar changes to a channel we open with `events.watch`; a channel lives
until the `expiration` Google returns (about 7 days), so `renew_channel` opens the next one
a day before, records it, and only then stops the previous one: there is never a moment
without a channel. Each channel has a random id and a random secret token that Google
echoes in `X-Goog-Channel-Token`; Firestore keeps only the token's SHA-256, so a leaked
database export cannot forge notifications.

Firestore layout:
- `calendar_channels/{channelId}`: one document per channel (state `pending` while
  `events.watch` runs, `active`, `stopped`), with the token hash and the real expiration.
  A channel still `pending` after `PENDING_GRACE` was orphaned (the watch answer was lost,
  or recording it failed): it is no longer trusted, and the next renewal stops it.
- `calendar_watch/{calendarId}`: the current channel and the renewal lease. Two renewal
  runs that overlap (the scheduler's retry meeting a manual run) race for the lease in a
  transaction; the loser answers `busy` and opens nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import clock, logs
from shared.adapters import firestore
from shared.adapters.google_calendar import calendar_api
from shared.clock import Deadline
from shared.config import get_settings
from shared.domain.writes import SERVER_TIME
from shared.errors import (
    InvalidRequest,
    NotFound,
    PlatformError,
    Unauthenticated,
    UpstreamError,
    UpstreamNotFound,
)
from shared.services.calendar_sync import SyncResult, request_sync

__all__ = [
    "CHANNEL_ID",
    "PushNotification",
    "Renewal",
    "keep_watching",
    "renew_channel",
    "verify_notification",
]

RENEW_LEASE_SECONDS = 60.0
"""Longer than one renewal (a watch and a stop); a crashed run blocks the next for this long."""
PENDING_GRACE = timedelta(minutes=5)
"""How long a channel may stay `pending`: far longer than one renewal run (its lease)."""
CHANNEL_ID = re.compile(r"ch-[0-9a-f]{32}")
"""The shape of every channel id `_open_channel` issues; any other names no channel of
ours (and may be nothing Firestore can name: "a/b", "..", "__x__")."""
RESOURCE_STATES = ("sync", "exists", "not_exists")
"""The `X-Goog-Resource-State` values Google documents for Calendar push notifications."""


def _orphaned(data: dict[str, Any], now: datetime) -> bool:
    """A `pending` channel older than `PENDING_GRACE`: its renewal run is long over."""
    created = data.get("createdAt")
    return data.get("state") == "pending" and (
        not isinstance(created, datetime) or created + PENDING_GRACE <= now
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- incoming notifications ----------------------------------------------------------------


@dataclass(frozen=True)
class PushNotification:
    """What Google's POST says, all in headers (the body is empty)."""

    channel_id: str
    token: str
    resource_id: str
    state: str
    message_number: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> PushNotification:
        channel_id = headers.get("x-goog-channel-id", "").strip()
        state = headers.get("x-goog-resource-state", "").strip()
        if not channel_id or not state:
            raise InvalidRequest("not a Calendar push notification (channel id or state missing)")
        if state not in RESOURCE_STATES:
            raise InvalidRequest(
                f"X-Goog-Resource-State must be one of {', '.join(RESOURCE_STATES)}"
            )
        return cls(
            channel_id=channel_id,
            token=headers.get("x-goog-channel-token", ""),
            resource_id=headers.get("x-goog-resource-id", "").strip(),
            state=state,
            message_number=headers.get("x-goog-message-number", "").strip(),
        )

    @property
    def reports_change(self) -> bool:
        """`exists`/`not_exists` say something changed; `sync` only opens the channel."""
        return self.state in ("exists", "not_exists")


def verify_notification(note: PushNotification, deadline: Deadline) -> None:
    """Accept only a live channel of ours whose secret token matches; raise 404/401 otherwise.

    A `pending` channel counts for `PENDING_GRACE`: Google may deliver its `sync` message
    (and the first changes) before `events.watch` has answered and the channel was marked
    active.
    """
    if not CHANNEL_ID.fullmatch(note.channel_id):
        raise NotFound("unknown or stopped channel")  # checked before it names a document
    snap = firestore.get(firestore.channel_ref(note.channel_id), deadline, "read channel")
    data = snap.to_dict() if snap.exists else None
    if not data or data.get("state") not in ("pending", "active"):
        raise NotFound("unknown or stopped channel")
    if _orphaned(data, clock.now()):
        raise NotFound("channel never activated")
    expected = str(data.get("tokenHash") or "")
    if not expected or not hmac.compare_digest(_token_hash(note.token), expected):
        raise Unauthenticated("channel token does not match")
    expiration = data.get("expiration")
    if isinstance(expiration, datetime) and expiration <= clock.now():
        raise NotFound("channel expired")
    if data.get("calendarId") != get_settings().calendar_id:
        raise NotFound("channel of another calendar")
    resource_id = data.get("resourceId")
    if resource_id and note.resource_id != resource_id:
        raise NotFound("channel watches another resource")


# -- renewal ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewal:
    """What one run of `renew_channel` did."""

    outcome: str  # renewed | current | busy
    channel_id: str = ""
    expiration: datetime | None = None
    stopped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "channelId": self.channel_id or None,
            "expiration": self.expiration.isoformat() if self.expiration else None,
            "stoppedChannels": list(self.stopped),
        }


def renew_channel(deadline: Deadline, *, force: bool = False) -> Renewal:
    """Make sure a channel is open until at least a day from now; idempotent.

    The current channel is kept while it has more than `channel_renew_before_seconds` to
    live (unless `force`, e.g. after a suspected token leak). Otherwise a new channel is
    opened and recorded, and then every older channel of ours is stopped.
    """
    settings = get_settings()
    if not settings.notifications_url:
        raise PlatformError("NOTIFICATIONS_URL is not configured: no address for the channel")
    owner = uuid.uuid4().hex
    current = _take_renew_lease(owner, force, deadline)
    if current is not None:
        return current
    try:
        channel_id, expiration = _open_channel(deadline)
        if not _record_current(owner, channel_id, expiration, deadline):
            # Our lease ran out and another run took over: ours must not stay open too.
            _stop(channel_id, deadline)
            return Renewal("busy")
        stopped = _stop_others(channel_id, deadline)
    finally:
        firestore.release_lease(firestore.watch_ref(), owner, deadline, "release renewal lease")
    logs.info(
        "calendar channel renewed",
        channel_id=channel_id,
        expiration=expiration.isoformat(),
        stopped=len(stopped),
    )
    return Renewal("renewed", channel_id, expiration, tuple(stopped))


def keep_watching(deadline: Deadline, *, force: bool = False) -> tuple[Renewal, SyncResult]:
    """Renew the channel, then catch up with one sync; the sync runs even if renewal fails.

    Google does not redeliver a failed push, so this scheduled sync is the safety net; a
    renewal error (raised after the sync) must not take the net away too.
    """
    try:
        renewal = renew_channel(deadline, force=force)
    except Exception:
        try:
            sync = request_sync(deadline)
        except PlatformError as exc:
            logs.warning("catch-up sync failed after a failed renewal", detail=exc.message)
        else:
            logs.info("catch-up sync ran after a failed renewal", sync_outcome=sync.outcome)
        raise
    return renewal, request_sync(deadline)


def _take_renew_lease(owner: str, force: bool, deadline: Deadline) -> Renewal | None:
    """Hold the renewal lease (None), or say why this run has nothing to do."""
    renew_before = timedelta(seconds=get_settings().channel_renew_before_seconds)

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, Renewal | None]:
        now = clock.now()
        lease = data.get("lease") or {}
        if lease.get("owner") and lease.get("until") and lease["until"] > now:
            return None, Renewal("busy", str(data.get("channelId") or ""))
        expiration = data.get("expiration")
        if (
            not force
            and data.get("channelId")
            and isinstance(expiration, datetime)
            and expiration - now > renew_before
        ):
            return None, Renewal("current", str(data["channelId"]), expiration)
        until = now + timedelta(seconds=RENEW_LEASE_SECONDS)
        return {"lease": {"owner": owner, "until": until}}, None

    return firestore.update_if_unchanged(
        firestore.watch_ref(), decide, deadline, "take renewal lease"
    )


def _open_channel(deadline: Deadline) -> tuple[str, datetime]:
    """`events.watch` with a fresh id and token; the channel is on record before Google knows it."""
    settings = get_settings()
    channel_id = f"ch-{uuid.uuid4().hex}"
    token = secrets.token_urlsafe(32)
    ttl = int(settings.channel_ttl_seconds)
    ref = firestore.channel_ref(channel_id)
    firestore.create(
        ref,
        {
            "channelId": channel_id,
            "calendarId": settings.calendar_id,
            "address": settings.notifications_url,
            "tokenHash": _token_hash(token),
            "state": "pending",
            "requestedTtlSeconds": ttl,
            # Until Google answers, trust the channel no longer than we asked for.
            "expiration": clock.now() + timedelta(seconds=ttl),
            "createdAt": SERVER_TIME,
        },
        deadline,
        "record new channel",
    )
    answer = calendar_api().watch_events(
        {
            "id": channel_id,
            "type": "web_hook",
            "address": settings.notifications_url,
            "token": token,
            "params": {"ttl": str(ttl)},
        },
        deadline,
    )
    expiration = datetime.fromtimestamp(int(answer["expiration"]) / 1000, UTC)
    activated = {
        "state": "active",
        "resourceId": str(answer.get("resourceId") or ""),
        "expiration": expiration,
        "expirationMs": int(answer["expiration"]),
        "activatedAt": SERVER_TIME,
    }
    firestore.update(ref, activated, deadline, "activate channel")
    return channel_id, expiration


def _record_current(owner: str, channel_id: str, expiration: datetime, deadline: Deadline) -> bool:
    """Point the calendar at the new channel, if this run still holds the lease."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, False
        updates = {
            "channelId": channel_id,
            "expiration": expiration,
            "renewedAt": SERVER_TIME,
        }
        return updates, True

    return firestore.update_if_unchanged(
        firestore.watch_ref(), decide, deadline, "record current channel"
    )


def _stop_others(current_id: str, deadline: Deadline) -> list[str]:
    """Stop every channel of this calendar except the current one: the previous, leftovers
    and orphaned `pending` ones (Google may have opened them even though we never heard).

    A `pending` channel has no resourceId on record; Google's is the watched calendar's
    events, the same for every channel of it, so the current channel's is used.
    """
    query = firestore.channels_of_calendar(get_settings().calendar_id)
    snaps = firestore.stream(query, deadline, "list channels")
    found = {snap.id: snap.to_dict() or {} for snap in snaps}
    current_resource = str(found.get(current_id, {}).get("resourceId") or "")
    now = clock.now()
    stopped = []
    for channel_id, data in found.items():
        if channel_id == current_id:
            continue
        if data.get("state") == "active" or _orphaned(data, now):
            _stop(channel_id, deadline, str(data.get("resourceId") or current_resource))
            stopped.append(channel_id)
    return stopped


def _stop(channel_id: str, deadline: Deadline, resource_id: str = "") -> None:
    ref = firestore.channel_ref(channel_id)
    if not resource_id:
        snap = firestore.get(ref, deadline, "read channel")
        resource_id = str((snap.to_dict() or {}).get("resourceId") or "")
    try:
        calendar_api().stop_channel(channel_id, resource_id, deadline)
    except UpstreamNotFound:
        pass  # expired or stopped already: the outcome we want
    except UpstreamError as exc:
        # It stays `active` on record and is stopped by the next renewal; Google drops it at
        # its expiration anyway.
        logs.warning(
            "could not stop an old calendar channel", channel_id=channel_id, detail=exc.message
        )
        return
    stopped = {"state": "stopped", "stoppedAt": SERVER_TIME}
    firestore.update(ref, stopped, deadline, "mark channel stopped")
