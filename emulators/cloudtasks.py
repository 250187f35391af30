"""Cloud Tasks v2 emulator (REST) with a real dispatcher, for `google-cloud-tasks`' REST transport.

`CloudTasksClient(transport="rest", client_options={"api_endpoint": url},
credentials=AnonymousCredentials())` works against it unchanged: the transport sends camelCase
JSON, enums as numbers and `$alt=json;enum-encoding=int` on every call (so enums are answered
as numbers too), `updateMask` as a camelCase query parameter, and maps errors by HTTP status
alone (ALREADY_EXISTS arrives as `Conflict`). Routes, under
`/v2/projects/{project}/locations/{location}`:

- `queues`: POST create, GET list (`filter` on `state` only, `pageSize`/`pageToken`);
  `queues/{queue}`: GET, PATCH (`updateMask`; creates a missing queue, as UpdateQueue does),
  DELETE; `queues/{queue}:pause`, `:resume`, `:purge` (POST).
- `queues/{queue}/tasks`: POST create, GET list (`responseView`, paging);
  `tasks/{task}`: GET, DELETE; `tasks/{task}:run` (POST).

What is emulated, and why each piece matters to the platform:

- Named tasks de-duplicate: a second create with the name of a task that exists, or that was
  deleted, purged, acknowledged or given up on within the de-duplication window, answers 409
  ALREADY_EXISTS. Google documents the window as about an hour in older references and "up to
  24 hours" in the current CreateTask reference; the emulator keeps names 24 hours unless
  `dedup_window_seconds` (or `POST /_emulator/cloudtasks/settings`) says otherwise.
- `httpRequest` tasks are dispatched over real HTTP from a background thread: the task's
  method, headers and body; `User-Agent: Google-Cloud-Tasks`; `X-CloudTasks-QueueName`,
  `-TaskName` (short ids), `-TaskRetryCount` (earlier attempts), `-TaskExecutionCount`
  (earlier attempts that got a non-5xx answer), `-TaskETA` (schedule time, seconds since the
  epoch) and, on retries after an answer, `-TaskPreviousResponse` (its status code).
  `oidcToken` becomes `Authorization: Bearer <ID token>` signed by the OAuth emulator's keys
  (audience: the given one, else the task's URL), `oauthToken` a bearer access token of the
  service account. `Host`, `Content-Length`, `User-Agent`, `X-Google-*`, `X-AppEngine-*` and
  `X-CloudTasks-*` set by the caller are dropped; `Content-Type` is never added.
- A 2xx answer acknowledges (the task is deleted); anything else, no answer or the dispatch
  deadline passing is retried per the queue's `retryConfig`: `minBackoff` doubling
  `maxDoublings` times, then growing linearly by the last doubled step, capped at
  `maxBackoff` (Google's example: 10s, 20s, 40s, 80s, 160s, 240s, 300s...). The task is given
  up (deleted) once it was attempted `maxAttempts` times *and* `maxRetryDuration` (0: no
  limit) has passed since its first attempt; `maxAttempts: -1` retries forever.
- 429 and 503 are system throttling, as Google describes it: the task's backoff doubles once
  more for each consecutive 429/503 (still capped at `maxBackoff`), a `Retry-After` (seconds
  or an HTTP date) on them is a floor for the next attempt, and the queue's effective rate is
  halved (down to 1/64 of `maxDispatchesPerSecond`) until 2xx answers double it back.
- `rateLimits`: a token bucket of `maxBurstSize` tokens (output only, as upstream; the
  emulator picks ceil(maxDispatchesPerSecond), Google documents "generally at least" that)
  refilled at `maxDispatchesPerSecond`, and at most `maxConcurrentDispatches` in flight.
  Paused queues dispatch nothing; RunTask dispatches at once whatever the state or limits.
- Defaults when a field is unset (proto3 JSON leaves zero numbers out, so 0 also means
  unset): 500/s, 1000 concurrent, 100 attempts, backoff 0.1s..3600s, 16 doublings,
  `maxRetryDuration` 0; dispatch deadline 10 minutes, allowed 15s..30min. Backoffs keep
  sub-second precision (Google documents truncation to whole seconds) so tests stay fast.

Not emulated: App Engine tasks and queue-level `httpTarget` overrides (501), the ramp-up of
new or idle queues, the 31-day task retention, queue-name tombstones after DeleteQueue,
BufferTask and the batch methods, IAM policy methods. Every queue of any project and location
exists only once created (or seeded with `seed_queue`).

Control routes, besides the shared ones in `_base`:

- `POST /_emulator/cloudtasks/reset`  waits (up to `?timeout=` s, default 10) for dispatches
  in flight, then drops every task, de-duplication reservation and log entry, and puts the
  seeded queues back as seeded (other queues are deleted) and the settings as constructed.
- `GET  /_emulator/cloudtasks/dispatches?queue=&task=&wait=N&timeout=S`  the dispatch log,
  oldest first: [{"queue", "task", "attempt", "retryCount", "executionCount", "forced", "url",
  "method", "status", "error", "retryAfter", "outcome", "dispatchTime", "responseTime",
  "nextScheduleTime"}]; `outcome` is acknowledged, retry, gave_up or deleted (the task went
  away while in flight). With `wait`, answers once N entries match (or after `timeout`).
- `GET  /_emulator/cloudtasks/idle?queue=&timeout=S`  waits until no dispatch is in flight and
  no task is left in a running queue: {"idle", "tasks", "inFlight"}.
- `GET  /_emulator/cloudtasks/queues`  the dispatcher's view: state, tasks, in flight,
  tokens, system throttle and effective rate per queue.
- `GET|POST /_emulator/cloudtasks/settings`  {"dedupWindowSeconds"}.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from flask import Response, request
from werkzeug.routing import BaseConverter

from emulators._base import EmulatorApp, json_response
from emulators._status import GRPC_CODES, HTTP_TO_GRPC, grpc_status

DEFAULT_DISPATCHES_PER_SECOND = 500.0
MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_CONCURRENT_DISPATCHES = 1000
MAX_CONCURRENT_DISPATCHES = 5000
MAX_BURST_SIZE = 500
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
DEFAULT_DISPATCH_DEADLINE = 600.0
MIN_DISPATCH_DEADLINE = 15.0
MAX_DISPATCH_DEADLINE = 1800.0
MAX_SCHEDULE_AHEAD = 30 * 86400.0
MAX_TASK_BYTES = 100 * 1024
MAX_HEADER_BYTES = 80 * 1024
MAX_URL_LENGTH = 2083
DEFAULT_DEDUP_WINDOW = 24 * 3600.0
MAX_QUEUE_PAGE = 9800
MAX_TASK_PAGE = 1000
THROTTLE_FLOOR = 1 / 64
USER_AGENT = "Google-Cloud-Tasks"
OAUTH_DEFAULT_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MAX_IDLE_WAIT = 120.0

_PROJECT_RE = re.compile(r"^[A-Za-z0-9:.-]{1,100}$")
_LOCATION_RE = re.compile(r"^[a-z0-9-]{1,63}$")
_QUEUE_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_TASK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_DURATION_RE = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")
_FILTER_RE = re.compile(r'^\s*state\s*(:|=|!=)\s*"?([A-Za-z_]+)"?\s*$')
_DROPPED_HEADERS = ("host", "content-length", "user-agent")
_DROPPED_PREFIXES = ("x-google-", "x-appengine-", "x-cloudtasks-")

_QUEUE_STATES = {"STATE_UNSPECIFIED": 0, "RUNNING": 1, "PAUSED": 2, "DISABLED": 3}
_VIEWS = {"VIEW_UNSPECIFIED": 0, "BASIC": 1, "FULL": 2}
_HTTP_METHODS = {
    "HTTP_METHOD_UNSPECIFIED": 0,
    "POST": 1,
    "GET": 2,
    "HEAD": 3,
    "PUT": 4,
    "DELETE": 5,
    "PATCH": 6,
    "OPTIONS": 7,
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Duration fields of a queue: the QueueConfig attribute and the default when unset.
_DURATION_DEFAULTS = {
    "retryConfig.maxRetryDuration": ("max_retry_duration", 0.0),
    "retryConfig.minBackoff": ("min_backoff", DEFAULT_MIN_BACKOFF),
    "retryConfig.maxBackoff": ("max_backoff", DEFAULT_MAX_BACKOFF),
}

IdTokenMinter = Callable[[str, str], str]
AccessTokenMinter = Callable[[str, list[str]], str]


def _error_body(status: int, reason: str, message: str) -> dict[str, Any]:
    """Google's JSON error; `reason` may be a gRPC status name (FAILED_PRECONDITION...)."""
    return {"error": {"code": status, "message": message, "status": grpc_status(status, reason)}}


