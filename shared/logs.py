"""Structured JSON log lines that Cloud Logging parses (severity, message, labels, trace).

Functions write one JSON object per line to stdout; Cloud Logging lifts `severity`,
`message` and `logging.googleapis.com/trace` out of it. Callers pass only ids and outcomes:
nothing here ever receives a token or a secret, and `_redact` is a last line of defence.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["bind", "error", "info", "log", "request_context", "trace_field", "warning"]

_lock = threading.Lock()
_request_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "request_fields", default=None
)
_SECRETISH = re.compile(r"(token|secret|password|authorization|signature|key)", re.IGNORECASE)


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if _SECRETISH.search(k) else v) for k, v in fields.items()}


def trace_field(trace_header: str | None, project: str) -> dict[str, str]:
    """Map `X-Cloud-Trace-Context: TRACE/SPAN;o=1` to the field Cloud Logging links (the
    project comes from the caller: the settings log through this module)."""
    if not trace_header:
        return {}
    trace_id = trace_header.split("/", 1)[0].strip()
    if not trace_id or not project:
        return {}
    return {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}"}


@contextlib.contextmanager
def request_context(trace_header: str | None, project: str) -> Iterator[None]:
    """Within one request, every line carries its trace and the ids `bind` added."""
    token = _request_fields.set(trace_field(trace_header, project))
    try:
        yield
    finally:
        _request_fields.reset(token)


def bind(**fields: Any) -> None:
    """Add ids (booking, payment, channel...) to every later line of this request."""
    current = _request_fields.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v not in (None, "")})


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one structured line; `fields` are ids, outcomes and durations, never secrets."""
    entry: dict[str, Any] = {
        "severity": severity,
        "message": message,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **_redact({**(_request_fields.get() or {}), **fields}),
    }
    line = json.dumps(entry, default=str, ensure_ascii=False)
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
