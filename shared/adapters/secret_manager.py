"""Secret Manager access: read a secret's latest value, add a version, retire old ones.

Values are cached per instance for a short time, so a rotated secret (a new refresh token,
a new webhook secret) is picked up without a redeploy while a burst of webhooks costs one
read. Values never leave this module in logs or errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from google.cloud import secretmanager

from shared.adapters.boundary import Upstream, call
from shared.adapters.clients import on_reset, secret_manager_client
from shared.clock import Deadline
from shared.config import get_settings
from shared.errors import CredentialsRejected, TransientUpstreamError

__all__ = [
    "CACHE_SECONDS",
    "add_secret_version",
    "forget_cached_secrets",
    "matching_secret",
    "read_secret",
]

CACHE_SECONDS = 300.0
BUDGET_SECONDS = 5.0
"""For callers with no request deadline at hand (a credential refresh inside a Calendar call)."""
MISMATCH_REFRESH_SECONDS = 30.0
"""How often a mismatch may re-read one secret: a rotation is seen within this, while
forged requests cost at most one Secret Manager read per secret per interval."""

DOWN_SECONDS = 5.0
"""After Secret Manager failed, how long reads fail fast (or serve the expired value)."""

_cache: dict[str, tuple[float, str]] = {}
_down_until: dict[str, float] = {}
_cache_lock = threading.Lock()
_refreshed: dict[str, float] = {}  # secret id -> when a mismatch last re-read it


def _secret_path(secret_id: str) -> str:
    return f"projects/{get_settings().project_id}/secrets/{secret_id}"


def read_secret(
    secret_id: str,
    deadline: Deadline | None = None,
    *,
    max_age: float = CACHE_SECONDS,
    fresh: bool = False,
) -> str:
    """The latest version of `secret_id`, as text, at most `max_age` seconds old.

    Every failure reaches callers as a 503: a missing secret or grant is an operator's
    mistake (`CredentialsRejected`), and answering 503 keeps Mercado Pago redelivering
    until it is fixed, where a 4xx or an acknowledgement would lose the payment.
    """
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(secret_id)
        down_until = _down_until.get(secret_id, 0.0)
    if cached and not fresh and now - cached[0] < max_age:
        return cached[1]
    if now < down_until:
        # Secret Manager just failed: answer at once instead of holding a request thread
        # for the whole budget (a burst of deliveries would queue behind each other).
        if cached and not fresh:
            return cached[1]
        raise TransientUpstreamError(f"Secret Manager unavailable: read secret {secret_id}")
    name = f"{_secret_path(secret_id)}/versions/latest"
    try:
        response = call(
            Upstream.SECRET_MANAGER,
            lambda t: secret_manager_client().access_secret_version(
                name=name, retry=None, timeout=t
            ),
            deadline or Deadline(BUDGET_SECONDS),
            f"read secret {secret_id}",
        )
    except TransientUpstreamError as exc:
        with _cache_lock:
            _down_until[secret_id] = time.monotonic() + DOWN_SECONDS
        if cached and not fresh and not isinstance(exc, CredentialsRejected):
            return cached[1]  # an expired value beats no value while Google is down
        raise
    value = str(response.payload.data.decode("utf-8")).strip()
    with _cache_lock:
        _cache[secret_id] = (now, value)
        _down_until.pop(secret_id, None)
    return value


def matching_secret(
    secret_id: str, matches: Callable[[str], bool], deadline: Deadline | None = None
) -> str | None:
    """The value of `secret_id` that `matches` accepts, or None.

    After a rotation, a warm instance still holds the old value for up to `CACHE_SECONDS`;
    so on a mismatch the secret is read once more, bypassing the cache, but at most once
    per `MISMATCH_REFRESH_SECONDS` per secret, so that a stream of forged signatures or
    keys does not become a stream of Secret Manager reads.
    """
    value = read_secret(secret_id, deadline)
    if matches(value):
        return value
    now = time.monotonic()
    with _cache_lock:
        last = _refreshed.get(secret_id)
        if last is not None and now - last < MISMATCH_REFRESH_SECONDS:
            return None
        _refreshed[secret_id] = now
    fresh = read_secret(secret_id, deadline, fresh=True)
    return fresh if fresh != value and matches(fresh) else None


def add_secret_version(secret_id: str, value: str, deadline: Deadline | None = None) -> str:
    """Store `value` as the newest version and disable every older enabled one.

    Disabling (not destroying) keeps a way back if the new value turns out bad. Only
    versions numbered below the new one are disabled: two instances storing at once must
    not disable each other's, which could leave no enabled version at all.
    Returns the new version's resource name.
    """
    client = secret_manager_client()
    parent = _secret_path(secret_id)
    budget = deadline or Deadline(BUDGET_SECONDS)
    what = f"write secret {secret_id}"
    payload = secretmanager.SecretPayload(data=value.encode("utf-8"))
    version = call(
        Upstream.SECRET_MANAGER,
        lambda t: client.add_secret_version(parent=parent, payload=payload, retry=None, timeout=t),
        budget,
        what,
        retry=False,  # not idempotent: a retry after a lost answer would add a second version
    )
    newest = _version_number(version.name)
    enabled = call(
        Upstream.SECRET_MANAGER,
        lambda t: list(
            client.list_secret_versions(
                request={"parent": parent, "filter": "state:ENABLED"}, retry=None, timeout=t
            )
        ),
        budget,
        what,
    )
    for old in enabled:
        if _version_number(old.name) < newest:
            _disable(client, old.name, budget, what)
    with _cache_lock:
        _cache[secret_id] = (time.monotonic(), value)
    return str(version.name)


def _disable(
    client: secretmanager.SecretManagerServiceClient, name: str, deadline: Deadline, what: str
) -> None:
    call(
        Upstream.SECRET_MANAGER,
        lambda t: client.disable_secret_version(name=name, retry=None, timeout=t),
        deadline,
        what,
    )


def _version_number(name: str) -> int:
    return int(name.rsplit("/", 1)[-1])


def forget_cached_secrets() -> None:
    with _cache_lock:
        _cache.clear()
        _refreshed.clear()
        _down_until.clear()


on_reset(forget_cached_secrets)