class _ApiError(Exception):
    def __init__(self, status: int, grpc_status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.grpc_status = grpc_status
        self.message = message


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "INVALID_ARGUMENT", message)


def _not_found(message: str = "Requested entity was not found.") -> _ApiError:
    return _ApiError(404, "NOT_FOUND", message)


class _SegmentConverter(BaseConverter):
    """One path segment up to a ':' so `{queue}:pause` and `{queue}` don't collide."""

    regex = r"[^/:]+"


# -- wire formats ------------------------------------------------------------------------------
def _timestamp(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: Any, what: str) -> float:
    """RFC 3339 as protobuf JSON writes Timestamps (Z or an offset, up to nanoseconds)."""
    if not isinstance(text, str):
        raise _invalid(f"Invalid value at '{what}': not a timestamp.")
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise _invalid(f"Invalid value at '{what}' ({text}): not an RFC 3339 timestamp.")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    try:
        moment = dt.datetime.fromisoformat(match.group(1) + zone)
    except ValueError as exc:
        raise _invalid(f"Invalid value at '{what}' ({text}).") from exc
    fraction = int((match.group(2) or "0").ljust(9, "0")) / 1e9
    return moment.timestamp() + fraction


def _duration(seconds: float) -> str:
    """Protobuf JSON's Duration: whole seconds, or 3, 6 or 9 fractional digits."""
    nanos_total = round(seconds * 1e9)
    whole, nanos = divmod(nanos_total, 1_000_000_000)
    if nanos == 0:
        return f"{whole}s"
    digits = f"{nanos:09d}"
    for width in (3, 6):
        if digits[width:] == "0" * (9 - width):
            return f"{whole}.{digits[:width]}s"
    return f"{whole}.{digits}s"


def _parse_duration(text: Any, what: str) -> float:
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise _invalid(f"Invalid value at '{what}' ({text}): a duration looks like '3.5s'.")
    return int(match.group(1)) + int((match.group(2) or "0").ljust(9, "0")) / 1e9


def _enum_value(raw: Any, names: dict[str, int], what: str) -> str:
    """An enum as the REST transport sends it (a number) or as people write it (a name)."""
    if raw is None or raw == "":
        return next(iter(names))
    if isinstance(raw, str) and raw in names:
        return raw
    try:
        number = int(raw)
    except (TypeError, ValueError):
        number = -1
    for name, value in names.items():
        if value == number:
            return name
    raise _invalid(f"Invalid value at '{what}' ({raw}).")


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date, in seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, moment.timestamp() - time.time())


def _rpc_status(status: int | None, error: str | None) -> dict[str, Any]:
    """The attempt's `responseStatus` (a google.rpc.Status) from the worker's answer.

    Google's HTTP-to-canonical conversion: the shared table, except that a worker's 409
    reads as ABORTED (a worker's answer says nothing about creating anything, so not the
    table's ALREADY_EXISTS); any other 4xx is FAILED_PRECONDITION, anything else UNKNOWN.
    """
    if status is None:
        name = "DEADLINE_EXCEEDED" if error == "DEADLINE_EXCEEDED" else "UNAVAILABLE"
        return {"code": GRPC_CODES[name], "message": error or name}
    if 200 <= status < 300:
        name = "OK"
    elif status == 409:
        name = "ABORTED"
    elif status in HTTP_TO_GRPC:
        name = HTTP_TO_GRPC[status]
    elif 400 <= status < 500:
        name = "FAILED_PRECONDITION"
    else:
        name = "UNKNOWN"
    return {"code": GRPC_CODES[name], "message": f"HTTP status code {status}"}


