"""The error boundary: every call to an upstream, bounded by the request's deadline.

Google Calendar, Firestore, Secret Manager, Mercado Pago and Google's OAuth endpoints each
raise their own exceptions (googleapiclient's `HttpError`, google-api-core's
`GoogleAPICallError` and `RetryError`, requests', httplib2's and google-auth's transport
errors). `call` runs one upstream call with backoff inside a `Deadline`, and `translate`
turns whatever it raised into the platform's own tree (`shared.errors`) with one table, so
a 401 or a 503 means the same thing whichever upstream answered it.

The backoff is google-api-core's (`retry_target` with its exponential, jittered sleeps);
the client libraries' own retries are switched off by the callers (`retry=None`,
`num_retries=0`) so that this is the only engine and no call outlives its request.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable

import httplib2
import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import RetryFailureReason, exponential_sleep_generator, retry_target
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from shared.clock import Deadline
from shared.errors import (
    CredentialsRejected,
    PermanentUpstreamError,
    PlatformError,
    RateLimited,
    TransientUpstreamError,
    UpstreamConflict,
    UpstreamGone,
    UpstreamNotFound,
    UpstreamPreconditionFailed,
    UsageLimitExceeded,
)

__all__ = [
    "ANSWER_MARGIN_SECONDS",
    "FOREIGN",
    "RATE_LIMIT_REASONS",
    "Upstream",
    "by_status",
    "call",
    "translate",
]


RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
"""Calendar's 403 reasons that mean "slow down", not "forbidden"."""
ANSWER_MARGIN_SECONDS = 0.5
"""Kept back from every budget so the handler can still record the failure and answer."""
FIRST_DELAY_SECONDS = 0.2
MAX_DELAY_SECONDS = 2.0


class Upstream(enum.StrEnum):
    CALENDAR = "Google Calendar"
    FIRESTORE = "Firestore"
    SECRET_MANAGER = "Secret Manager"  # noqa: S105 (a name, not a secret)
    MERCADO_PAGO = "Mercado Pago"
    GOOGLE_OAUTH = "Google's token endpoint"
    GOOGLE_CERTS = "Google's ID-token certificates"
    CLOUD_TASKS = "Cloud Tasks"


_OURS_TO_FIX = frozenset({Upstream.SECRET_MANAGER, Upstream.MERCADO_PAGO})
"""Upstreams whose 403 (and Secret Manager's any 4xx) means our own configuration is refused:
a missing grant, a disabled or missing secret, a revoked access token. Only an operator
helps; the sender must redeliver once it is fixed (503), never be acknowledged."""

_UNREACHABLE: tuple[type[BaseException], ...] = (
    requests.RequestException,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
    OSError,  # sockets: resets, refusals, timeouts
)
_ALWAYS_TRANSIENT: tuple[type[gexc.GoogleAPICallError], ...] = (
    gexc.Aborted,  # Firestore aborts a contended commit; trying again is the remedy
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.Unknown,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.TooManyRequests,
)
FOREIGN: tuple[type[BaseException], ...] = (
    HttpError,
    auth_exceptions.RefreshError,
    gexc.GoogleAPICallError,
    gexc.RetryError,
    *_UNREACHABLE,
)
"""Every foreign exception type `translate` knows; anything else is a bug and stays one."""


def _calendar_reason(exc: HttpError) -> str:
    try:
        errors = json.loads(exc.content or b"{}").get("error", {}).get("errors") or []
        return str(errors[0].get("reason", "")) if errors else ""
    except (ValueError, AttributeError, IndexError):
        return ""


def _status_and_reason(exc: BaseException) -> tuple[int | None, str]:
    if isinstance(exc, HttpError):
        return int(exc.resp.status), _calendar_reason(exc)
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code if isinstance(exc.code, int) else None
        return code, str(exc.reason or "")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code, ""
    return None, ""


