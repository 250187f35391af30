"""Exponential backoff with full jitter inside a time budget.

Mercado Pago waits 22 seconds for an answer and Google push senders less; a handler that
keeps retrying past its budget loses the chance to answer 503 and be retried later. So every
retry loop here is bounded by a `Deadline`, not by a count.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import CredentialsRejected, TransientUpstreamError

T = TypeVar("T")


class Deadline:
    """A point in monotonic time that a whole request must finish by."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


def with_backoff(
    call: Callable[[], T],
    deadline: Deadline,
    *,
    first_delay: float = 0.2,
    max_delay: float = 2.0,
) -> T:
    """Run `call`, retrying on `TransientUpstreamError` until it succeeds or time runs out.

    The last transient error is re-raised when the next sleep would cross the deadline, so
    the caller still has time to record the failure and answer 503.
    """
    delay = first_delay
    if deadline.expired():
        raise TransientUpstreamError("the request's time budget is spent")
    while True:
        try:
            return call()
        except CredentialsRejected:
            raise  # only an operator helps; retrying would spend the budget
        except TransientUpstreamError:
            sleep = random.uniform(0, delay)
            if deadline.remaining() < sleep + 0.5:
                raise
            time.sleep(sleep)
            delay = min(max_delay, delay * 2)
