"""The one HTTP-to-gRPC status table every emulator's errors are named from.

Why one table: Google's JSON errors carry the HTTP status and the canonical gRPC status name
side by side (`{"error": {"code": 404, "status": "NOT_FOUND", ...}}`). google.rpc.Code maps
each name to one HTTP status, but the way back is ambiguous (400, 409 and 500 each stand for
several names), and the emulators used to keep copies of it that disagreed on 409. Here each
HTTP status has the name an error carries when its call site names none:

- 400 is INVALID_ARGUMENT; FAILED_PRECONDITION and OUT_OF_RANGE are named where they apply.
- 409 is ALREADY_EXISTS: every 409 an emulator answers on its own is a create that collided
  (a Calendar event id, a Cloud Tasks task or queue, a secret). ABORTED, a concurrency
  conflict, is named where it is meant: Cloud Tasks reads a worker's bare 409 that way, as
  Google's own HTTP-to-canonical conversion does.
- 410 and 412 are FAILED_PRECONDITION: Google names no status for 410 (Calendar's
  `fullSyncRequired`, `deleted`), and it is where that conversion puts any other 4xx.

`GRPC_CODES` gives the numbers a `google.rpc.Status` carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

HTTP_TO_GRPC: Mapping[int, str] = MappingProxyType(
    {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        410: "FAILED_PRECONDITION",
        412: "FAILED_PRECONDITION",
        429: "RESOURCE_EXHAUSTED",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
)
GRPC_CODES: Mapping[str, int] = MappingProxyType(
    {
        "OK": 0,
        "CANCELLED": 1,
        "UNKNOWN": 2,
        "INVALID_ARGUMENT": 3,
        "DEADLINE_EXCEEDED": 4,
        "NOT_FOUND": 5,
        "ALREADY_EXISTS": 6,
        "PERMISSION_DENIED": 7,
        "RESOURCE_EXHAUSTED": 8,
        "FAILED_PRECONDITION": 9,
        "ABORTED": 10,
        "OUT_OF_RANGE": 11,
        "UNIMPLEMENTED": 12,
        "INTERNAL": 13,
        "UNAVAILABLE": 14,
        "DATA_LOSS": 15,
        "UNAUTHENTICATED": 16,
    }
)


def grpc_status(status: int, name: str = "") -> str:
    """`name` when the call site chose a gRPC status name, else the table's, else UNKNOWN.

    An injected fault's `reason` may name one too: `{"status": 409, "reason": "ABORTED"}`.
    """
    if name in GRPC_CODES and name != "OK":  # an error is never OK
        return name
    return HTTP_TO_GRPC.get(status, "UNKNOWN")


__all__ = ["GRPC_CODES", "HTTP_TO_GRPC", "grpc_status"]
