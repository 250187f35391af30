"""Google-signed ID tokens: verified against Google's certificates for one audience.

People sign in to the admin console with Google; Cloud Scheduler and Cloud Tasks call with
OIDC tokens; the consent callback checks who consented. All of them are ID tokens that
Google signed, verified here with google-auth against the certificates Google publishes.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import requests
from google.auth import jwt

from shared.adapters.boundary import Upstream, call
from shared.adapters.clients import http_session, on_reset
from shared.clock import Deadline
from shared.config import get_settings
from shared.errors import TransientUpstreamError, Unauthenticated

__all__ = ["Admin", "verify_id_token"]


@dataclass(frozen=True)
class Admin:
    """The caller, once authenticated: an email for people, "api-key" for scripts."""

    identity: str
    method: str


CERTS_REFRESH_SECONDS = 60.0
"""At most one fetch of Google's certificates per this interval per instance."""
CERTS_RETRY_SECONDS = 5.0
"""After a failed fetch, how long requests answer 503 at once instead of fetching again."""


class _CertCache:
    """Google's ID-token signing certificates, kept as long as their Cache-Control allows.

    Fetching them on every admin call would add a request to Google per call. A token
    signed by a key we have not seen yet fetches them again (Google publishes a key before
    it signs with it), but at most once per `CERTS_REFRESH_SECONDS`: within that, an unknown
    `kid` (a forged token, most likely) is refused at once without a fetch. A known `kid`
    is served without taking the lock, so admins never queue behind forged tokens.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[dict[str, str], float] = ({}, 0.0)  # certificates, expiry
        self._next_fetch = 0.0

    def get(self, key_id: str, deadline: Deadline) -> dict[str, str]:
        certs, expires = self._cached
        if key_id in certs and time.monotonic() < expires:
            return certs
        with self._lock:
            certs, expires = self._cached
            now = time.monotonic()
            if key_id in certs and now < expires:
                return certs  # fetched by another request meanwhile
            if now < self._next_fetch:
                if not certs:
                    raise TransientUpstreamError("Google's ID-token certificates are unreachable")
                return certs  # an unknown kid stays unknown: the token does not verify
            self._next_fetch = now + CERTS_RETRY_SECONDS
            certs, lifetime = self._fetch(deadline)
            self._next_fetch = now + CERTS_REFRESH_SECONDS
            self._cached = (certs, time.monotonic() + lifetime)
            return certs

    def clear(self) -> None:
        with self._lock:
            self._cached, self._next_fetch = ({}, 0.0), 0.0

    @staticmethod
    def _fetch(deadline: Deadline) -> tuple[dict[str, str], int]:
        """One attempt (under the lock, so no backoff): a failure answers 503 for a while."""
        settings = get_settings()

        def attempt(timeout: float) -> requests.Response:
            response = http_session().get(settings.google_certs_url, timeout=timeout)
            response.raise_for_status()
            return response

        response = call(
            Upstream.GOOGLE_CERTS,
            attempt,
            deadline,
            "fetch certificates",
            attempt_timeout=settings.upstream_timeout_seconds,
            retry=False,
        )
        try:
            certs = {str(k): str(v) for k, v in response.json().items()}
        except (ValueError, AttributeError) as exc:
            raise TransientUpstreamError("Google's ID-token certificates are unreadable") from exc
        match = re.search(r"max-age=(\d+)", response.headers.get("Cache-Control", ""))
        return certs, int(match.group(1)) if match else 300


_certs = _CertCache()


def verify_id_token(
    token: str, audience: str, deadline: Deadline | None = None
) -> Mapping[str, Any]:
    """Claims of an ID token Google signed for `audience`, or `Unauthenticated`.

    Fetching Google's certificates, when needed, stays within `deadline` (default: a
    handler's budget from now).
    """
    deadline = deadline or Deadline(get_settings().handler_budget_seconds)
    try:
        key_id = str(jwt.decode_header(token).get("kid", ""))  # type: ignore[no-untyped-call]
        claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token, certs=_certs.get(key_id, deadline), audience=audience, clock_skew_in_seconds=10
        )
    except (ValueError, RecursionError, google.auth.exceptions.GoogleAuthError) as exc:
        # RecursionError: a header or payload of deeply nested JSON arrays.
        raise Unauthenticated("invalid ID token") from exc
    if claims.get("iss") not in ("accounts.google.com", "https://accounts.google.com"):
        raise Unauthenticated("ID token not issued by Google")
    return claims


on_reset(_certs.clear)