def _number[N: (int, float)](raw: Any, kind: type[N], what: str) -> N:
    """A JSON number (or a numeric string, as int64s travel) of the wanted kind, else a 400."""
    try:
        value = kind(raw)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"Invalid value at '{what}' ({raw}).") from exc
    if kind is int and value != float(raw):
        raise _invalid(f"Invalid value at '{what}' ({raw}): not an integer.")
    return value


def _camel(path: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


# -- state ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueConfig:
    """A queue's settings, with Google's defaults for whatever is left unset."""

    max_dispatches_per_second: float = DEFAULT_DISPATCHES_PER_SECOND
    max_concurrent_dispatches: int = DEFAULT_CONCURRENT_DISPATCHES
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration: float = 0.0
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS
    sampling_ratio: float | None = None
    app_engine_routing_override: dict[str, Any] | None = None

    @property
    def max_burst_size(self) -> int:
        return max(1, min(MAX_BURST_SIZE, math.ceil(self.max_dispatches_per_second)))

    def backoff(self, retry: int) -> float:
        """The delay before retry number `retry` (1 for the second attempt)."""
        doublings = max(0, self.max_doublings)
        if retry <= doublings + 1:
            delay = self.min_backoff * float(2 ** (retry - 1))
        else:
            delay = self.min_backoff * float(2**doublings) * (retry - doublings)
        return min(delay, self.max_backoff)


@dataclass
class _Attempt:
    schedule_time: float
    dispatch_time: float
    response_time: float | None = None
    status: dict[str, Any] | None = None


@dataclass
class _Task:
    name: str
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    oidc: dict[str, str] | None
    oauth: dict[str, str] | None
    schedule_time: float
    create_time: float
    dispatch_deadline: float
    dispatch_count: int = 0
    response_count: int = 0
    execution_count: int = 0
    first_dispatch_time: float | None = None
    last_attempt: _Attempt | None = None
    previous_response: int | None = None
    throttle_streak: int = 0
    running: int = 0

    @property
    def task_id(self) -> str:
        return self.name.rsplit("/", 1)[1]


@dataclass
class _Queue:
    name: str
    config: QueueConfig
    state: str = "RUNNING"
    purge_time: float | None = None
    tasks: dict[str, _Task] = field(default_factory=dict)
    tokens: float = 0.0
    refilled_at: float = field(default_factory=time.monotonic)
    throttle: float = 1.0
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.tokens = float(self.config.max_burst_size)

    @property
    def queue_id(self) -> str:
        return self.name.rsplit("/", 1)[1]

    @property
    def effective_rate(self) -> float:
        return self.config.max_dispatches_per_second * self.throttle

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.refilled_at)
        self.refilled_at = now
        burst = float(self.config.max_burst_size)
        self.tokens = min(burst, self.tokens + elapsed * self.effective_rate)


def _state_filter(text: str) -> Callable[[_Queue], bool]:
    """ListQueues' filter, for the one field worth filtering on: `state: PAUSED` and the like."""
    if not text.strip():
        return lambda _: True
    match = _FILTER_RE.match(text)
    if match is None or match.group(2).upper() not in _QUEUE_STATES:
        raise _invalid(f"Invalid filter: {text} (only state is emulated).")
    negate, state = match.group(1) == "!=", match.group(2).upper()
    return lambda queue: (queue.state == state) != negate


def _page(items: list[Any], maximum: int) -> tuple[list[Any], str]:
    """Applies pageSize/pageToken; the token is an opaque offset."""
    try:
        size = int(request.args.get("pageSize", "0") or "0")
    except ValueError as exc:
        raise _invalid("Invalid pageSize.") from exc
    if size < 0:
        raise _invalid("page_size must not be negative.")
    start = 0
    token = request.args.get("pageToken", "")
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))
        except (ValueError, binascii.Error) as exc:
            raise _invalid("Invalid page_token.") from exc
    size = min(size or maximum, maximum)
    chunk = items[start : start + size]
    end = start + len(chunk)
    next_token = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else ""
    return chunk, next_token


