"""Counting upstream round trips for benchmarks, at the client library's RPC boundary.

The Firestore emulator has no call counter of its own, so a benchmark counts the RPCs the
GAPIC client issues (`batch_get_documents`, `commit`, `run_query`...). Only benchmarks use
this; tests prove behaviour, not call counts.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from google.cloud import firestore

_RPCS = (
    "batch_get_documents",
    "begin_transaction",
    "commit",
    "rollback",
    "run_query",
    "run_aggregation_query",
    "batch_write",
    "get_document",
    "list_documents",
)


@contextlib.contextmanager
def firestore_rpcs(client: firestore.Client) -> Iterator[Counter[str]]:
    """Count the Firestore RPCs `client` makes inside the block."""
    api: Any = client._firestore_api
    counts: Counter[str] = Counter()
    originals = {name: getattr(api, name) for name in _RPCS}

    def counting(name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(api, name, counting(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(api, name, original)
