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
    urls = stack.emulators.urls()
    bases = {name: url.split("/calendar/v3/")[0] for name, url in urls.items()}
    for base in bases.values():
        requests.delete(f"{base}/_emulator/faults", timeout=5)
    # A refund notifies payment_webhook by itself, in the background. Mercado Pago's reset
    # waits for those deliveries, so it comes before every other reset: nothing a late
    # delivery writes or counts can leak into this test. The webhook destination the stack
    # configured stays; the deliveries log is emptied.
    requests.post(f"{bases['mercadopago']}/_emulator/mercadopago/reset", timeout=60)
    stack.firestore.reset(stack.project_id)
    for base in bases.values():
        requests.post(f"{base}/_emulator/stats/reset", timeout=5)
    requests.post(f"{bases['calendar']}/_emulator/calendar/reset", timeout=5)
    reset_clients()
    yield StackClient(stack.document)
    reset_clients()
