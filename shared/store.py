"""Firestore plumbing every store shares: transient errors, time budgets, guarded updates.

Bookings, channels, the sync state and OAuth states all live in Firestore; this module is
how they talk to it, so a Firestore outage means the same thing everywhere (a
`TransientUpstreamError`, hence 503 and a redelivery) and no call outlives its request.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.cloud import firestore

from shared import logs
from shared.clients import firestore_client
from shared.errors import TransientUpstreamError
from shared.retry import Deadline

FIRESTORE_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
    gexc.Unknown,
)

_GUARDED_ATTEMPTS = 100


@contextlib.contextmanager
def firestore_call(what: str) -> Iterator[None]:
    """Turn Firestore's transient failures into `TransientUpstreamError` (-> retry, 503)."""
    try:
        yield
    except FIRESTORE_TRANSIENT as exc:
        raise TransientUpstreamError(f"Firestore unavailable: {what}") from exc


def rpc_budget(deadline: Deadline) -> dict[str, Any]:
    """Retry and timeout for one Firestore call, bounded by the request's deadline.

    The client's defaults retry for up to a minute, far past the 22 seconds Mercado Pago
    waits for an answer.
    """
    remaining = max(0.5, deadline.remaining())
    retry = Retry(
        predicate=if_transient_error, initial=0.1, maximum=1.0, multiplier=2.0, timeout=remaining
    )
    return {"retry": retry, "timeout": min(5.0, remaining)}


R = TypeVar("R")


def update_if_unchanged(
    ref: firestore.DocumentReference,
    decide: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, R]],
    what: str,
) -> R:
    """Read `ref`, let `decide` choose the update, and write it only if nobody wrote since.

    Optimistic concurrency rather than a transaction: twenty notifications racing for one
    document would make Firestore abort transactions and the client back off for seconds;
    a failed precondition costs one more read. `decide` returns (None, result) to write
    nothing.
    """
    client = firestore_client()
    for attempt in range(_GUARDED_ATTEMPTS):
        with firestore_call(what):
            snap = ref.get()
        updates, result = decide(snap.to_dict() or {} if snap.exists else {})
        if updates is None:
            return result
        try:
            with firestore_call(what):
                if snap.exists:
                    option = client.write_option(last_update_time=snap.update_time)
                    ref.update(updates, option=option)
                else:
                    ref.create(updates)
        except (gexc.FailedPrecondition, gexc.AlreadyExists):
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            continue
        return result
    raise TransientUpstreamError(f"{what}: the document kept changing")


def release_lease(ref: firestore.DocumentReference, owner: str, what: str) -> None:
    """Drop `owner`'s lease on `ref` if it still holds it; an expired lease needs nothing."""

    def decide(data: dict[str, Any]) -> tuple[dict[str, Any] | None, None]:
        if (data.get("lease") or {}).get("owner") != owner:
            return None, None
        return {"lease": firestore.DELETE_FIELD}, None

    try:
        update_if_unchanged(ref, decide, what)
    except TransientUpstreamError:
        logs.warning(f"{what}: not released; it expires by itself")
