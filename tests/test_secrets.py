"""Secret Manager access through the production REST client, against the emulator."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest

from devstack.client import StackClient
from shared.clients import secret_manager_client
from shared.secrets import add_secret_version, read_secret


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
