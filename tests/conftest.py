"""Session fixtures: one local stack (Firestore emulator, our emulators, every function).

The stack starts on free loopback ports, so two runs never collide. Between tests the
Firestore data, the emulators' state and every lazily-built client are reset.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from devstack.client import StackClient
from devstack.stack import LocalStack
from shared.adapters.clients import reset_clients, secret_manager_client

Rotate = Callable[[str], str]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Tests change events many times a second and each expects its push's sync at once:
    # the production pace (5 s between sync rounds) is proven by its own tests, which set it.
    os.environ["SYNC_INTERVAL_SECONDS"] = "0.05"
    local = LocalStack(functions_in_process=True, state_dir=Path(tmp_path_factory.mktemp("stack")))
    local.start()
    yield local
    local.stop()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[StackClient]:
    """A client of the stack, on a clean slate: no documents, events, payments or faults."""
    assert stack.firestore is not None and stack.emulators is not None
    urls = stack.emulators.urls()
    bases = {name: url.split("/calendar/v3/")[0] for name, url in urls.items()}
    for base in bases.values():
        requests.delete(f"{base}/_emulator/faults", timeout=5)
    # A refund notifies payment_webhook by itself, in the background. Mercado Pago's reset
    # waits for those deliveries, so it comes before every other reset: nothing a late
    # delivery writes or counts can leak into this test. The webhook destination the stack
    # configured stays; the deliveries log is emptied.
    requests.post(f"{bases['mercadopago']}/_emulator/mercadopago/reset", timeout=60)
    # Cloud Tasks' dispatches may call functions too: its reset also waits for those in
    # flight, then drops every task and the dispatch log; the seeded queue is put back.
    requests.post(f"{bases['cloudtasks']}/_emulator/cloudtasks/reset", timeout=60)
    stack.firestore.reset(stack.project_id)
    for base in bases.values():
        requests.post(f"{base}/_emulator/stats/reset", timeout=5)
    requests.post(f"{bases['calendar']}/_emulator/calendar/reset", timeout=5)
    reset_clients()
    yield StackClient(stack.document)
    reset_clients()


def _stack_secret(client: StackClient, secret_id: str) -> str:
    """The latest value as Secret Manager holds it, without touching the functions' cache."""
    name = f"projects/{client.doc['project_id']}/secrets/{secret_id}/versions/latest"
    return str(secret_manager_client().access_secret_version(name=name).payload.data.decode())


@pytest.fixture
def rotate(stack: LocalStack, client: StackClient) -> Iterator[Rotate]:
    """Adds a new version of one of the stack's secrets, as an operator rotating it would
    (the functions' cache is left warm); the original value is put back afterwards."""
    assert stack.emulators is not None
    originals: dict[str, str] = {}

    def rotate(secret_id: str) -> str:
        originals.setdefault(secret_id, _stack_secret(client, secret_id))
        value = secrets.token_hex(32)
        stack.emulators.secretmanager.seed(stack.project_id, secret_id, value.encode())
        return value

    yield rotate
    for secret_id, value in originals.items():
        stack.emulators.secretmanager.seed(stack.project_id, secret_id, value.encode())
    reset_clients()
