"""The error boundary: one table for every upstream, and one deadline-bounded backoff."""

from __future__ import annotations

import json
import time

import httplib2
import pytest
import requests
from google.api_core import exceptions as gexc
from googleapiclient.errors import HttpError

from shared.adapters.boundary import Upstream, call, translate
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
    UsageLimitExceeded,
)


def calendar_error(status: int, reason: str = "") -> HttpError:
    body = {"error": {"code": status, "errors": [{"reason": reason}] if reason else []}}
    return HttpError(httplib2.Response({"status": status}), json.dumps(body).encode())


def mercado_pago_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(response=response)


@pytest.mark.parametrize(
    ("foreign", "upstream", "expected"),
    [
        (calendar_error(401), Upstream.CALENDAR, CredentialsRejected),
        (mercado_pago_error(401), Upstream.MERCADO_PAGO, CredentialsRejected),
        (gexc.Unauthenticated("no"), Upstream.FIRESTORE, CredentialsRejected),
        (calendar_error(403, "rateLimitExceeded"), Upstream.CALENDAR, RateLimited),
        (calendar_error(403, "userRateLimitExceeded"), Upstream.CALENDAR, RateLimited),
        (calendar_error(403, "quotaExceeded"), Upstream.CALENDAR, UsageLimitExceeded),
        (
            calendar_error(403, "forbiddenForServiceAccounts"),
            Upstream.CALENDAR,
            PermanentUpstreamError,
        ),
        (mercado_pago_error(403), Upstream.MERCADO_PAGO, CredentialsRejected),
        (gexc.PermissionDenied("no"), Upstream.SECRET_MANAGER, CredentialsRejected),
        (gexc.NotFound("no secret"), Upstream.SECRET_MANAGER, CredentialsRejected),
        (calendar_error(429, "rateLimitExceeded"), Upstream.CALENDAR, RateLimited),
        (mercado_pago_error(429), Upstream.MERCADO_PAGO, RateLimited),
        (calendar_error(503), Upstream.CALENDAR, TransientUpstreamError),
        (mercado_pago_error(502), Upstream.MERCADO_PAGO, TransientUpstreamError),
        (calendar_error(409), Upstream.CALENDAR, UpstreamConflict),
        (calendar_error(404), Upstream.CALENDAR, UpstreamNotFound),
        (mercado_pago_error(404), Upstream.MERCADO_PAGO, UpstreamNotFound),
        (calendar_error(410), Upstream.CALENDAR, UpstreamGone),
        (calendar_error(400, "invalid"), Upstream.CALENDAR, PermanentUpstreamError),
        (gexc.ServiceUnavailable("down"), Upstream.FIRESTORE, TransientUpstreamError),
        (gexc.Aborted("contention"), Upstream.FIRESTORE, TransientUpstreamError),
        (gexc.DeadlineExceeded("slow"), Upstream.FIRESTORE, TransientUpstreamError),
        (
            gexc.RetryError("gave up", cause=gexc.ServiceUnavailable("down")),
            Upstream.SECRET_MANAGER,
            TransientUpstreamError,
        ),
        (requests.ConnectionError("reset"), Upstream.MERCADO_PAGO, TransientUpstreamError),
        (requests.Timeout("slow"), Upstream.GOOGLE_CERTS, TransientUpstreamError),
        (httplib2.ServerNotFoundError("dns"), Upstream.CALENDAR, TransientUpstreamError),
        (ConnectionResetError(), Upstream.CALENDAR, TransientUpstreamError),
    ],
)
def test_every_foreign_error_has_one_meaning(
    foreign: BaseException, upstream: Upstream, expected: type[PlatformError]
) -> None:
    translated = translate(foreign, upstream, "test")
    assert type(translated) is expected


def test_a_401_means_refused_credentials_whichever_upstream_says_it() -> None:
    kinds = {
        type(translate(calendar_error(401), Upstream.CALENDAR, "x")),
        type(translate(mercado_pago_error(401), Upstream.MERCADO_PAGO, "x")),
        type(translate(gexc.Unauthenticated("x"), Upstream.SECRET_MANAGER, "x")),
    }
    assert kinds == {CredentialsRejected}


def test_transient_failures_are_retried_until_one_succeeds() -> None:
    answers: list[BaseException | str] = [calendar_error(503), calendar_error(429), "ok"]

    def attempt(timeout: float) -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert call(Upstream.CALENDAR, attempt, Deadline(5), "test") == "ok"


def test_an_upstream_that_stays_down_fails_within_the_deadline() -> None:
    attempts = 0

    def attempt(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise gexc.ServiceUnavailable("down")

    started = time.monotonic()
    with pytest.raises(TransientUpstreamError):
        call(Upstream.SECRET_MANAGER, attempt, Deadline(1.5), "test")
    assert time.monotonic() - started < 1.5
    assert attempts > 1


def test_refused_credentials_are_not_retried() -> None:
    attempts = 0

    def attempt(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise mercado_pago_error(401)

    with pytest.raises(CredentialsRejected):
        call(Upstream.MERCADO_PAGO, attempt, Deadline(5), "test")
    assert attempts == 1


def test_an_attempt_never_gets_more_time_than_the_deadline_leaves() -> None:
    timeouts: list[float] = []
    call(Upstream.FIRESTORE, timeouts.append, Deadline(0.8), "test", attempt_timeout=5.0)
    assert 0 < timeouts[0] <= 0.8


def test_a_spent_deadline_makes_no_call() -> None:
    deadline = Deadline(0)
    with pytest.raises(TransientUpstreamError):
        call(Upstream.CALENDAR, lambda timeout: pytest.fail("called"), deadline, "test")


def test_a_bug_is_not_disguised_as_an_upstream_error() -> None:
    def attempt(timeout: float) -> None:
        raise KeyError("our own mistake")

    with pytest.raises(KeyError):
        call(Upstream.CALENDAR, attempt, Deadline(5), "test")


def test_googles_usage_limit_is_not_retried_within_the_request() -> None:
    attempts = 0

    def attempt(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise calendar_error(403, "quotaExceeded")

    with pytest.raises(UsageLimitExceeded):
        call(Upstream.CALENDAR, attempt, Deadline(5), "test")
    assert attempts == 1


def test_a_queue_is_told_429_for_a_rate_limit_and_a_webhook_503() -> None:
    from shared.errors import http_answer

    limited = RateLimited("slow down")
    assert (http_answer(limited).status, http_answer(limited).retry_after) == (429, 10)
    assert http_answer(limited, webhook=True).status == 503
