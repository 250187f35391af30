"""Time in one place: the platform's zone, the present instant, reading stored times, and
the request's deadline.

Every class starts and ends in Buenos Aires time. Decisions never read the clock: services
ask `now()` once and pass the instant down, so a decision's unit test sets its own present.
Argentina keeps no daylight saving time (UTC-03:00 all year), but nothing here assumes it.
"""

from __future__ import annotations

import time as monotonic_clock
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "TIME_ZONE",
    "ZONE",
    "Deadline",
    "local_iso",
    "now",
    "parse_instant",
    "parse_local",
    "start_of_day",
    "zone_named",
]

TIME_ZONE = "America/Argentina/Buenos_Aires"
"""The platform's one time zone."""
ZONE = ZoneInfo(TIME_ZONE)


def now() -> datetime:
    """The present instant (aware, UTC): the only reading of the clock in `shared/`."""
    return datetime.now(UTC)


class Deadline:
    """A point in monotonic time that a whole request must finish by.

    `wait_out_rate_limits=False` is for work a queue delivered: a rate limit is answered at
    once (429) so the queue backs off, instead of being waited out inside the request.
    """

    def __init__(self, seconds: float, *, wait_out_rate_limits: bool = True) -> None:
        self._end = monotonic_clock.monotonic() + seconds
        self.wait_out_rate_limits = wait_out_rate_limits

    def remaining(self) -> float:
        return max(0.0, self._end - monotonic_clock.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


def zone_named(name: str) -> ZoneInfo:
    """The zone a document names; ValueError for a name the zone database does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_local(raw: Any, zone: tzinfo = ZONE) -> datetime | None:
    """A class time (a datetime or ISO 8601 text) as an aware instant in `zone`; a time
    without an offset is wall-clock time there. None when absent or unreadable."""
    value = _as_datetime(raw)
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(zone)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by the zone change
        return None


def parse_instant(raw: Any) -> datetime | None:
    """A recorded instant (a Firestore time or RFC 3339 text); one without an offset is UTC."""
    value = _as_datetime(raw)
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def local_iso(value: Any, naive_zone: tzinfo = UTC) -> str | None:
    """An instant as ISO 8601 in Buenos Aires time, to the second; a time without an offset
    is read in `naive_zone` (a booking's wall-clock times: its zone)."""
    parsed = parse_local(value, naive_zone)
    return parsed.astimezone(ZONE).isoformat(timespec="seconds") if parsed is not None else None


def start_of_day(value: datetime | date) -> datetime:
    """Midnight in Buenos Aires of the day `value` falls on there."""
    day = value.astimezone(ZONE).date() if isinstance(value, datetime) else value
    return datetime.combine(day, time(0), tzinfo=ZONE)


def _as_datetime(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None
