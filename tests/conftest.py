"""Session fixtures: one local stack (Firestore emulator, our emulators, every function).

The stack starts on free loopback ports, so two runs never collide. Between tests the
Firestore data, the emulators' state and every lazily-built client are reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.client import StackClient
from devstack.stack import LocalStack
from shared.clients import reset_clients


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(functions_in_process=True, state_dir=Path(tmp_path_factory.mktemp("stack")))
    local.start()
    yield local
    local.stop()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[StackClient]:
    """A client of the stack, on a clean slate: no documents, events, payments or faults."""
    assert stack.firestore is not None and stack.emulators is not None
    stack.firestore.reset(stack.project_id)
    urls = stack.emulators.urls()
    for name in ("calendar", "mercadopago", "oauth", "secretmanager"):
        base = urls[name].split("/calendar/v3/")[0]
        requests.delete(f"{base}/_emulator/faults", timeout=5)
        requests.post(f"{base}/_emulator/stats/reset", timeout=5)
    requests.post(
        f"{urls['calendar'].split('/calendar/v3/')[0]}/_emulator/calendar/reset", timeout=5
    )
    requests.post(f"{urls['mercadopago']}/_emulator/mercadopago/reset", timeout=5)
    reset_clients()
    yield StackClient(stack.document)
    reset_clients()
