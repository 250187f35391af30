"""What every local emulator shares: a Flask app, fault injection, call counters, a server.

Each emulator builds an `EmulatorApp`, adds its own routes to `.app`, and supplies an
`error_body(status, reason, message)` function shaped like its upstream's errors. The
control routes live under `/_emulator/` and are never part of the emulated API:

- `GET  /_emulator/stats`   -> {"calls": {"METHOD /path-template": n, ...}, "total": n}
- `POST /_emulator/stats/reset`
- `POST /_emulator/faults`  {"latencyMs": 0, "rules": [rule, ...]} replaces the fault plan.
  A rule: {"status": 503, "reason": "backendError", "rate": 1.0, "count": 3,
  "method": "POST", "pathContains": "/events", "latencyMs": 0, "dropResponse": false}.
  `count` limits how many requests the rule hits (absent: unlimited); `rate` is the chance
  a matching request is hit; `dropResponse` lets the request be processed (the write
  commits) and then closes the connection without an answer.
- `DELETE /_emulator/faults` clears the plan.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, make_server

ErrorBody = Callable[[int, str, str], dict[str, Any]]


@dataclass
class FaultRule:
    status: int | None = None
    reason: str = ""
    rate: float = 1.0
    count: int | None = None
    method: str = ""
    path_contains: str = ""
    latency_ms: int = 0
    drop_response: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FaultRule:
        return cls(
            status=raw.get("status"),
            reason=str(raw.get("reason", "")),
            rate=float(raw.get("rate", 1.0)),
            count=raw.get("count"),
            method=str(raw.get("method", "")).upper(),
            path_contains=str(raw.get("pathContains", "")),
            latency_ms=int(raw.get("latencyMs", 0)),
            drop_response=bool(raw.get("dropResponse", False)),
        )

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.method and self.method != method:
            return False
        return not (self.path_contains and self.path_contains not in path)


class FaultPlan:
    """Thread-safe fault plan: decides, per request, what goes wrong."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency_ms = 0
        self.rules: list[FaultRule] = []
        self._random = random.Random(7)

    def replace(self, raw: dict[str, Any]) -> None:
        with self._lock:
            self.latency_ms = int(raw.get("latencyMs", 0))
            self.rules = [FaultRule.from_json(r) for r in raw.get("rules", [])]

    def clear(self) -> None:
        self.replace({})

    def pick(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path) and self._random.random() < rule.rate:
                    if rule.count is not None:
                        rule.count -= 1
                    return rule
        return None


class EmulatorApp:
    """A Flask app with the shared control routes, faults and counters."""

    def __init__(self, name: str, error_body: ErrorBody) -> None:
        self.name = name
        self.app = Flask(name)
        self.app.json.sort_keys = False  # type: ignore[attr-defined]
        self.error_body = error_body
        self.faults = FaultPlan()
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._install_control_routes()
        self._install_hooks()

    # -- helpers for emulator routes -------------------------------------------------
    def error(self, status: int, reason: str, message: str) -> Response:
        return json_response(self.error_body(status, reason, message), status)

    # -- internals --------------------------------------------------------------------
    def _install_control_routes(self) -> None:
        app = self.app

        @app.get("/_emulator/stats")
        def stats() -> Response:
            with self._calls_lock:
                calls = dict(self.calls)
            return json_response({"calls": calls, "total": sum(calls.values())})

        @app.post("/_emulator/stats/reset")
        def reset_stats() -> Response:
            with self._calls_lock:
                self.calls.clear()
            return json_response({})

        @app.post("/_emulator/faults")
        def set_faults() -> Response:
            self.faults.replace(request.get_json(force=True) or {})
            return json_response({})

        @app.delete("/_emulator/faults")
        def clear_faults() -> Response:
            self.faults.clear()
            return json_response({})

    def _install_hooks(self) -> None:
        app = self.app

        @app.before_request
        def inject_faults() -> Response | None:
            if request.path.startswith("/_emulator/"):
                return None
            rule_key = (
                f"{request.method} {request.url_rule.rule if request.url_rule else request.path}"
            )
            with self._calls_lock:
                self.calls[rule_key] += 1
            if self.faults.latency_ms:
                time.sleep(self.faults.latency_ms / 1000)
            rule = self.faults.pick(request.method, request.path)
            if rule is None:
                return None
            if rule.latency_ms:
                time.sleep(rule.latency_ms / 1000)
            if rule.drop_response:
                request.environ["emulator.drop_response"] = True
                return None
            if rule.status:
                reason = rule.reason or "backendError"
                return self.error(rule.status, reason, f"Injected fault: {reason}")
            return None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


class _DropResponseMiddleware:
    """Runs the request to completion, then closes the socket instead of answering."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        result = self.wsgi_app(environ, start_response)
        if not environ.get("emulator.drop_response"):
            return result
        body = b"".join(result)  # let the handler finish its work: the write is committed
        del body
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return []


class ServerThread:
    """Serves a WSGI app on 127.0.0.1 in a daemon thread (threaded, like production)."""

    def __init__(self, wsgi_app: Any, port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", port, _DropResponseMiddleware(wsgi_app), threaded=True
        )
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
