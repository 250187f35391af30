"""Conformance tests of the Secret Manager emulator, driven by the real REST client.

`SecretManagerServiceClient(transport="rest")` is what the functions use; the emulator must
accept exactly what it sends and answer what it parses. Note the REST transport maps errors
by HTTP status only: ALREADY_EXISTS arrives as `Conflict` (409) and FAILED_PRECONDITION as
`BadRequest` (400), never as the `AlreadyExists`/`FailedPrecondition` subclasses that the
gRPC transport raises, so these tests check the `status` in the body as well.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from emulators._base import ServerThread
from emulators.secretmanager import SecretManagerEmulator, crc32c

PROJECT = "classes-test"
PROJECT_NUMBER = "123456789012"
TIMEOUT = 5
State = secretmanager.SecretVersion.State


@pytest.fixture(scope="module")
def emulator() -> SecretManagerEmulator:
    return SecretManagerEmulator(project_numbers={PROJECT: PROJECT_NUMBER})


@pytest.fixture(scope="module")
def server(emulator: SecretManagerEmulator) -> Iterator[ServerThread]:
    thread = ServerThread(emulator.app.app).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def client(server: ServerThread) -> secretmanager.SecretManagerServiceClient:
    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture(autouse=True)
def empty(server: ServerThread) -> None:
    response = requests.post(f"{server.url}/_emulator/secretmanager/reset", timeout=TIMEOUT)
    response.raise_for_status()


def create(client: secretmanager.SecretManagerServiceClient, secret_id: str, **extra: Any) -> Any:
    return client.create_secret(
        request={
            "parent": f"projects/{PROJECT}",
            "secret_id": secret_id,
            "secret": {"replication": {"automatic": {}}, **extra},
        }
    )


def add(client: secretmanager.SecretManagerServiceClient, parent: str, data: bytes) -> Any:
    return client.add_secret_version(
        request={"parent": parent, "payload": {"data": data, "data_crc32c": crc32c(data)}}
    )


def status_of(error: exceptions.GoogleAPICallError) -> str:
    assert error.response is not None
    return str(error.response.json()["error"]["status"])


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_create_get_and_duplicate(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = create(client, "oauth-refresh-token", labels={"team": "calendar"})
    assert secret.name == f"projects/{PROJECT}/secrets/oauth-refresh-token"
    assert secret.labels["team"] == "calendar"
    assert secret.replication.automatic is not None
    assert secret.create_time is not None
    assert client.get_secret(name=secret.name).name == secret.name
    with pytest.raises(exceptions.Conflict) as caught:
        create(client, "oauth-refresh-token")
    assert status_of(caught.value) == "ALREADY_EXISTS"
    assert "already exists" in caught.value.message


def test_replication_is_required(client: secretmanager.SecretManagerServiceClient) -> None:
    with pytest.raises(exceptions.BadRequest):
        client.create_secret(
            request={"parent": f"projects/{PROJECT}", "secret_id": "bare", "secret": {}}
        )


def test_versions_add_access_latest_and_by_number(
    client: secretmanager.SecretManagerServiceClient,
) -> None:
    secret = create(client, "mp-token")
    v1 = add(client, secret.name, b"first")
    v2 = add(client, secret.name, b"second")
    assert v1.name.endswith("/versions/1")
    assert v2.name.endswith("/versions/2")
    assert v2.state == State.ENABLED
    assert v2.client_specified_payload_checksum
    latest = client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.name == v2.name  # the alias resolves to a number
    assert latest.payload.data == b"second"
    assert latest.payload.data_crc32c == crc32c(b"second")
    assert client.access_secret_version(name=v1.name).payload.data == b"first"
    assert client.get_secret_version(name=f"{secret.name}/versions/latest").name == v2.name


def test_checksum_mismatch_is_rejected(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = create(client, "checked")
    with pytest.raises(exceptions.BadRequest) as caught:
        client.add_secret_version(
            request={"parent": secret.name, "payload": {"data": b"x", "data_crc32c": 1}}
        )
    assert status_of(caught.value) == "INVALID_ARGUMENT"


def test_disable_enable_destroy(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = create(client, "webhook-secret")
    v1 = add(client, secret.name, b"one")
    v2 = add(client, secret.name, b"two")
    disabled = client.disable_secret_version(name=v2.name)
    assert disabled.state == State.DISABLED
    with pytest.raises(exceptions.BadRequest) as caught:
        client.access_secret_version(name=v2.name)
    assert status_of(caught.value) == "FAILED_PRECONDITION"
    assert f"Secret Version [{v2.name}] is in DISABLED state." in caught.value.message
    # Upstream, `latest` is the newest version whatever its state: it does not skip.
    with pytest.raises(exceptions.BadRequest) as caught:
        client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert f"[{v2.name}] is in DISABLED state" in caught.value.message
    assert client.enable_secret_version(name=v2.name).state == State.ENABLED
    assert client.access_secret_version(name=v2.name).payload.data == b"two"
    destroyed = client.destroy_secret_version(name=v1.name)
    assert destroyed.state == State.DESTROYED
    assert destroyed.destroy_time is not None
    with pytest.raises(exceptions.BadRequest) as caught:
        client.access_secret_version(name=v1.name)
    assert "is in DESTROYED state" in caught.value.message
    with pytest.raises(exceptions.BadRequest) as caught:
        client.enable_secret_version(name=v1.name)
    assert status_of(caught.value) == "FAILED_PRECONDITION"


def test_latest_skips_disabled_when_asked(server: ServerThread) -> None:
    lenient = SecretManagerEmulator(latest_skips_disabled=True)
    thread = ServerThread(lenient.app.app).start()
    try:
        rest = secretmanager.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": thread.url},
        )
        lenient.seed(PROJECT, "s", b"old")
        newest = lenient.seed(PROJECT, "s", b"new")
        rest.disable_secret_version(name=newest)
        latest = rest.access_secret_version(name=f"projects/{PROJECT}/secrets/s/versions/latest")
        assert latest.payload.data == b"old"
    finally:
        thread.stop()


def test_list_with_filter_and_pages(client: secretmanager.SecretManagerServiceClient) -> None:
    secret = create(client, "rotating")
    names = [add(client, secret.name, f"v{i}".encode()).name for i in range(1, 6)]
    client.disable_secret_version(name=names[1])
    client.destroy_secret_version(name=names[2])
    everything = list(client.list_secret_versions(request={"parent": secret.name, "page_size": 2}))
    assert [v.name for v in everything] == list(reversed(names))  # newest first, 3 pages
    enabled = client.list_secret_versions(
        request={"parent": secret.name, "filter": "state:ENABLED"}
    )
    assert [v.name for v in enabled] == [names[4], names[3], names[0]]
    disabled = client.list_secret_versions(
        request={"parent": secret.name, "filter": "state:DISABLED OR state:DESTROYED"}
    )
    assert [v.state for v in disabled] == [State.DESTROYED, State.DISABLED]
    create(client, "other", labels={"env": "dev"})
    listed = client.list_secrets(
        request={"parent": f"projects/{PROJECT}", "filter": "labels.env=dev"}
    )
    assert [s.name for s in listed] == [f"projects/{PROJECT}/secrets/other"]
    assert len(list(client.list_secrets(request={"parent": f"projects/{PROJECT}"}))) == 2


def test_not_found_and_delete(client: secretmanager.SecretManagerServiceClient) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=f"projects/{PROJECT}/secrets/missing")
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"projects/{PROJECT}/secrets/missing/versions/latest")
    secret = create(client, "short-lived")
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/latest")  # no versions yet
    add(client, secret.name, b"x")
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/7")
    client.delete_secret(name=secret.name)
    with pytest.raises(exceptions.NotFound):
        client.get_secret(name=secret.name)


def test_project_number_and_id_name_the_same_secrets(
    client: secretmanager.SecretManagerServiceClient, emulator: SecretManagerEmulator
) -> None:
    emulator.seed(PROJECT, "shared", b"value")
    by_number = client.access_secret_version(
        name=f"projects/{PROJECT_NUMBER}/secrets/shared/versions/latest"
    )
    assert by_number.name == f"projects/{PROJECT_NUMBER}/secrets/shared/versions/1"
    assert by_number.payload.data == b"value"


def test_seed_control_route(server: ServerThread, client: Any) -> None:
    body = {
        "project": PROJECT,
        "secretId": "seeded",
        "valueBase64": base64.b64encode(b"\x00\x01").decode(),
    }
    response = requests.post(
        f"{server.url}/_emulator/secretmanager/seed", json=body, timeout=TIMEOUT
    )
    assert response.json()["name"] == f"projects/{PROJECT}/secrets/seeded/versions/1"
    got = client.access_secret_version(name=f"projects/{PROJECT}/secrets/seeded/versions/1")
    assert got.payload.data == b"\x00\x01"


def test_errors_have_googles_json_shape(server: ServerThread) -> None:
    response = requests.get(
        f"{server.url}/v1/projects/{PROJECT}/secrets/nope/versions/1:access", timeout=TIMEOUT
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == 404
    assert error["status"] == "NOT_FOUND"
    assert "nope" in error["message"]


def test_regional_secrets(client: secretmanager.SecretManagerServiceClient) -> None:
    parent = f"projects/{PROJECT}/locations/southamerica-east1"
    secret = client.create_secret(request={"parent": parent, "secret_id": "r", "secret": {}})
    assert secret.name == f"{parent}/secrets/r"
    version = add(client, secret.name, b"regional")
    assert client.access_secret_version(name=version.name).payload.data == b"regional"
    assert [s.name for s in client.list_secrets(request={"parent": parent})] == [secret.name]
    assert list(client.list_secrets(request={"parent": f"projects/{PROJECT}"})) == []