class CloudTasksEmulator:
    """Queues and tasks in memory over the v2 REST surface, plus the dispatcher thread."""

    def __init__(
        self,
        id_token_for: IdTokenMinter | None = None,
        access_token_for: AccessTokenMinter | None = None,
        dedup_window_seconds: float = DEFAULT_DEDUP_WINDOW,
    ) -> None:
        self.id_token_for = id_token_for
        self.access_token_for = access_token_for
        self._initial_dedup_window = dedup_window_seconds
        self.dedup_window_seconds = dedup_window_seconds
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._queues: dict[str, _Queue] = {}
        self._seeded: dict[str, QueueConfig] = {}
        self._reserved: dict[str, float] = {}  # task name -> until when it stays reserved
        self._log: list[dict[str, Any]] = []
        self._in_flight = 0
        self._generation = 0
        self._stopping = False
        self.app = EmulatorApp("cloudtasks", _error_body)
        self.app.app.url_map.converters["seg"] = _SegmentConverter
        self._install_routes()
        self._install_control_routes()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="cloudtasks-dispatcher", daemon=True
        )
        self._dispatcher.start()

    # -- public, in-process API -------------------------------------------------------
    def seed_queue(self, name: str, config: QueueConfig | None = None) -> None:
        """Creates a queue that exists from the start and comes back as it was on `reset`."""
        self._check_queue_name(name)
        with self._changed:
            self._seeded[name] = config or QueueConfig()
            self._queues[name] = _Queue(name, self._seeded[name])
            self._changed.notify_all()

    def reset(self, timeout: float = 10.0) -> bool:
        """Back to the seeded queues with no tasks; True if no dispatch was left in flight.

        In-flight dispatches may still write wherever their worker writes, so they are waited
        for (up to `timeout`); whatever they answer afterwards is ignored.
        """
        with self._changed:
            self._generation += 1
            self._queues = {name: _Queue(name, config) for name, config in self._seeded.items()}
            self._reserved.clear()
            self._log.clear()
            self.dedup_window_seconds = self._initial_dedup_window
            self._changed.notify_all()
            drained = self._changed.wait_for(lambda: self._in_flight == 0, timeout)
            self._log.clear()
            return drained

    def dispatches(
        self, wait: int = 0, timeout: float = 10.0, queue: str = "", task: str = ""
    ) -> list[dict[str, Any]]:
        """The dispatch log (oldest first), waiting up to `timeout` for `wait` entries."""

        def matching() -> list[dict[str, Any]]:
            return [
                dict(e)
                for e in self._log
                if (not queue or e["queue"] == queue or e["queue"].endswith("/queues/" + queue))
                and (not task or e["task"] == task or e["task"].endswith("/tasks/" + task))
            ]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= wait, timeout)
            return matching()

    def wait_idle(self, timeout: float = 10.0, queue: str = "") -> bool:
        """Waits until nothing is in flight and no task is left in a running queue."""
        with self._changed:
            return self._changed.wait_for(lambda: self._idle(queue), timeout)

    def stop(self) -> None:
        """Stops the dispatcher thread (dispatches in flight finish on their own)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._dispatcher.join(timeout=5)

    # -- internals: names and lookups ----------------------------------------------------
    @staticmethod
    def _location(project: str, location: str) -> str:
        if not _PROJECT_RE.match(project):
            raise _invalid(f"Invalid project id: {project}")
        if not _LOCATION_RE.match(location):
            raise _invalid(f"Invalid location: {location}")
        return f"projects/{project}/locations/{location}"

    def _check_queue_name(self, name: str) -> None:
        parts = name.split("/")
        if (
            len(parts) != 6
            or parts[0] != "projects"
            or parts[2] != "locations"
            or parts[4] != "queues"
            or not _QUEUE_ID_RE.match(parts[5])
        ):
            raise _invalid(
                f'Queue name "{name}" is invalid: it must look like '
                "projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID, the QUEUE_ID made "
                "of at most 100 letters, digits or hyphens."
            )
        self._location(parts[1], parts[3])

    def _queue(self, project: str, location: str, queue_id: str) -> _Queue:
        name = f"{self._location(project, location)}/queues/{queue_id}"
        found = self._queues.get(name)
        if found is None:
            raise _not_found(
                "Queue does not exist. If you just created the queue, wait at least a minute "
                "for the queue to initialize."
            )
        return found

    def _task(self, queue: _Queue, task_id: str) -> _Task:
        name = f"{queue.name}/tasks/{task_id}"
        found = queue.tasks.get(name)
        if found is None:
            if self._reserved.get(name, 0) > time.time():
                raise _not_found(
                    "The task no longer exists, though a task with this name existed recently. "
                    "The task either successfully completed or was deleted."
                )
            raise _not_found()
        return found

    def _forget(self, queue: _Queue, task: _Task) -> None:
        """Removes a task and keeps its name reserved for the de-duplication window."""
        queue.tasks.pop(task.name, None)
        now = time.time()
        if len(self._reserved) > 10_000:  # keep the reservations that still matter
            self._reserved = {n: until for n, until in self._reserved.items() if until > now}
        self._reserved[task.name] = now + self.dedup_window_seconds
        self._changed.notify_all()

    def _idle(self, queue_filter: str) -> bool:
        if self._in_flight:
            return False
        for queue in self._queues.values():
            if queue_filter and queue.name != queue_filter and queue.queue_id != queue_filter:
                continue
            if queue.state == "RUNNING" and queue.tasks:
                return False
        return True

    # -- internals: configuration ----------------------------------------------------------
    _LEAF_PATHS = (
        "rateLimits.maxDispatchesPerSecond",
        "rateLimits.maxBurstSize",
        "rateLimits.maxConcurrentDispatches",
        "retryConfig.maxAttempts",
        "retryConfig.maxRetryDuration",
        "retryConfig.minBackoff",
        "retryConfig.maxBackoff",
        "retryConfig.maxDoublings",
        "stackdriverLoggingConfig.samplingRatio",
        "appEngineRoutingOverride",
    )

    @staticmethod
    def _at(body: dict[str, Any], path: str) -> Any:
        value: Any = body
        for part in path.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    def _configure(self, base: QueueConfig, body: dict[str, Any], mask: list[str]) -> QueueConfig:
        """Applies the masked paths of `body` to `base`; an unset value means the default."""
        if body.get("httpTarget"):
            raise _ApiError(
                501, "UNIMPLEMENTED", "Queue-level httpTarget overrides are not emulated."
            )
        leaves: list[str] = []
        for path in mask:
            expanded = [p for p in self._LEAF_PATHS if p == path or p.startswith(path + ".")]
            if path in ("httpTarget", "state", "purgeTime", "name"):
                continue
            if not expanded:
                raise _invalid(f"Invalid update_mask path: {path}")
            leaves.extend(expanded)
        changes: dict[str, Any] = {}
        for path in leaves:
            raw = self._at(body, path)
            unset = raw is None or raw == "" or raw == 0
            if path == "rateLimits.maxDispatchesPerSecond":
                rate = DEFAULT_DISPATCHES_PER_SECOND if unset else _number(raw, float, path)
                if not 0 < rate <= MAX_DISPATCHES_PER_SECOND:
                    raise _invalid("max_dispatches_per_second must be in (0, 500].")
                changes["max_dispatches_per_second"] = rate
            elif path == "rateLimits.maxConcurrentDispatches":
                concurrent = DEFAULT_CONCURRENT_DISPATCHES if unset else _number(raw, int, path)
                if not 0 < concurrent <= MAX_CONCURRENT_DISPATCHES:
                    raise _invalid("max_concurrent_dispatches must be in [1, 5000].")
                changes["max_concurrent_dispatches"] = concurrent
            elif path == "retryConfig.maxAttempts":
                attempts = DEFAULT_MAX_ATTEMPTS if unset else _number(raw, int, path)
                if attempts < -1:
                    raise _invalid("max_attempts must be greater than or equal to -1.")
                changes["max_attempts"] = attempts
            elif path == "retryConfig.maxDoublings":
                doublings = DEFAULT_MAX_DOUBLINGS if unset else _number(raw, int, path)
                if doublings < 0:
                    raise _invalid("max_doublings must not be negative.")
                changes["max_doublings"] = doublings
            elif path in _DURATION_DEFAULTS:
                attribute, default = _DURATION_DEFAULTS[path]
                changes[attribute] = default if raw is None else _parse_duration(raw, path)
            elif path == "stackdriverLoggingConfig.samplingRatio":
                ratio = None if raw is None else _number(raw, float, path)
                if ratio is not None and not 0 <= ratio <= 1:
                    raise _invalid("sampling_ratio must be in [0, 1].")
                changes["sampling_ratio"] = ratio
            elif path == "appEngineRoutingOverride":
                changes["app_engine_routing_override"] = raw if isinstance(raw, dict) else None
            # rateLimits.maxBurstSize is output only: ignored, as upstream.
        config = replace(base, **changes)
        if config.min_backoff > config.max_backoff:
            raise _invalid("min_backoff must not be greater than max_backoff.")
        return config

    def _queue_json(self, queue: _Queue) -> dict[str, Any]:
        config = queue.config
        body: dict[str, Any] = {
            "name": queue.name,
            "rateLimits": {
                "maxDispatchesPerSecond": config.max_dispatches_per_second,
                "maxBurstSize": config.max_burst_size,
                "maxConcurrentDispatches": config.max_concurrent_dispatches,
            },
            "retryConfig": {
                "maxAttempts": config.max_attempts,
                "maxRetryDuration": _duration(config.max_retry_duration),
                "minBackoff": _duration(config.min_backoff),
                "maxBackoff": _duration(config.max_backoff),
                "maxDoublings": config.max_doublings,
            },
            "state": self._enum(queue.state, _QUEUE_STATES),
        }
        if queue.purge_time is not None:
            body["purgeTime"] = _timestamp(queue.purge_time)
        if config.sampling_ratio is not None:
            body["stackdriverLoggingConfig"] = {"samplingRatio": config.sampling_ratio}
        if config.app_engine_routing_override:
            body["appEngineRoutingOverride"] = config.app_engine_routing_override
        return body

    @staticmethod
    def _enum(name: str, names: dict[str, int]) -> str | int:
        if "enum-encoding=int" in request.args.get("$alt", ""):
            return names[name]
        return name

    # -- internals: tasks ------------------------------------------------------------------
    def _new_task(self, queue: _Queue, raw: dict[str, Any]) -> _Task:
        """Validates a task as CreateTask does and builds it (not yet stored)."""
        now = time.time()
        name = raw.get("name") or ""
        if name:
            prefix, _, task_id = str(name).rpartition("/tasks/")
            if prefix != queue.name or not _TASK_ID_RE.match(task_id):
                raise _invalid(
                    f'Task name "{name}" is invalid: it must be {queue.name}/tasks/TASK_ID, the '
                    "TASK_ID made of at most 500 letters, digits, hyphens or underscores."
                )
        else:
            name = f"{queue.name}/tasks/{secrets.randbits(63)}"
        if raw.get("appEngineHttpRequest"):
            raise _ApiError(501, "UNIMPLEMENTED", "App Engine tasks are not emulated.")
        http = raw.get("httpRequest")
        if not isinstance(http, dict):
            raise _invalid("A task needs an http_request (the only kind emulated).")
        url = http.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise _invalid("HttpRequest.url must begin with http:// or https://.")
        if len(url) > MAX_URL_LENGTH:
            raise _invalid(f"HttpRequest.url is longer than {MAX_URL_LENGTH} characters.")
        method = _enum_value(http.get("httpMethod"), _HTTP_METHODS, "task.http_request.http_method")
        method = "POST" if method == "HTTP_METHOD_UNSPECIFIED" else method
        raw_headers = http.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise _invalid("HttpRequest.headers must be a map of strings.")
        headers = {
            str(k): str(v)
            for k, v in raw_headers.items()
            if str(k).lower() not in _DROPPED_HEADERS
            and not str(k).lower().startswith(_DROPPED_PREFIXES)
        }
        if sum(len(k) + len(v) for k, v in headers.items()) >= MAX_HEADER_BYTES:
            raise _invalid("The size of the headers must be less than 80KB.")
        try:
            body = base64.b64decode(http.get("body") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _invalid("Invalid value at 'task.http_request.body' (TYPE_BYTES).") from exc
        if body and method not in _BODY_METHODS:
            raise _invalid(f"A body is allowed only for POST, PUT or PATCH, not {method}.")
        oidc, oauth = http.get("oidcToken"), http.get("oauthToken")
        if oidc and oauth:
            raise _invalid("Set at most one of oauth_token and oidc_token.")
        for token, kind in ((oidc, "oidc_token"), (oauth, "oauth_token")):
            if token and not (isinstance(token, dict) and token.get("serviceAccountEmail")):
                raise _invalid(f"{kind}.service_account_email is required.")
        if (oidc and self.id_token_for is None) or (oauth and self.access_token_for is None):
            raise _ApiError(
                400,
                "FAILED_PRECONDITION",
                "This emulator was started without the OAuth emulator: it cannot mint tokens.",
            )
        schedule = now
        if raw.get("scheduleTime"):
            schedule = max(now, _parse_timestamp(raw["scheduleTime"], "task.schedule_time"))
            if schedule > now + MAX_SCHEDULE_AHEAD:
                raise _invalid("schedule_time must be at most 30 days in the future.")
        deadline = DEFAULT_DISPATCH_DEADLINE
        if raw.get("dispatchDeadline"):
            deadline = _parse_duration(raw["dispatchDeadline"], "task.dispatch_deadline")
            if not MIN_DISPATCH_DEADLINE <= deadline <= MAX_DISPATCH_DEADLINE:
                raise _invalid("dispatch_deadline must be between 15 seconds and 30 minutes.")
        size = len(name) + len(url) + len(body) + sum(len(k) + len(v) for k, v in headers.items())
        if size > MAX_TASK_BYTES:
            raise _invalid(f"Task size too large: {size} bytes, the maximum is {MAX_TASK_BYTES}.")
        return _Task(
            name=name,
            url=url,
            method=method,
            headers=headers,
            body=body,
            oidc=dict(oidc) if oidc else None,
            oauth=dict(oauth) if oauth else None,
            schedule_time=schedule,
            create_time=float(int(now)),  # truncated to the second, as upstream
            dispatch_deadline=deadline,
        )

    def _task_json(self, task: _Task, view: str) -> dict[str, Any]:
        http: dict[str, Any] = {
            "url": task.url,
            "httpMethod": self._enum(task.method, _HTTP_METHODS),
        }
        if task.headers:
            http["headers"] = dict(task.headers)
        if task.body and view == "FULL":
            http["body"] = base64.b64encode(task.body).decode()
        if task.oidc:
            http["oidcToken"] = dict(task.oidc)
        if task.oauth:
            http["oauthToken"] = dict(task.oauth)
        body: dict[str, Any] = {
            "name": task.name,
            "httpRequest": http,
            "scheduleTime": _timestamp(task.schedule_time),
            "createTime": _timestamp(task.create_time),
            "dispatchDeadline": _duration(task.dispatch_deadline),
        }
        if task.dispatch_count:
            body["dispatchCount"] = task.dispatch_count
        if task.response_count:
            body["responseCount"] = task.response_count
        if task.first_dispatch_time is not None:
            body["firstAttempt"] = {"dispatchTime": _timestamp(task.first_dispatch_time)}
        if task.last_attempt is not None:
            attempt = task.last_attempt
            last: dict[str, Any] = {
                "scheduleTime": _timestamp(attempt.schedule_time),
                "dispatchTime": _timestamp(attempt.dispatch_time),
            }
            if attempt.response_time is not None:
                last["responseTime"] = _timestamp(attempt.response_time)
                last["responseStatus"] = attempt.status
            body["lastAttempt"] = last
        body["view"] = self._enum(view, _VIEWS)
        return body

    @staticmethod
    def _view(raw: Any) -> str:
        view = _enum_value(raw, _VIEWS, "response_view")
        return "BASIC" if view == "VIEW_UNSPECIFIED" else view

    # -- internals: the dispatcher ------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        """Starts every due task its queue's state, tokens and concurrency allow, then sleeps
        until the next one is due, a token is back, or something changed."""
        with self._changed:
            while not self._stopping:
                now, clock = time.time(), time.monotonic()
                wake = 1.0
                for queue in list(self._queues.values()):
                    if queue.state != "RUNNING":
                        continue
                    queue.refill(clock)
                    waiting = [t for t in queue.tasks.values() if not t.running]
                    due = sorted(
                        (t for t in waiting if t.schedule_time <= now),
                        key=lambda t: (t.schedule_time, t.name),
                    )
                    for task in due:
                        if queue.in_flight >= queue.config.max_concurrent_dispatches:
                            break  # a finishing dispatch notifies
                        if queue.tokens < 1:
                            wake = min(wake, (1 - queue.tokens) / queue.effective_rate)
                            break
                        queue.tokens -= 1
                        self._start(queue, task, forced=False)
                    later = [t.schedule_time - now for t in waiting if t.schedule_time > now]
                    if later:
                        wake = min(wake, min(later))
                self._changed.wait(timeout=max(wake, 0.001))

    def _start(self, queue: _Queue, task: _Task, forced: bool) -> None:
        """Records a new attempt and sends it from a thread of its own (under the lock)."""
        now = time.time()
        task.dispatch_count += 1
        if task.first_dispatch_time is None:
            task.first_dispatch_time = now
        attempt = _Attempt(schedule_time=task.schedule_time, dispatch_time=now)
        task.last_attempt = attempt
        task.running += 1
        queue.in_flight += 1
        self._in_flight += 1
        entry: dict[str, Any] = {
            "queue": queue.name,
            "task": task.name,
            "attempt": task.dispatch_count,
            "retryCount": task.dispatch_count - 1,
            "executionCount": task.execution_count,
            "forced": forced,
            "url": task.url,
            "method": task.method,
            "status": None,
            "error": None,
            "retryAfter": None,
            "outcome": None,
            "dispatchTime": _timestamp(now),
            "responseTime": None,
            "nextScheduleTime": None,
        }
        try:
            headers = self._headers(queue, task)
        except Exception as exc:  # a token could not be minted: the attempt fails
            headers = None
            entry["error"] = f"UNAUTHENTICATED: {exc}"
        threading.Thread(
            target=self._attempt,
            args=(queue, task, attempt, headers, entry, self._generation),
            name=f"cloudtasks-{task.task_id}",
            daemon=True,
        ).start()

    def _headers(self, queue: _Queue, task: _Task) -> dict[str, str]:
        headers = dict(task.headers)
        headers["User-Agent"] = USER_AGENT
        headers["X-CloudTasks-QueueName"] = queue.queue_id
        headers["X-CloudTasks-TaskName"] = task.task_id
        headers["X-CloudTasks-TaskRetryCount"] = str(task.dispatch_count - 1)
        headers["X-CloudTasks-TaskExecutionCount"] = str(task.execution_count)
        headers["X-CloudTasks-TaskETA"] = f"{task.schedule_time:.6f}"
        if task.previous_response is not None:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(task.previous_response)
        if task.oidc and self.id_token_for is not None:
            audience = task.oidc.get("audience") or task.url
            token = self.id_token_for(task.oidc["serviceAccountEmail"], audience)
            headers["Authorization"] = f"Bearer {token}"
        elif task.oauth and self.access_token_for is not None:
            scopes = (task.oauth.get("scope") or OAUTH_DEFAULT_SCOPE).split()
            token = self.access_token_for(task.oauth["serviceAccountEmail"], scopes)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _attempt(
        self,
        queue: _Queue,
        task: _Task,
        attempt: _Attempt,
        headers: dict[str, str] | None,
        entry: dict[str, Any],
        generation: int,
    ) -> None:
        """One HTTP attempt, outside the lock; its outcome is settled under it."""
        status: int | None = None
        retry_after: float | None = None
        error: str | None = entry["error"]
        try:
            if headers is not None:
                response = requests.request(
                    task.method,
                    task.url,
                    headers=headers,
                    data=task.body or None,
                    timeout=task.dispatch_deadline,
                    allow_redirects=True,
                )
                status = response.status_code
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
                response.close()
        except requests.Timeout:
            error = "DEADLINE_EXCEEDED"
        except Exception as exc:  # refused, reset, unreadable: no answer, so a retry
            error = f"UNAVAILABLE: {type(exc).__name__}"
        finally:
            with self._changed:
                self._settle(queue, task, attempt, status, error, retry_after, entry, generation)
                self._changed.notify_all()

    def _settle(
        self,
        queue: _Queue,
        task: _Task,
        attempt: _Attempt,
        status: int | None,
        error: str | None,
        retry_after: float | None,
        entry: dict[str, Any],
        generation: int,
    ) -> None:
        queue.in_flight -= 1
        self._in_flight -= 1
        task.running -= 1
        if generation != self._generation:
            return  # reset since: nothing of it is kept
        now = time.time()
        attempt.response_time = now
        attempt.status = _rpc_status(status, error)
        entry.update(status=status, error=error, responseTime=_timestamp(now))
        if status is not None:
            task.response_count += 1
            if status < 500:
                task.execution_count += 1
        alive = self._queues.get(queue.name) is queue and queue.tasks.get(task.name) is task
        if not alive:
            entry["outcome"] = "deleted"
        elif status is not None and 200 <= status < 300:
            queue.throttle = min(1.0, queue.throttle * 2)
            self._forget(queue, task)
            entry["outcome"] = "acknowledged"
        else:
            throttled = status in (429, 503)
            task.previous_response = status
            task.throttle_streak = task.throttle_streak + 1 if throttled else 0
            if throttled:
                queue.throttle = max(THROTTLE_FLOOR, queue.throttle / 2)
                entry["retryAfter"] = retry_after
            if self._exhausted(queue.config, task, now):
                self._forget(queue, task)
                entry["outcome"] = "gave_up"
            else:
                delay = queue.config.backoff(task.dispatch_count)
                if throttled:
                    delay = min(queue.config.max_backoff, delay * 2**task.throttle_streak)
                    if retry_after is not None:
                        delay = max(delay, min(retry_after, MAX_SCHEDULE_AHEAD))
                task.schedule_time = now + delay
                entry["outcome"] = "retry"
                entry["nextScheduleTime"] = _timestamp(task.schedule_time)
        self._log.append(entry)

    @staticmethod
    def _exhausted(config: QueueConfig, task: _Task, now: float) -> bool:
        """Both limits met: `maxAttempts` attempts and `maxRetryDuration` since the first."""
        if config.max_attempts == -1 or task.dispatch_count < config.max_attempts:
            return False
        if config.max_retry_duration <= 0:
            return True
        first = task.first_dispatch_time if task.first_dispatch_time is not None else now
        return now - first >= config.max_retry_duration

    # -- routes -------------------------------------------------------------------------
    def _run(self, handler: Callable[[], Any]) -> Response:
        """Runs a handler under the lock and turns `_ApiError` into Google's error JSON."""
        try:
            with self._changed:
                return json_response(handler())
        except _ApiError as exc:
            return self.app.error(exc.status, exc.grpc_status, exc.message)

    @staticmethod
    def _json_body() -> dict[str, Any]:
        if not request.data:
            return {}
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received.")
        return body

    def _install_routes(self) -> None:
        app = self.app.app
        base = "/v2/projects/<seg:project>/locations/<seg:location>"
        queue_path = base + "/queues/<seg:queue>"
        task_path = queue_path + "/tasks/<seg:task>"

        @app.post(base + "/queues")
        def create_queue(project: str, location: str) -> Response:
            def handle() -> Any:
                parent = self._location(project, location)
                body = self._json_body()
                name = str(body.get("name") or "")
                self._check_queue_name(name)
                if name.rsplit("/queues/", 1)[0] != parent:
                    raise _invalid(f'Queue name "{name}" is not in {parent}.')
                if name in self._queues:
                    raise _ApiError(409, "ALREADY_EXISTS", "Requested entity already exists")
                config = self._configure(QueueConfig(), body, list(self._LEAF_PATHS))
                queue = _Queue(name, config)
                self._queues[name] = queue
                self._changed.notify_all()
                return self._queue_json(queue)

            return self._run(handle)

        @app.get(base + "/queues")
        def list_queues(project: str, location: str) -> Response:
            def handle() -> Any:
                parent = self._location(project, location)
                wanted = _state_filter(request.args.get("filter", ""))
                found = sorted(
                    (
                        q
                        for n, q in self._queues.items()
                        if n.startswith(parent + "/") and wanted(q)
                    ),
                    key=lambda q: q.name,
                )
                chunk, next_token = _page(found, MAX_QUEUE_PAGE)
                body: dict[str, Any] = {"queues": [self._queue_json(q) for q in chunk]}
                if next_token:
                    body["nextPageToken"] = next_token
                return body

            return self._run(handle)

        @app.get(queue_path)
        def get_queue(project: str, location: str, queue: str) -> Response:
            return self._run(lambda: self._queue_json(self._queue(project, location, queue)))

        @app.patch(queue_path)
        def update_queue(project: str, location: str, queue: str) -> Response:
            def handle() -> Any:
                name = f"{self._location(project, location)}/queues/{queue}"
                self._check_queue_name(name)
                body = self._json_body()
                if body.get("name") and body["name"] != name:
                    raise _invalid("The queue's name cannot be changed.")
                raw_mask = request.args.get("updateMask", "")
                mask = [_camel(p.strip()) for p in raw_mask.split(",") if p.strip()]
                existing = self._queues.get(name)
                if not mask:  # every field: unset ones back to their defaults
                    mask = list(self._LEAF_PATHS)
                if existing is None:  # UpdateQueue creates a missing queue
                    existing = _Queue(name, self._configure(QueueConfig(), body, mask))
                    self._queues[name] = existing
                else:
                    existing.config = self._configure(existing.config, body, mask)
                    existing.tokens = min(existing.tokens, float(existing.config.max_burst_size))
                self._changed.notify_all()
                return self._queue_json(existing)

            return self._run(handle)

        @app.delete(queue_path)
        def delete_queue(project: str, location: str, queue: str) -> Response:
            def handle() -> Any:
                found = self._queue(project, location, queue)
                for task in list(found.tasks.values()):
                    self._forget(found, task)
                del self._queues[found.name]
                return {}

            return self._run(handle)

        def transition(action: str) -> Callable[..., Response]:
            def view(project: str, location: str, queue: str) -> Response:
                def handle() -> Any:
                    found = self._queue(project, location, queue)
                    if action == "pause":
                        found.state = "PAUSED"
                    elif action == "resume":
                        found.state = "RUNNING"
                        found.refilled_at = time.monotonic()
                    else:  # purge: every task created so far
                        found.purge_time = time.time()
                        for task in list(found.tasks.values()):
                            self._forget(found, task)
                    self._changed.notify_all()
                    return self._queue_json(found)

                return self._run(handle)

            view.__name__ = f"{action}_queue"
            return view

        for action in ("pause", "resume", "purge"):
            app.add_url_rule(
                f"{queue_path}:{action}",
                endpoint=f"{action}_queue",
                view_func=transition(action),
                methods=["POST"],
            )

        @app.post(queue_path + "/tasks")
        def create_task(project: str, location: str, queue: str) -> Response:
            def handle() -> Any:
                found = self._queue(project, location, queue)
                body = self._json_body()
                raw = body.get("task")
                if not isinstance(raw, dict):
                    raise _invalid("task is required.")
                view = self._view(body.get("responseView"))
                task = self._new_task(found, raw)
                if task.name in found.tasks:
                    raise _ApiError(409, "ALREADY_EXISTS", "Requested entity already exists")
                if self._reserved.get(task.name, 0) > time.time():
                    raise _ApiError(
                        409,
                        "ALREADY_EXISTS",
                        "The task cannot be created because a task with this name existed too "
                        "recently.",
                    )
                found.tasks[task.name] = task
                self._changed.notify_all()
                return self._task_json(task, view)

            return self._run(handle)

        @app.get(queue_path + "/tasks")
        def list_tasks(project: str, location: str, queue: str) -> Response:
            def handle() -> Any:
                found = self._queue(project, location, queue)
                view = self._view(request.args.get("responseView"))
                ordered = sorted(found.tasks.values(), key=lambda t: (t.schedule_time, t.name))
                chunk, next_token = _page(ordered, MAX_TASK_PAGE)
                body: dict[str, Any] = {"tasks": [self._task_json(t, view) for t in chunk]}
                if next_token:
                    body["nextPageToken"] = next_token
                return body

            return self._run(handle)

        @app.get(task_path)
        def get_task(project: str, location: str, queue: str, task: str) -> Response:
            def handle() -> Any:
                found = self._task(self._queue(project, location, queue), task)
                return self._task_json(found, self._view(request.args.get("responseView")))

            return self._run(handle)

        @app.delete(task_path)
        def delete_task(project: str, location: str, queue: str, task: str) -> Response:
            def handle() -> Any:
                found_queue = self._queue(project, location, queue)
                self._forget(found_queue, self._task(found_queue, task))
                return {}

            return self._run(handle)

        @app.post(task_path + ":run")
        def run_task(project: str, location: str, queue: str, task: str) -> Response:
            def handle() -> Any:
                found_queue = self._queue(project, location, queue)
                found = self._task(found_queue, task)
                view = self._view(self._json_body().get("responseView"))
                self._start(found_queue, found, forced=True)
                return self._task_json(found, view)

            return self._run(handle)

    def _install_control_routes(self) -> None:
        app = self.app.app

        def seconds(name: str, default: float, ceiling: float = MAX_IDLE_WAIT) -> float:
            try:
                return min(max(float(request.args.get(name, default)), 0.0), ceiling)
            except ValueError:
                return default

        @app.post("/_emulator/cloudtasks/reset")
        def ct_reset() -> Response:
            drained = self.reset(seconds("timeout", 10.0))
            return json_response({"drained": drained})

        @app.get("/_emulator/cloudtasks/dispatches")
        def ct_dispatches() -> Response:
            try:
                wait = int(request.args.get("wait", 0))
            except ValueError:
                return self.app.error(400, "INVALID_ARGUMENT", "wait must be an integer")
            log = self.dispatches(
                wait,
                seconds("timeout", 10.0),
                request.args.get("queue", ""),
                request.args.get("task", ""),
            )
            with self._changed:
                in_flight = self._in_flight
            return json_response({"dispatches": log, "inFlight": in_flight})

        @app.get("/_emulator/cloudtasks/idle")
        def ct_idle() -> Response:
            queue = request.args.get("queue", "")
            idle = self.wait_idle(seconds("timeout", 10.0), queue)
            with self._changed:
                remaining = sum(
                    len(q.tasks)
                    for q in self._queues.values()
                    if not queue or queue in (q.name, q.queue_id)
                )
                return json_response(
                    {"idle": idle, "tasks": remaining, "inFlight": self._in_flight}
                )

        @app.get("/_emulator/cloudtasks/queues")
        def ct_queues() -> Response:
            with self._changed:
                clock = time.monotonic()
                body = {}
                for queue in self._queues.values():
                    queue.refill(clock)
                    body[queue.name] = {
                        "state": queue.state,
                        "tasks": len(queue.tasks),
                        "inFlight": queue.in_flight,
                        "tokens": round(queue.tokens, 3),
                        "throttle": queue.throttle,
                        "effectiveRate": queue.effective_rate,
                        "seeded": queue.name in self._seeded,
                    }
            return json_response({"queues": body})

        @app.route("/_emulator/cloudtasks/settings", methods=["GET", "POST"])
        def ct_settings() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True) or {}
                unknown = set(raw) - {"dedupWindowSeconds"}
                if unknown:
                    return self.app.error(400, "INVALID_ARGUMENT", f"Unknown: {sorted(unknown)}")
                if "dedupWindowSeconds" in raw:
                    try:
                        window = float(raw["dedupWindowSeconds"])
                    except (TypeError, ValueError):
                        window = -1.0
                    if window < 0:
                        return self.app.error(
                            400, "INVALID_ARGUMENT", "dedupWindowSeconds: seconds, at least 0"
                        )
                    with self._changed:
                        self.dedup_window_seconds = window
            return json_response({"dedupWindowSeconds": self.dedup_window_seconds})
