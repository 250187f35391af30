"""Loaded only under faketime (dev.sh puts this folder on PYTHONPATH then), to prove the
suite, the demo and the proof pass on any date.

libfaketime cannot fake the calendar without breaking one of Python's clocks: with the
monotonic clock faked too, timed waits on locks (sem_clockwait: threading.Event.wait,
queue.get with a timeout) sleep until a deadline days away; with it left real
(FAKETIME_DONT_FAKE_MONOTONIC=1, what dev.sh sets), time.sleep's absolute-deadline
clock_nanosleep is refused with EINVAL. The second is mended here: time.sleep waits on
select, whose timeout is relative. Nothing of this runs outside faketime.
"""

from __future__ import annotations

import os
import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        select.select([], [], [], left)


if "faketime" in os.environ.get("LD_PRELOAD", ""):
    time.sleep = _sleep