def by_status(upstream: Upstream, status: int, reason: str, what: str) -> PlatformError:
    """The table: what an HTTP status from `upstream` means for the platform."""
    message = f"{upstream} answered {status}{f' {reason}' if reason else ''}: {what}"
    details = {"status": status, "reason": reason, "upstream": upstream.value}
    if status == 401:
        return CredentialsRejected(message, **details)
    if status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
        return RateLimited(message, **details)
    if status == 403 and reason == "quotaExceeded" and upstream == Upstream.CALENDAR:
        return UsageLimitExceeded(message, **details)
    if status == 408 or status == 429 or status >= 500:
        return TransientUpstreamError(message, **details)
    if upstream == Upstream.SECRET_MANAGER or (status == 403 and upstream in _OURS_TO_FIX):
        return CredentialsRejected(message, **details)
    if status == 404:
        return UpstreamNotFound(message, **details)
    if status == 409:
        return UpstreamConflict(message, **details)
    if status == 410:
        return UpstreamGone(message, **details)
    if status == 412:
        return UpstreamPreconditionFailed(message, **details)
    return PermanentUpstreamError(message, **details)


def translate(exc: BaseException, upstream: Upstream, what: str) -> PlatformError:
    """The platform error a foreign exception stands for (one table for every upstream)."""
    if isinstance(exc, PlatformError):
        return exc
    if isinstance(exc, gexc.RetryError):
        # A client library's own retry gave up: its last error says why.
        cause = exc.cause
        if cause is not None and cause is not exc:
            return translate(cause, upstream, what)
        return TransientUpstreamError(f"{upstream} kept failing: {what}", upstream=upstream.value)
    if isinstance(exc, auth_exceptions.RefreshError):
        # google-auth marks 5xx and 429 answers of the token endpoint as retryable.
        kind = TransientUpstreamError if exc.retryable else CredentialsRejected
        return kind(f"{upstream} refused a token refresh: {what}", upstream=upstream.value)
    if isinstance(exc, _ALWAYS_TRANSIENT):
        return TransientUpstreamError(
            f"{upstream} unavailable ({type(exc).__name__}): {what}", upstream=upstream.value
        )
    status, reason = _status_and_reason(exc)
    if status is not None:
        return by_status(upstream, status, reason, what)
    return TransientUpstreamError(f"{upstream} unreachable: {what}", upstream=upstream.value)


def _retryable(exc: Exception) -> bool:
    # Refused credentials and Google's usage limit are transient to the sender (503) but
    # will not clear within a request: not worth a retry here.
    return isinstance(exc, TransientUpstreamError) and not isinstance(
        exc, CredentialsRejected | UsageLimitExceeded
    )


def _last_error(
    errors: list[Exception], reason: RetryFailureReason, timeout: float | None
) -> tuple[Exception, Exception | None]:
    return errors[-1], errors[-1].__cause__ if isinstance(errors[-1].__cause__, Exception) else None


def call[T](
    upstream: Upstream,
    attempt: Callable[[float], T],
    deadline: Deadline,
    what: str,
    *,
    attempt_timeout: float = 5.0,
    retry: bool = True,
) -> T:
    """Run `attempt(timeout)`, retrying transient failures until `deadline` is near.

    `attempt` receives the seconds its one call may take (never past the deadline). When
    the next sleep would cross the deadline, the last transient error is raised, leaving
    time to record it and answer 503.
    """

    def once() -> T:
        remaining = deadline.remaining()
        if remaining <= 0.0:
            raise TransientUpstreamError(f"the request's time budget is spent: {what}")
        try:
            return attempt(max(0.1, min(attempt_timeout, remaining)))
        except FOREIGN as exc:
            raise translate(exc, upstream, what) from exc

    budget = deadline.remaining() - ANSWER_MARGIN_SECONDS
    if not retry or budget <= 0.0:
        return once()

    def retryable(exc: Exception) -> bool:
        waits = deadline.wait_out_rate_limits or not isinstance(exc, RateLimited)
        return waits and _retryable(exc)

    result: T = retry_target(
        once,
        predicate=retryable,
        sleep_generator=exponential_sleep_generator(FIRST_DELAY_SECONDS, MAX_DELAY_SECONDS, 2.0),
        timeout=budget,
        exception_factory=_last_error,
    )
    return result
