"""Secret Manager access: read a secret's latest value, add a version, retire old ones.

Values are cached per instance for a short time, so a rotated secret (a new refresh token,
a new webhook secret) is picked up without a redeploy while a burst of webhooks costs one
read. Values never leave this module in logs or errors.
"""

from __future__ import annotations

import threading
import time

from google.api_core import exceptions as gexc
from google.cloud import secretmanager

from shared.clients import on_reset, secret_manager_client
from shared.config import get_settings
from shared.errors import PermanentUpstreamError, TransientUpstreamError

CACHE_SECONDS = 300.0

_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()

_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.DeadlineExceeded,
    gexc.BadGateway,
    gexc.GatewayTimeout,
)


def _secret_path(secret_id: str) -> str:
    return f"projects/{get_settings().project_id}/secrets/{secret_id}"


def read_secret(secret_id: str, *, fresh: bool = False) -> str:
    """The latest enabled version of `secret_id`, as text."""
    now = time.monotonic()
    if not fresh:
        with _cache_lock:
            cached = _cache.get(secret_id)
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
    try:
        response = secret_manager_client().access_secret_version(
            name=f"{_secret_path(secret_id)}/versions/latest"
        )
    except _TRANSIENT as exc:
        raise TransientUpstreamError(f"Secret Manager unavailable reading {secret_id}") from exc
    except gexc.GoogleAPICallError as exc:
        raise PermanentUpstreamError(f"secret {secret_id} cannot be read: {exc.reason}") from exc
    value = response.payload.data.decode("utf-8")
    with _cache_lock:
        _cache[secret_id] = (now, value)
    return value


def add_secret_version(secret_id: str, value: str) -> str:
    """Store `value` as the newest version and disable every older enabled one.

    Disabling (not destroying) keeps a way back if the new value turns out bad.
    Returns the new version's resource name.
    """
    client = secret_manager_client()
    parent = _secret_path(secret_id)
    try:
        version = client.add_secret_version(
            parent=parent, payload=secretmanager.SecretPayload(data=value.encode("utf-8"))
        )
        for old in client.list_secret_versions(
            request={"parent": parent, "filter": "state:ENABLED"}
        ):
            if old.name != version.name:
                client.disable_secret_version(name=old.name)
    except _TRANSIENT as exc:
        raise TransientUpstreamError(f"Secret Manager unavailable writing {secret_id}") from exc
    except gexc.GoogleAPICallError as exc:
        raise PermanentUpstreamError(f"secret {secret_id} cannot be written: {exc.reason}") from exc
    with _cache_lock:
        _cache[secret_id] = (time.monotonic(), value)
    return str(version.name)


def forget_cached_secrets() -> None:
    with _cache_lock:
        _cache.clear()


on_reset(forget_cached_secrets)
