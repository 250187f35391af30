"""The one exception tree of the platform, and the one mapping from errors to HTTP answers.

Every error raised on purpose derives from `PlatformError`. Each class says two things the
HTTP adapters need: the status a caller sees, and whether the sender should try again.
Webhook senders (Mercado Pago, Google push) retry on 5xx, so a permanent failure in a webhook
is acknowledged with 200 instead of provoking a retry storm; `http_answer` decides that.

    PlatformError
    +-- RequestError (4xx: the caller sent something wrong; nothing was written)
    |   +-- InvalidRequest 400, Unauthenticated 401, Forbidden 403, NotFound 404,
    |       MethodNotAllowed 405, Conflict 409, PayloadTooLarge 413, UnsupportedMediaType 415
    +-- UpstreamError (Google, Mercado Pago, Firestore)
    |   +-- TransientUpstreamError 503, retry (5xx, timeouts, budget spent)
    |   |   +-- RateLimited (429 to a queue, 503 to webhook senders)
    |   |   +-- UsageLimitExceeded (Google's anti-abuse limit: not retried in the request)
    |   |   +-- CredentialsRejected (our token refused; not retried in the request)
    |   |       +-- ReauthorizationRequired (the Google grant is gone; an admin must consent)
    |   +-- PermanentUpstreamError 502 (a retry cannot help)
    |       +-- UpstreamConflict (409), UpstreamNotFound (404), UpstreamGone (410),
    |           UpstreamPreconditionFailed (412)
    +-- UnprocessableNotification 422 (well-formed but cannot be applied: unknown booking,
    |   amount mismatch); acknowledged to webhook senders
    +-- InvalidSettings 503, retry (a setting is malformed: the sender retries once an
        operator fixes it)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "CredentialsRejected",
    "Forbidden",
    "GrantRefused",
    "HttpAnswer",
    "InvalidRequest",
    "InvalidSettings",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PermanentUpstreamError",
    "PlatformError",
    "RateLimited",
    "ReauthorizationRequired",
    "RequestError",
    "TransientUpstreamError",
    "Unauthenticated",
    "UnprocessableNotification",
    "UnsupportedMediaType",
    "UpstreamConflict",
    "UpstreamError",
    "UpstreamGone",
    "UpstreamNotFound",
    "UpstreamPreconditionFailed",
    "UsageLimitExceeded",
    "http_answer",
]


class PlatformError(Exception):
    """Root of every error the platform raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    retry: ClassVar[bool] = False
    retry_after: ClassVar[int] = 30

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class RequestError(PlatformError):
    status = 400
    code = "invalid_request"


class InvalidRequest(RequestError):
    status = 400
    code = "invalid_request"


class Unauthenticated(RequestError):
    status = 401
    code = "unauthenticated"


class Forbidden(RequestError):
    status = 403
    code = "forbidden"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class Conflict(RequestError):
    """The request contradicts the booking's state (a class that cannot be moved, or would
    overlap another of the teacher's)."""

    status = 409
    code = "conflict"


class MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"


class UpstreamError(PlatformError):
    status = 502
    code = "upstream_error"


class TransientUpstreamError(UpstreamError):
    status = 503
    code = "upstream_unavailable"
    retry = True


class RateLimited(TransientUpstreamError):
    """The upstream asks us to slow down (Calendar 403/429 `rateLimitExceeded`): backed off
    and retried; a queue that delivered the work is answered 429 with `Retry-After`."""

    status = 429
    code = "rate_limited"
    retry_after = 10


class UsageLimitExceeded(TransientUpstreamError):
    """Google's anti-abuse limit (403 `quotaExceeded`, "Calendar usage limits exceeded."):
    not a blip, the calendar may stay limited for hours. No retry in the request; the work
    waits (the queue is paused) and nothing is lost."""

    code = "usage_limit_exceeded"
    retry_after = 600


class CredentialsRejected(TransientUpstreamError):
    """An upstream refused our credentials: only an operator helps, so no backoff here,
    but 503 to senders so the work is redelivered once it is fixed."""

    code = "credentials_rejected"


class ReauthorizationRequired(CredentialsRejected):
    """The admin's Google grant is gone (`invalid_grant`): an admin must consent again."""

    code = "reauthorization_required"


class PermanentUpstreamError(UpstreamError):
    status = 502
    code = "upstream_rejected"


class UpstreamConflict(PermanentUpstreamError):
    """The upstream already holds what we tried to create (Calendar 409 on an event id)."""

    code = "upstream_conflict"


class UpstreamPreconditionFailed(PermanentUpstreamError):
    """412: the resource changed since it was read (`If-Match`); read it again."""

    code = "upstream_precondition_failed"


class GrantRefused(PermanentUpstreamError):
    """Google refused an authorization code (`error`: its OAuth error, e.g. invalid_grant)."""

    code = "grant_refused"


class UpstreamNotFound(PermanentUpstreamError):
    code = "upstream_not_found"


class UpstreamGone(PermanentUpstreamError):
    """Calendar 410: a sync token is no longer valid and a full sync is needed."""

    code = "upstream_gone"


class UnprocessableNotification(PlatformError):
    status = 422
    code = "unprocessable"


class InvalidSettings(PlatformError):
    """An environment setting is malformed or unknown: nothing can be trusted until an
    operator fixes it, so 503 (Mercado Pago keeps the delivery) rather than a guess."""

    status = 503
    code = "invalid_settings"
    retry = True


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]
    retry_after: int | None = None


def http_answer(error: PlatformError, *, webhook: bool = False) -> HttpAnswer:
    """Turn an error into the HTTP answer a caller gets.

    `webhook=True` is for senders that redeliver on anything but 2xx: errors a retry
    cannot fix are acknowledged with 200 so the sender stops, while transient ones
    answer 503 so it tries again later. Request errors stay 4xx either way: a forged
    or malformed delivery must be visible as such.
    """
    body: dict[str, Any] = {"error": {"code": error.code, "message": error.message}}
    if isinstance(error, RequestError) and isinstance(error.details.get("parameter"), str):
        body["error"]["parameter"] = error.details["parameter"]  # the field to correct
    if error.retry:
        # A queue (Cloud Tasks) backs off harder on 429; webhook senders only know "not 2xx".
        status = 429 if isinstance(error, RateLimited) and not webhook else 503
        return HttpAnswer(status, body, retry_after=error.retry_after)
    if webhook and not isinstance(error, RequestError):
        return HttpAnswer(200, {"status": "acknowledged", **body})
    return HttpAnswer(error.status, body)
