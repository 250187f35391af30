"""Part 2, fuzz: requests generated from docs/openapi.yaml, then a table of hostile ones.

Schemathesis builds Hypothesis strategies from the document, one per operation; each
function gets `cases` generated requests (split evenly over its operations), a quarter in
each of four modes: inputs that follow the document or that break it (schemathesis'
positive and negative generation), each sent with whatever credentials were generated
(random API keys, bearer tokens, signatures) or with valid ones: the admin API key; for
`payment_webhook` an `x-signature` computed with the webhook secret over the generated
`data.id` and `x-request-id`; for `calendar_notifications` the live channel's id and token;
for `oauth_callback` a fresh `state` from `oauth_start`.

Then a hand-made table of hostile inputs: malformed ids and headers, non-ASCII digits,
extreme dates, JSON nested tens of thousands deep, bodies of 10 MB (with and without a
length), and stalled uploads (a body promised and never sent, as many at once as the
function's deployed concurrency, while a normal request is timed).

Figure: answers by status per function; every 5xx but 503 is a failure, listed with a curl
command that reproduces it. A 503 is expected only while an upstream is down; none is here.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.structures import CaseInsensitiveDict
from schemathesis.generation import GenerationMode

from devstack.stack import OPENAPI
from devstack.when import iso
from proof.harness import ProofStack, http_session, infra_settings

ADMIN = {"list_events", "oauth_start", "renew_watch", "reconcile", "manage_booking"}
ADMIN |= {"class_sessions"}
# calendar_notifications before renew_watch: renew_watch?force=1 replaces the channel.
ORDER = [
    "payment_webhook",
    "calendar_notifications",
    "list_events",
    "manage_booking",
    "class_sessions",
    "oauth_start",
    "oauth_callback",
    "reconcile",
    "renew_watch",
]


@dataclass
class Outcome:
    function: str
    source: str
    status: int | None
    seconds: float
    reproduce: str = ""
    error: str | None = None


@dataclass
class FuzzResults:
    outcomes: list[Outcome] = field(default_factory=list)
    generated: Counter[str] = field(default_factory=Counter)
    undocumented: Counter[str] = field(default_factory=Counter)
    undocumented_samples: list[str] = field(default_factory=list)
    hostile_rows: list[dict[str, Any]] = field(default_factory=list)
    stalls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


class Fuzzer:
    def __init__(self, stack: ProofStack, cases: int, stalled: int | None) -> None:
        self.stack = stack
        self.cases = cases
        self.stalled = stalled
        self.doc = stack.document
        self.http = http_session()
        self.schema = schemathesis.openapi.from_path(OPENAPI)
        self.document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
        self.results = FuzzResults()

    # -- credentials ---------------------------------------------------------------------
    def _valid_credentials(self, function: str, case: schemathesis.Case[Any]) -> None:
        headers: dict[str, Any] = dict(case.headers or {})
        if function in ADMIN:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["X-API-Key"] = self.doc["secrets"]["admin_api_key"]
        elif function == "payment_webhook":
            query = dict(case.query or {})
            data_id = str(query.get("data.id", ""))
            request_id = str(headers.get("x-request-id") or uuid.uuid4())
            ts = str(int(time.time()))
            manifest = f"id:{data_id};request-id:{request_id};ts:{ts};"
            secret = self.doc["secrets"]["mercadopago_webhook_secret"].encode()
            v1 = hmac.new(secret, manifest.encode(), hashlib.sha256).hexdigest()
            headers["x-request-id"] = request_id
            headers["x-signature"] = f"ts={ts},v1={v1}"
        elif function == "calendar_notifications":
            channel = self._live_channel()
            if channel:
                headers["X-Goog-Channel-ID"] = channel["id"]
                headers["X-Goog-Channel-Token"] = channel.get("token", "")
        elif function == "oauth_callback":
            query = dict(case.query or {})
            query["state"] = self._fresh_state()
            case.query = query
        case.headers = CaseInsensitiveDict(headers)

    def _live_channel(self) -> dict[str, Any] | None:
        base = str(self.doc["emulators"]["calendar"]).split("/calendar/v3/")[0]
        channels = self.http.get(f"{base}/_emulator/calendar/channels", timeout=10).json()
        return channels[-1] if channels else None

    def _fresh_state(self) -> str:
        answer = self.http.get(
            self.doc["functions"]["oauth_start"],
            headers={**self.stack.admin_headers, "Accept": "application/json"},
            timeout=30,
        )
        if answer.status_code != 200:
            return ""
        url = str(answer.json()["authorizationUrl"])
        return parse_qs(urlsplit(url).query).get("state", [""])[0]

    # -- generated cases -----------------------------------------------------------------
    def _documented(self, path: str, method: str) -> set[str]:
        return set(self.document["paths"][path][method.lower()]["responses"])

    def generated(self) -> None:
        by_function: dict[str, list[tuple[str, str]]] = {}
        for path, item in self.document["paths"].items():
            for method in item:
                by_function.setdefault(path.strip("/"), []).append((path, method.upper()))
        for function in ORDER:
            operations = by_function.get(function, [])
            share = -(-self.cases // (4 * len(operations))) if operations else 0
            for path, method in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    for valid in (False, True):
                        self._run_operation(function, path, method, mode, valid, share)

    def _run_operation(
        self,
        function: str,
        path: str,
        method: str,
        mode: GenerationMode,
        valid: bool,
        examples: int,
    ) -> None:
        operation = self.schema[path][method]
        base_url = self.doc["functions"][function].removesuffix(path)
        documented = self._documented(path, method)
        source = f"{mode.value}, {'valid' if valid else 'generated'} credentials"

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case: schemathesis.Case[Any]) -> None:
            started = time.monotonic()
            try:
                if valid:
                    self._valid_credentials(function, case)
                response = case.call(base_url=base_url, session=self.http, timeout=30)
                status: int | None = response.status_code
                error = None
            except Exception as exc:  # recorded as a failure, never raised into Hypothesis
                status, error = None, f"{type(exc).__name__}: {str(exc)[:200]}"
            seconds = time.monotonic() - started
            with self.results.lock:
                self.results.generated[function] += 1
            reproduce = ""
            if status is None or status >= 500:
                reproduce = _curl(case, base_url)
            self.results.add(Outcome(function, source, status, seconds, reproduce, error))
            if status is not None and str(status) not in documented:
                with self.results.lock:
                    self.results.undocumented[function] += 1
                    if len(self.results.undocumented_samples) < 10:
                        self.results.undocumented_samples.append(
                            f"{function} {status}: {_curl(case, base_url)}"
                        )

        with contextlib.suppress(Unsatisfiable):
            send()

    # -- hostile inputs ------------------------------------------------------------------
    def hostile(self) -> None:
        for row in hostile_table(self):
            started = time.monotonic()
            try:
                status: int | None = row.send(self)
                error = None
            except (OSError, requests.RequestException) as exc:
                status, error = None, f"{type(exc).__name__}: {str(exc)[:120]}"
            seconds = time.monotonic() - started
            self.results.add(Outcome(row.function, "hostile", status, seconds, row.name, error))
            self.results.hostile_rows.append(
                {
                    "name": row.name,
                    "function": row.function,
                    "status": status if status is not None else error,
                    "seconds": round(seconds, 2),
                }
            )

    def stalls_test(self) -> None:
        """`stalled` uploads at once (None: the function's deployed concurrency; 0: none)."""
        if self.stalled == 0:
            return
        concurrency = {name: int(fn["concurrency"]) for name, fn in infra_settings().items()}
        for function in ("payment_webhook", "manage_booking"):
            count = self.stalled or concurrency[function]
            self.results.stalls.append(stalled_uploads(self, function, count))

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        self.generated()
        self.hostile()
        self.stalls_test()
        figures = self.figures()
        figures["seconds"] = round(time.monotonic() - began, 1)
        return figures

    def figures(self) -> dict[str, Any]:
        by_function: dict[str, Counter[str]] = {}
        for outcome in self.results.outcomes:
            label = str(outcome.status) if outcome.status is not None else "no answer"
            by_function.setdefault(outcome.function, Counter())[label] += 1
        bad = [
            o
            for o in self.results.outcomes
            if o.status is None or (o.status >= 500 and o.status != 503)
        ]
        unavailable = [o for o in self.results.outcomes if o.status == 503]
        return {
            "generatedPerFunction": dict(self.results.generated),
            "hostileCases": len(self.results.hostile_rows),
            "answersByFunction": {
                fn: dict(sorted(c.items())) for fn, c in sorted(by_function.items())
            },
            "fivexxPerFunction": {
                fn: sum(n for s, n in c.items() if s.startswith("5") and s != "503")
                for fn, c in sorted(by_function.items())
            },
            "unavailablePerFunction": dict(Counter(o.function for o in unavailable)),
            "failures503": [f"{o.function} ({o.source}): {o.reproduce}" for o in unavailable][:5],
            "fivexxSamples": [
                f"{o.function} ({o.source}) -> {o.status or o.error}: {o.reproduce}"
                for o in bad[:20]
            ],
            "fivexxOrNoAnswer": len(bad),
            "undocumentedStatus": dict(self.results.undocumented),
            "undocumentedSamples": self.results.undocumented_samples,
            "hostile": self.results.hostile_rows,
            "stalledUploads": self.results.stalls,
            "slowestSeconds": round(max((o.seconds for o in self.results.outcomes), default=0), 2),
        }


def _curl(case: schemathesis.Case[Any], base_url: str) -> str:
    try:
        command = case.as_curl_command(base_url=base_url)
    except Exception as exc:  # a body curl cannot carry, for instance
        return f"(no curl command: {type(exc).__name__})"
    return command if len(command) <= 600 else command[:600] + " …"


# -- the hostile table -----------------------------------------------------------------------


@dataclass
class Hostile:
    name: str
    function: str
    send: Callable[[Fuzzer], int]
    """Sends the request; returns the answer's status (raises OSError when there is none)."""


def _signed(fuzzer: Fuzzer, data_id: str, ts: str | None = None) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    ts = ts or str(int(time.time()))
    manifest = f"id:{data_id};request-id:{request_id};ts:{ts};"
    secret = fuzzer.doc["secrets"]["mercadopago_webhook_secret"].encode()
    v1 = hmac.new(secret, manifest.encode(), hashlib.sha256).hexdigest()
    return {"x-request-id": request_id, "x-signature": f"ts={ts},v1={v1}"}


def _request(
    function: str,
    method: str = "POST",
    admin: bool = False,
    headers: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Callable[[Fuzzer], int]:
    def send(fuzzer: Fuzzer) -> int:
        sent = {**(fuzzer.stack.admin_headers if admin else {}), **(headers or {})}
        url = fuzzer.doc["functions"][function]
        return fuzzer.http.request(method, url, headers=sent, timeout=60, **kwargs).status_code

    return send


def _upload(
    function: str, query: str, size: int, *, chunked: bool, admin: bool = False
) -> Callable[[Fuzzer], int]:
    """A body of `size` bytes over a raw socket, so an answer sent before the body is read
    (413) is still seen when the server then closes the connection."""

    def send(fuzzer: Fuzzer) -> int:
        url = urlsplit(fuzzer.doc["functions"][function])
        head = [f"POST {url.path}?{query} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
        head.append("Content-Type: application/json")
        if admin:
            head += [f"{k}: {v}" for k, v in fuzzer.stack.admin_headers.items()]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
        with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            chunk = b"[" + b" " * 65535
            try:
                for _ in range(size // len(chunk)):
                    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
                    sock.sendall(frame)
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server stopped reading: its answer may be waiting
            status_line = sock.makefile("rb").readline().decode("latin-1")
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise OSError(f"no answer (got {status_line[:40]!r})")
        return int(parts[1])

    return send


def _webhook_signed(
    data_id: str, body: bytes | None = None, ts: str | None = None
) -> Callable[[Fuzzer], int]:
    def send(fuzzer: Fuzzer) -> int:
        headers = {**_signed(fuzzer, data_id, ts), "Content-Type": "application/json"}
        payload = (
            body
            if body is not None
            else json.dumps(
                {"type": "payment", "action": "payment.updated", "data": {"id": data_id}}
            ).encode()
        )
        return fuzzer.http.post(
            fuzzer.doc["functions"]["payment_webhook"],
            params={"data.id": data_id, "type": "payment"},
            data=payload,
            headers=headers,
            timeout=60,
        ).status_code

    return send


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _nested_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


TEN_MB = 10 * 1024 * 1024
SESSION_DAY = 161
"""Days from today to the hostile table's group session: a class that has not happened yet."""
NO_SUCH_DAY = "2027-02-30T10:00:00"
"""Not a class date: a date in form only (February has no 30th), so the year does not matter."""
NO_SUCH_MONTH = "2026-13-01T00:00:00-03:00"
"""Not a class date: a date in form only (there is no month 13)."""


def hostile_table(fuzzer: Fuzzer) -> list[Hostile]:
    wh = "payment_webhook"
    ipn = {"topic": "payment"}
    rows = [
        # -- malformed and non-ASCII ids
        Hostile(
            "IPN id in Arabic-Indic digits",
            wh,
            _request(wh, params={**ipn, "id": "\u0661\u0662\u0663"}),
        ),
        Hostile("IPN id '²' (a digit to str.isdigit)", wh, _request(wh, params={**ipn, "id": "²"})),
        Hostile("webhook data.id in full-width digits", wh, _webhook_signed("\uff11\uff12\uff13")),
        Hostile("IPN id of 10,000 digits", wh, _request(wh, params={**ipn, "id": "9" * 10000})),
        Hostile("IPN id path traversal", wh, _request(wh, params={**ipn, "id": "../../1"})),
        Hostile("IPN id with a NUL byte", wh, _request(wh, params={**ipn, "id": "1\x00"})),
        Hostile("IPN id negative", wh, _request(wh, params={**ipn, "id": "-1"})),
        Hostile(
            "data.id twice (1 and 2)",
            wh,
            _request(wh, params=[("data.id", "1"), ("data.id", "2"), ("type", "payment")]),
        ),
        # -- malformed headers
        Hostile(
            "x-signature with a Latin-1 byte",
            wh,
            _request(
                wh,
                params={"data.id": "1", "type": "payment"},
                headers={"x-signature": "ts=1700000000,v1=\xe9".encode("latin-1")},
            ),
        ),
        Hostile(
            "x-signature of 8 KB",
            wh,
            _request(
                wh,
                params={"data.id": "1", "type": "payment"},
                headers={"x-signature": "ts=1," + "v1=" + "a" * 8192},
            ),
        ),
        Hostile(
            "x-signature ts in Arabic-Indic digits",
            wh,
            _request(
                wh,
                params={"data.id": "1", "type": "payment"},
                headers={
                    "x-signature": ("ts=\u0661\u0667" + "\u0660" * 8 + ",v1=" + "a" * 64).encode()
                },
            ),
        ),
        Hostile(
            "signature valid, ts in the year 9999", wh, _webhook_signed("1", ts="253402300799")
        ),
        Hostile("signature valid, ts of 400 digits", wh, _webhook_signed("1", ts="9" * 400)),
        # -- bodies
        Hostile(
            "webhook body nested 30,000 deep (signed)",
            wh,
            _webhook_signed("1", body=b'{"type":"payment","data":' + _nested(30000) + b"}"),
        ),
        Hostile(
            "webhook body nested objects 10,000 deep (signed)",
            wh,
            _webhook_signed("1", body=_nested_object(10000)),
        ),
        Hostile("webhook body not JSON (signed)", wh, _webhook_signed("1", body=b"\xff\xfe{")),
        Hostile(
            "webhook body of 10 MB with Content-Length",
            wh,
            _upload(wh, "topic=payment&id=1", TEN_MB, chunked=False),
        ),
        Hostile(
            "webhook body of 10 MB chunked (no length)",
            wh,
            _upload(wh, "topic=payment&id=1", TEN_MB, chunked=True),
        ),
        Hostile(
            "webhook Content-Type utf-16 JSON (signed)",
            wh,
            _webhook_signed("1", body=json.dumps({"data": {"id": "1"}}).encode("utf-16")),
        ),
        Hostile("webhook with GET", wh, _request(wh, "GET", params=ipn | {"id": "1"})),
        Hostile("webhook with DELETE", wh, _request(wh, "DELETE")),
    ]
    mb = "manage_booking"
    for name, booking_id in [
        ("bookingId 'a/b'", "a/b"),
        ("bookingId '..'", ".."),
        ("bookingId '__x__' (reserved by Firestore)", "__x__"),
        ("bookingId of 1,501 characters", "b" * 1501),
        ("bookingId with a NUL byte", "bk\x00"),
        ("bookingId in Arabic-Indic digits", "\u0661\u0662\u0663"),
        ("bookingId an emoji", "🎸"),
    ]:
        rows.append(
            Hostile(
                name,
                mb,
                _request(mb, admin=True, json={"bookingId": booking_id, "action": "cancel"}),
            )
        )
    for name, start in [
        ("reschedule to year 1", "0001-01-01T00:00:00+14:00"),
        ("reschedule to 9999-12-31 -14:00", "9999-12-31T23:59:59-14:00"),
        ("reschedule to Feb 30", NO_SUCH_DAY),
        ("reschedule to year +275760", "+275760-09-13T00:00:00Z"),
        ("reschedule to 'NaN'", "NaN"),
        (
            "reschedule with Arabic-Indic digits",
            "\u0662\u0660\u0662\u0667-\u0660\u0661-\u0660\u0661T10:00:00",
        ),
    ]:
        rows.append(
            Hostile(
                name,
                mb,
                _request(
                    mb,
                    admin=True,
                    json={
                        "bookingId": "no-such",
                        "action": "reschedule",
                        "start": start,
                        "end": start,
                    },
                ),
            )
        )
    rows += [
        Hostile(
            "manage_booking body nested 7,000 deep",
            mb,
            _request(
                mb, admin=True, data=_nested(7000), headers={"Content-Type": "application/json"}
            ),
        ),
        Hostile(
            "manage_booking body of 10 MB", mb, _upload(mb, "", TEN_MB, chunked=False, admin=True)
        ),
        Hostile(
            "manage_booking body of 10 MB chunked",
            mb,
            _upload(mb, "", TEN_MB, chunked=True, admin=True),
        ),
        Hostile(
            "X-API-Key with a Latin-1 byte",
            mb,
            _request(mb, json={}, headers={"X-API-Key": "cl\xe9".encode("latin-1")}),
        ),
        Hostile(
            "X-API-Key of 16 KB", mb, _request(mb, json={}, headers={"X-API-Key": "k" * 16384})
        ),
        Hostile(
            "Authorization: unsigned JWT (alg none) of an admin",
            mb,
            _request(
                mb,
                json={},
                headers={
                    "Authorization": "Bearer eyJhbGciOiJub25lIn0."
                    "eyJlbWFpbCI6ImFkbWluQGV4YW1wbGUuY29tIiwiZW1haWxfdmVyaWZpZWQiOnRydWV9."
                },
            ),
        ),
        Hostile(
            "Authorization: Bearer of 10,000 characters",
            mb,
            _request(mb, json={}, headers={"Authorization": "Bearer " + "a" * 10000}),
        ),
    ]
    cs = "class_sessions"
    session: dict[str, Any] = {
        "title": "Hostil",
        "teacher": {"email": "ana.gomez@example.com"},
        "start": iso(SESSION_DAY, 18),
        "end": iso(SESSION_DAY, 19),
        "capacity": 3,
        "price": {"amount": 100, "currency": "ARS"},
    }
    session_rows: list[tuple[str, dict[str, Any]]] = [
        ("session capacity 2**70", {"capacity": 2**70}),
        ("session capacity 1e308", {"capacity": 1e308}),
        ("session price NaN", {"price": {"amount": float("nan"), "currency": "ARS"}}),
        ("session price Infinity", {"price": {"amount": float("inf"), "currency": "ARS"}}),
        (
            "session in the year 9999",
            {"start": "9999-12-31T22:00:00-03:00", "end": "9999-12-31T23:59:59-14:00"},
        ),
        (
            "session in the year 1",
            {"start": "0001-01-01T00:00:00+14:00", "end": "0001-01-01T01:00:00+14:00"},
        ),
        ("session id 'a/b'", {"sessionId": "a/b"}),
        ("session teacher email non-ASCII", {"teacher": {"email": "josé@ejemplo.com.ar"}}),
    ]
    for name, changes in session_rows:
        rows.append(
            Hostile(
                name,
                cs,
                _request(
                    cs,
                    admin=True,
                    data=json.dumps({**session, **changes}).encode(),
                    headers={"Content-Type": "application/json"},
                ),
            )
        )
    rows.append(
        Hostile(
            "class_sessions body nested objects 7,000 deep",
            cs,
            _request(
                cs,
                admin=True,
                data=_nested_object(5000),
                headers={"Content-Type": "application/json"},
            ),
        )
    )
    le = "list_events"
    for name, params in [
        ("listing from year 1", {"from": "0001-01-01T00:00:00+14:00"}),
        ("listing to 9999-12-31 -14:00", {"to": "9999-12-31T23:59:59-14:00"}),
        ("listing from month 13", {"from": NO_SUCH_MONTH}),
        ("listing limit in Arabic-Indic digits", {"limit": "\u0663"}),
        ("listing limit of 5,000 digits", {"limit": "9" * 5000}),
        ("listing page token nested 3,000 deep", {"pageToken": "WwoK" + "Wy" * 2000}),
        ("listing teacher non-ASCII", {"teacher": "josé@ejemplo.com.ar"}),
        (
            "listing ICS over the widest window",
            {"format": "ics", "from": "1970-01-01T00:00:00Z", "to": "9998-12-31T00:00:00Z"},
        ),
        ("listing public feed, year 9999", {"public": "1", "from": "9999-06-01T00:00:00Z"}),
    ]:
        rows.append(Hostile(name, le, _request(le, "GET", admin=True, params=params)))
    rows.append(
        Hostile(
            "listing If-None-Match of 16 KB",
            le,
            _request(le, "GET", admin=True, headers={"If-None-Match": '"' + "e" * 16384 + '"'}),
        )
    )
    cn = "calendar_notifications"
    push_rows: list[tuple[str, dict[str, Any]]] = [
        (
            "push channel id '../..'",
            {"X-Goog-Channel-ID": "../..", "X-Goog-Resource-State": "exists"},
        ),
        (
            "push channel id of ours in shape, unknown",
            {"X-Goog-Channel-ID": "ch-" + "0" * 32, "X-Goog-Resource-State": "exists"},
        ),
        (
            "push state with a zero-width space",
            {
                "X-Goog-Channel-ID": "ch-" + "0" * 32,
                "X-Goog-Resource-State": "exists\u200b".encode(),
            },
        ),
        (
            "push token of 64 KB",
            {
                "X-Goog-Channel-ID": "ch-" + "0" * 32,
                "X-Goog-Resource-State": "exists",
                "X-Goog-Channel-Token": "t" * 65536,
            },
        ),
        (
            "push message number in Arabic-Indic digits",
            {
                "X-Goog-Channel-ID": "ch-" + "0" * 32,
                "X-Goog-Resource-State": "sync",
                "X-Goog-Message-Number": "\u0661".encode(),
            },
        ),
    ]
    for name, headers in push_rows:
        rows.append(Hostile(name, cn, _request(cn, headers=headers)))
    oc = "oauth_callback"
    for name, params in [
        ("callback state non-ASCII", {"state": "é.1.x", "code": "x"}),
        ("callback state of 10,000 characters", {"state": "a" * 10000, "code": "x"}),
        ("callback code of 100 KB", {"state": "a.1.b", "code": "c" * 100_000}),
        (
            "callback error with markup",
            {"error": "<script>alert(1)</script>", "error_description": "<b>x</b>"},
        ),
    ]:
        rows.append(Hostile(name, oc, _request(oc, "GET", params=params)))
    rows += [
        Hostile(
            "oauth_start Accept of 16 KB",
            "oauth_start",
            _request("oauth_start", "GET", admin=True, headers={"Accept": "a/" + "b" * 16384}),
        ),
        Hostile(
            "renew_watch force in Arabic-Indic digits",
            "renew_watch",
            _request("renew_watch", admin=True, params={"force": "\u0661"}),
        ),
        Hostile(
            "reconcile with a 10 MB body",
            "reconcile",
            _upload("reconcile", "", TEN_MB, chunked=False, admin=True),
        ),
        Hostile(
            "trace header of 16 KB",
            le,
            _request(le, "GET", admin=True, headers={"X-Cloud-Trace-Context": "t" * 16384}),
        ),
    ]
    return rows


def stalled_uploads(fuzzer: Fuzzer, function: str, count: int) -> dict[str, Any]:
    """`count` requests that promise a body and stall after 10 bytes, held open while one
    normal request is timed; then the stalled ones are closed."""
    url = urlsplit(fuzzer.doc["functions"][function])
    held: list[socket.socket] = []
    head = (
        f"POST {url.path}?topic=payment&id=1 HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    for _ in range(count):
        sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=5)
        sock.sendall(head + b'{"data": {')
        held.append(sock)
    time.sleep(1.0)
    probe_timeout = 10.0
    started = time.monotonic()
    try:
        response = requests.post(
            fuzzer.doc["functions"][function],
            params={"topic": "payment", "id": "1"},
            headers=fuzzer.stack.admin_headers,
            json={},
            timeout=probe_timeout,
        )
        probe: int | str = response.status_code
    except requests.RequestException as exc:
        probe = f"no answer in {probe_timeout:.0f} s ({type(exc).__name__})"
    probe_seconds = time.monotonic() - started
    stalled_answers: list[str] = []
    for sock in held:
        sock.settimeout(0.2)
        try:
            first = sock.recv(64).split(b"\r\n")[0].decode(errors="replace")
        except OSError:
            first = ""
        stalled_answers.append(first or "none")
        sock.close()
    time.sleep(0.5)
    after = requests.post(
        fuzzer.doc["functions"][function],
        params={"topic": "payment", "id": "1"},
        headers=fuzzer.stack.admin_headers,
        json={},
        timeout=60,
    )
    return {
        "function": function,
        "stalled": count,
        "probeStatus": probe,
        "probeSeconds": round(probe_seconds, 2),
        "stalledAnswers": dict(Counter(stalled_answers)),
        "afterClosingStatus": after.status_code,
    }


def run_fuzz(stack: ProofStack, cases: int, stalled: int | None) -> dict[str, Any]:
    figures = Fuzzer(stack, cases, stalled).run()
    failures = [
        f"{n} 5xx (not 503) from {fn}" for fn, n in figures["fivexxPerFunction"].items() if n
    ]
    no_answer = figures["fivexxOrNoAnswer"] - sum(figures["fivexxPerFunction"].values())
    if no_answer:
        failures.append(f"{no_answer} request(s) got no answer")
    failures += [
        f"{n} 503 from {fn} with every upstream up"
        for fn, n in figures["unavailablePerFunction"].items()
    ]
    short = {fn for fn, n in figures["generatedPerFunction"].items() if n < cases}
    if short:
        failures.append(f"fewer than {cases} generated cases for {sorted(short)}")
    for stall in figures["stalledUploads"]:
        if not isinstance(stall["probeStatus"], int):
            failures.append(
                f"{stall['function']}: {stall['stalled']} stalled uploads left no thread for a"
                f" normal request ({stall['probeStatus']})"
            )
    figures["failures"] = failures
    return figures
