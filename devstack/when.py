"""Class times computed from the clock, in Buenos Aires time.

Tests, the demo, the benchmarks and the proof never write a literal class date: a class is
"in 7 days at 18:00", so every run books classes that have not happened yet, whatever the
date (try `faketime '+400 days' ./dev.sh test`). The base day is read once per process, so
a run that crosses midnight keeps every computed time on the same calendar.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from shared.clock import ZONE

__all__ = ["BASE_DAY", "CLASS_DAYS_AHEAD", "ZONE", "at", "day", "iso", "wall"]

BASE_DAY: date = datetime.now(ZONE).date()
"""Today in Buenos Aires when this process started."""
CLASS_DAYS_AHEAD = 7
"""How far ahead a test's default class is: within the listing's default 30 days."""


def day(days: int) -> date:
    """The date `days` after the base day."""
    return BASE_DAY + timedelta(days=days)


def at(days: int, hour: int, minute: int = 0) -> datetime:
    """An aware Buenos Aires time `days` after the base day, at hour:minute."""
    return datetime.combine(day(days), time(hour, minute), tzinfo=ZONE)


def iso(days: int, hour: int, minute: int = 0) -> str:
    """`at(...)` as ISO 8601 with its offset, as bookings store it: `...T18:00:00-03:00`."""
    return at(days, hour, minute).isoformat()


def wall(days: int, hour: int, minute: int = 0) -> str:
    """`at(...)` as wall-clock text without an offset: `...T18:00:00`."""
    return at(days, hour, minute).replace(tzinfo=None).isoformat()
