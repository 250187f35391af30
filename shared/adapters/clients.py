"""One client per upstream, built lazily once per instance.

Cloud Functions reuses an instance across requests, so clients are built on first use (not
at import time, which would slow cold starts and break tests that set the environment
first) and kept. `reset_clients()` drops them all; tests call it from one fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, secretmanager, tasks_v2

from shared.config import get_settings

__all__ = [
    "cloud_tasks_client",
    "firestore_client",
    "http_session",
    "lazy",
    "on_reset",
    "reset_clients",
    "secret_manager_client",
]


_lock = threading.RLock()
_instances: dict[str, Any] = {}
_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> None:
    """Run `hook` in `reset_clients()` too (for per-instance caches kept elsewhere)."""
    _reset_hooks.append(hook)


def lazy[T](name: str, build: Callable[[], T]) -> T:
    """Build `name` once per instance, thread-safely, and return the same object after."""
    instance = _instances.get(name)
    if instance is None:
        with _lock:
            instance = _instances.get(name)
            if instance is None:
                instance = build()
                _instances[name] = instance
    return instance


def reset_clients() -> None:
    """Forget every client (and the settings they were built from)."""
    with _lock:
        _instances.clear()
    for hook in _reset_hooks:
        hook()
    get_settings.cache_clear()


def firestore_client() -> firestore.Client:
    def build() -> firestore.Client:
        settings = get_settings()
        return firestore.Client(project=settings.project_id, database=settings.firestore_database)

    return lazy("firestore", build)


def secret_manager_client() -> secretmanager.SecretManagerServiceClient:
    """REST transport: the same client works against Google and the local emulator."""

    def build() -> secretmanager.SecretManagerServiceClient:
        settings = get_settings()
        if settings.secret_manager_endpoint:
            return secretmanager.SecretManagerServiceClient(
                transport="rest",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options=ClientOptions(api_endpoint=settings.secret_manager_endpoint),
            )
        return secretmanager.SecretManagerServiceClient(transport="rest")

    return lazy("secretmanager", build)


def cloud_tasks_client() -> tasks_v2.CloudTasksClient:
    """REST transport: the same client works against Google and the local emulator."""

    def build() -> tasks_v2.CloudTasksClient:
        endpoint = get_settings().cloud_tasks_endpoint
        if endpoint:
            return tasks_v2.CloudTasksClient(
                transport="rest",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options=ClientOptions(api_endpoint=endpoint),
            )
        return tasks_v2.CloudTasksClient(transport="rest")

    return lazy("cloudtasks", build)


def http_session() -> requests.Session:
    """A pooled HTTP session for plain REST upstreams (Mercado Pago)."""

    def build() -> requests.Session:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    return lazy("http", build)
