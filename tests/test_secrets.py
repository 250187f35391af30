"""Secret Manager access through the production REST client, against the emulator."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable

import pytest
import requests

from devstack.client import StackClient
from shared.adapters import secret_manager
from shared.adapters.clients import secret_manager_client
from shared.adapters.secret_manager import add_secret_version, matching_secret, read_secret

Rotate = Callable[[str], str]
"""The `rotate` fixture: a new version of a stack secret, returned."""


@pytest.fixture
def secret(client: StackClient) -> str:
    """A secret of its own, so the stack's real ones stay as seeded."""
    secret_id = f"test-{uuid.uuid4().hex[:8]}"
    secret_manager_client().create_secret(
        request={
            "parent": f"projects/{client.doc['project_id']}",
            "secret_id": secret_id,
            "secret": {"replication": {"automatic": {}}},
        }
    )
    return secret_id


def _enabled_versions(client: StackClient, secret_id: str) -> list[str]:
    parent = f"projects/{client.doc['project_id']}/secrets/{secret_id}"
    versions = secret_manager_client().list_secret_versions(
        request={"parent": parent, "filter": "state:ENABLED"}
    )
    return [v.name for v in versions]


def test_new_version_disables_the_older_ones(client: StackClient, secret: str) -> None:
    add_secret_version(secret, "first")
    name = add_secret_version(secret, "second")

    assert _enabled_versions(client, secret) == [name]
    assert read_secret(secret, fresh=True) == "second"


def test_two_instances_storing_at_once_leave_the_newest_enabled(
    client: StackClient, secret: str
) -> None:
    for _ in range(5):  # the race needs both to list before either disables
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            names = list(pool.map(lambda v: add_secret_version(secret, v), ["a", "b"]))

        newest = max(names, key=lambda n: int(n.rsplit("/", 1)[-1]))
        assert newest in _enabled_versions(client, secret)
        assert read_secret(secret, fresh=True) in ("a", "b")


def test_secret_values_are_read_without_surrounding_whitespace(secret: str) -> None:
    add_secret_version(secret, "padded\n")

    assert read_secret(secret, fresh=True) == "padded"


# -- a rotated secret on a warm instance ---------------------------------------------------


def _secret_reads(client: StackClient) -> int:
    return sum(n for call, n in client.stats("secretmanager").items() if call.endswith(":access"))


def test_a_rotated_webhook_secret_is_accepted_by_a_warm_instance(
    client: StackClient, rotate: Rotate
) -> None:
    warm = client.create_payment(client.seed_booking())
    assert client.notify(warm["id"])["status"] == 200  # the old secret is now cached
    new_secret = rotate("mercadopago-webhook-secret")
    booking_id = client.seed_booking()
    payment = client.create_payment(booking_id)

    delivery = client.notify(payment["id"], secret=new_secret)

    assert delivery["status"] == 200
    assert client.booking(booking_id)["status"] == "scheduled"


def test_a_rotated_admin_api_key_is_accepted_by_a_warm_instance(
    client: StackClient, rotate: Rotate
) -> None:
    url = client.doc["functions"]["list_events"]
    old_key = client.doc["secrets"]["admin_api_key"]
    assert requests.get(url, headers={"X-API-Key": old_key}, timeout=30).status_code == 200
    new_key = rotate("admin-api-key")

    answer = requests.get(url, headers={"X-API-Key": new_key}, timeout=30)

    assert answer.status_code == 200, answer.text


def test_forged_signatures_re_read_the_webhook_secret_at_most_once_per_interval(
    client: StackClient,
) -> None:
    read_secret("mercadopago-webhook-secret")  # a warm instance
    client.reset_stats("secretmanager")
    ts = str(int(time.time()))

    answers = []
    for attempt in range(10):
        manifest = f"id:{attempt + 1};request-id:r1;ts:{ts};"
        forged = hmac.new(b"guessed", manifest.encode(), hashlib.sha256).hexdigest()
        answers.append(
            requests.post(
                client.doc["functions"]["payment_webhook"],
                params={"data.id": str(attempt + 1), "type": "payment"},
                json={"type": "payment", "data": {"id": str(attempt + 1)}},
                headers={"x-request-id": "r1", "x-signature": f"ts={ts},v1={forged}"},
                timeout=10,
            ).status_code
        )

    assert answers == [401] * 10
    assert _secret_reads(client) == 1


def test_a_mismatch_reads_the_secret_again_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored, cached = ["old"], ["old"]  # Secret Manager, and the instance's cache of it
    reads: list[bool] = []

    def fake_read(secret_id: str, deadline: object = None, *, fresh: bool = False) -> str:
        reads.append(fresh)
        if fresh:
            cached[0] = stored[0]
        return cached[0]

    clock = [1000.0]
    monkeypatch.setattr(secret_manager, "read_secret", fake_read)
    monkeypatch.setattr(secret_manager.time, "monotonic", lambda: clock[0])
    secret_manager.forget_cached_secrets()

    assert matching_secret("s", lambda v: v == "old") == "old"
    assert reads == [False]  # a match costs no fresh read
    stored[0] = "new"  # rotated: the cache still answers "old"
    assert matching_secret("s", lambda v: v == "forged") is None
    assert reads == [False, False, True]  # one fresh read for the mismatch
    assert matching_secret("s", lambda v: v == "new") == "new"  # the cache holds it now
    stored[0] = "newer"
    assert matching_secret("s", lambda v: v == "newer") is None
    assert reads == [False, False, True, False, False]  # within the interval: no fresh read
    clock[0] += secret_manager.MISMATCH_REFRESH_SECONDS
    assert matching_secret("s", lambda v: v == "newer") == "newer"
    assert reads[-2:] == [False, True]
    secret_manager.forget_cached_secrets()


def test_after_secret_manager_fails_reads_fail_fast_for_a_while(client: StackClient) -> None:
    """A burst of deliveries during an outage must not each wait out the whole budget."""
    from shared.clock import Deadline
    from shared.errors import TransientUpstreamError

    client.set_faults("secretmanager", {"rules": [{"status": 503}]})
    with pytest.raises(TransientUpstreamError):
        read_secret("admin-api-key", Deadline(1.5))
    started = time.monotonic()
    with pytest.raises(TransientUpstreamError):
        read_secret("admin-api-key", Deadline(1.5))
    assert time.monotonic() - started < 0.1
