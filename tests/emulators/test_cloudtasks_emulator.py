"""Conformance tests of the Cloud Tasks emulator, driven by the real `google-cloud-tasks` client.

`CloudTasksClient(transport="rest")` is what the platform will use: the emulator must accept
what it sends and answer what it parses. Dispatches go to a small local receiver whose answers
each test scripts; the OIDC token they carry is checked with google-auth against the OAuth
emulator's published certificates, as a Cloud Function verifies Google's. Timing assertions
leave a generous margin on the slow side only (a loaded machine is late, never early).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import Request
from google.cloud import tasks_v2
from google.oauth2 import id_token
from google.protobuf import field_mask_pb2, timestamp_pb2

from emulators._base import ServerThread
from emulators.cloudtasks import CloudTasksEmulator, QueueConfig
from emulators.oauth import OAuthEmulator

PROJECT = "classes-test"
LOCATION = "southamerica-east1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SEEDED = f"{PARENT}/queues/schedule-class"
INVOKER = "tasks-invoker@classes-test.iam.gserviceaccount.com"
TIMEOUT = 5
Queue = tasks_v2.Queue
Task = tasks_v2.Task


@dataclass
class Received:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A task handler whose answers are scripted per path (200 once the script runs out)."""

    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    active: int = 0
    most_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.scripts[path] = [a if isinstance(a, tuple) else (a, {}) for a in answers]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.scripts.clear()
            self.delay = 0.0
            self.most_active = 0

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        path = environ["PATH_INFO"]
        with self.lock:
            self.received.append(
                Received(time.time(), environ["REQUEST_METHOD"], path, headers, body)
            )
            script = self.scripts.get(path) or []
            status, extra = script.pop(0) if script else (200, {})
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            delay = self.delay
        time.sleep(delay)
        with self.lock:
            self.active -= 1
        start_response(f"{status} Scripted", [("Content-Type", "text/plain"), *extra.items()])
        return [b"scripted"]


@pytest.fixture(scope="module")
def oauth() -> OAuthEmulator:
    return OAuthEmulator(client_id="c", client_secret="s", refresh_token="1//r")


@pytest.fixture(scope="module")
def oauth_server(oauth: OAuthEmulator) -> Iterator[ServerThread]:
    thread = ServerThread(oauth.app.app).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def emulator(oauth: OAuthEmulator) -> Iterator[CloudTasksEmulator]:
    tasks = CloudTasksEmulator(
        id_token_for=oauth.service_account_id_token,
        access_token_for=oauth.service_account_access_token,
    )
    tasks.seed_queue(SEEDED, QueueConfig(max_attempts=5))
    yield tasks
    tasks.stop()


@pytest.fixture(scope="module")
def server(emulator: CloudTasksEmulator) -> Iterator[ServerThread]:
    thread = ServerThread(emulator.app.app).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture(scope="module")
def receiver_url(receiver: Receiver) -> Iterator[str]:
    thread = ServerThread(receiver).start()
    yield thread.url
    thread.stop()


@pytest.fixture(scope="module")
def client(server: ServerThread) -> tasks_v2.CloudTasksClient:
    return tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture(autouse=True)
def clean(server: ServerThread, receiver: Receiver) -> None:
    response = requests.post(f"{server.url}/_emulator/cloudtasks/reset", timeout=30)
    response.raise_for_status()
    assert response.json() == {"drained": True}
    receiver.clear()


def seconds(value: float) -> dict[str, int]:
    whole = int(value)
    return {"seconds": whole, "nanos": round((value - whole) * 1e9)}


def make_queue(
    client: tasks_v2.CloudTasksClient,
    queue_id: str,
    rate: float | None = None,
    concurrent: int | None = None,
    **retry: Any,
) -> Queue:
    queue: dict[str, Any] = {"name": f"{PARENT}/queues/{queue_id}"}
    limits = {"max_dispatches_per_second": rate, "max_concurrent_dispatches": concurrent}
    if any(v is not None for v in limits.values()):
        queue["rate_limits"] = {k: v for k, v in limits.items() if v is not None}
    if retry:
        queue["retry_config"] = {
            k: seconds(v) if k.endswith(("backoff", "duration")) else v for k, v in retry.items()
        }
    return client.create_queue(parent=PARENT, queue=queue)


def http_task(url: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"http_request": {"url": url, **extra}}
    if name:
        task["name"] = name
    return task


def dispatch_log(
    server: ServerThread, wait: int = 0, task: str = "", queue: str = ""
) -> list[dict[str, Any]]:
    response = requests.get(
        f"{server.url}/_emulator/cloudtasks/dispatches",
        params={"wait": wait, "task": task, "queue": queue, "timeout": 20},
        timeout=30,
    )
    response.raise_for_status()
    log: list[dict[str, Any]] = response.json()["dispatches"]
    assert len(log) >= wait, log
    return log


def wait_idle(server: ServerThread, queue: str = "") -> None:
    response = requests.get(
        f"{server.url}/_emulator/cloudtasks/idle",
        params={"timeout": 20, "queue": queue},
        timeout=30,
    )
    assert response.json()["idle"], response.json()


def status_of(error: exceptions.GoogleAPICallError) -> str:
    assert error.response is not None
    return str(error.response.json()["error"]["status"])


def gaps(times: Iterable[float]) -> list[float]:
    ordered = list(times)
    return [b - a for a, b in itertools.pairwise(ordered)]


# -- queues ------------------------------------------------------------------------------------
def test_queue_create_get_list_update_and_delete(client: tasks_v2.CloudTasksClient) -> None:
    created = make_queue(
        client, "notify", rate=20, concurrent=4, max_attempts=7, min_backoff=0.5, max_backoff=30
    )
    assert created.name == f"{PARENT}/queues/notify"
    assert created.state == Queue.State.RUNNING
    assert created.rate_limits.max_dispatches_per_second == 20
    assert created.rate_limits.max_burst_size == 20  # output only, picked from the rate
    assert created.rate_limits.max_concurrent_dispatches == 4
    assert created.retry_config.max_attempts == 7
    assert created.retry_config.min_backoff.total_seconds() == 0.5
    assert created.retry_config.max_backoff.total_seconds() == 30
    assert created.retry_config.max_doublings == 16  # unset: the default
    assert client.get_queue(name=created.name) == created

    updated = client.update_queue(
        queue={"name": created.name, "rate_limits": {"max_dispatches_per_second": 2}},
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 2
    assert updated.rate_limits.max_burst_size == 2
    assert updated.rate_limits.max_concurrent_dispatches == 4  # outside the mask: kept
    assert updated.retry_config.max_attempts == 7

    names = [q.name for q in client.list_queues(parent=PARENT)]
    assert names == sorted([created.name, SEEDED])
    client.delete_queue(name=created.name)
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=created.name)
    assert [q.name for q in client.list_queues(parent=PARENT)] == [SEEDED]


def test_queue_defaults_duplicates_and_bad_names(client: tasks_v2.CloudTasksClient) -> None:
    queue = make_queue(client, "plain")
    assert queue.rate_limits.max_dispatches_per_second == 500
    assert queue.rate_limits.max_concurrent_dispatches == 1000
    assert queue.retry_config.max_attempts == 100
    assert queue.retry_config.min_backoff.total_seconds() == 0.1
    assert queue.retry_config.max_backoff.total_seconds() == 3600
    assert queue.retry_config.max_doublings == 16
    with pytest.raises(exceptions.Conflict) as caught:
        make_queue(client, "plain")
    assert status_of(caught.value) == "ALREADY_EXISTS"
    with pytest.raises(exceptions.BadRequest):
        make_queue(client, "under_score")
    with pytest.raises(exceptions.BadRequest):
        make_queue(client, "too-fast", rate=501)
    with pytest.raises(exceptions.BadRequest):
        make_queue(client, "inverted", min_backoff=10, max_backoff=1)


def test_update_queue_creates_a_missing_queue(client: tasks_v2.CloudTasksClient) -> None:
    name = f"{PARENT}/queues/upserted"
    made = client.update_queue(queue={"name": name, "retry_config": {"max_attempts": 3}})
    assert made.retry_config.max_attempts == 3
    assert client.get_queue(name=name).name == name


def test_pause_resume_and_list_by_state(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(client, "pausable")
    assert client.pause_queue(name=queue.name).state == Queue.State.PAUSED
    request = {"parent": PARENT, "filter": "state: PAUSED"}
    assert [q.name for q in client.list_queues(request=request)] == [queue.name]
    task = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/paused"))
    time.sleep(0.5)
    assert receiver.at("/paused") == []
    assert client.get_task(name=task.name).dispatch_count == 0
    assert client.resume_queue(name=queue.name).state == Queue.State.RUNNING
    log = dispatch_log(server, wait=1, task=task.name)
    assert log[0]["outcome"] == "acknowledged"
    assert len(receiver.at("/paused")) == 1


def test_purge_drops_every_task(
    client: tasks_v2.CloudTasksClient, receiver_url: str, receiver: Receiver
) -> None:
    queue = make_queue(client, "purged")
    client.pause_queue(name=queue.name)
    for n in range(3):
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/p{n}"))
    purged = client.purge_queue(name=queue.name)
    assert purged.purge_time is not None
    assert list(client.list_tasks(parent=queue.name)) == []
    client.resume_queue(name=queue.name)
    time.sleep(0.3)
    assert receiver.received == []


# -- tasks ------------------------------------------------------------------------------------
def test_named_tasks_deduplicate_while_they_exist_and_after_they_are_gone(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver_url: str
) -> None:
    queue = make_queue(client, "dedup")
    client.pause_queue(name=queue.name)
    name = f"{queue.name}/tasks/booking-42-schedule"
    task = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/d", name))
    assert task.name == name
    with pytest.raises(exceptions.Conflict) as existing:
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/d", name))
    assert status_of(existing.value) == "ALREADY_EXISTS"

    client.delete_task(name=name)
    with pytest.raises(exceptions.NotFound) as gone:
        client.get_task(name=name)
    assert "existed recently" in gone.value.message
    with pytest.raises(exceptions.Conflict) as deleted:
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/d", name))
    assert status_of(deleted.value) == "ALREADY_EXISTS"
    assert "too recently" in deleted.value.message

    # A completed task's name stays reserved too.
    client.resume_queue(name=queue.name)
    done = f"{queue.name}/tasks/booking-43-schedule"
    client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/d", done))
    assert dispatch_log(server, wait=1, task=done)[0]["outcome"] == "acknowledged"
    with pytest.raises(exceptions.Conflict):
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/d", done))

    # The window is a setting (Google: about an hour, up to 24 hours).
    requests.post(
        f"{server.url}/_emulator/cloudtasks/settings",
        json={"dedupWindowSeconds": 0},
        timeout=TIMEOUT,
    ).raise_for_status()
    client.pause_queue(name=queue.name)
    client.delete_task(
        name=client.create_task(
            parent=queue.name,
            task=http_task(f"{receiver_url}/d", f"{queue.name}/tasks/short-lived"),
        ).name
    )
    client.create_task(
        parent=queue.name, task=http_task(f"{receiver_url}/d", f"{queue.name}/tasks/short-lived")
    )


def test_unnamed_tasks_get_an_id_and_bad_tasks_are_refused(
    client: tasks_v2.CloudTasksClient, receiver_url: str
) -> None:
    queue = make_queue(client, "checks")
    client.pause_queue(name=queue.name)
    made = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/x"))
    assert made.name.startswith(f"{queue.name}/tasks/")
    assert made.dispatch_deadline.total_seconds() == 600
    bad: list[dict[str, Any]] = [
        http_task("ftp://example.com/"),
        http_task(f"{receiver_url}/x", http_method=tasks_v2.HttpMethod.GET, body=b"no"),
        http_task(f"{receiver_url}/x", f"{PARENT}/queues/other/tasks/t1"),
        http_task(f"{receiver_url}/x", f"{queue.name}/tasks/bad.id"),
        {**http_task(f"{receiver_url}/x"), "dispatch_deadline": {"seconds": 5}},
        {
            **http_task(f"{receiver_url}/x"),
            "schedule_time": timestamp_pb2.Timestamp(seconds=int(time.time()) + 31 * 86400),
        },
        http_task(f"{receiver_url}/x", body=b"x" * (101 * 1024)),
    ]
    for task in bad:
        with pytest.raises(exceptions.BadRequest):
            client.create_task(parent=queue.name, task=task)
    with pytest.raises(exceptions.NotFound):
        client.create_task(parent=f"{PARENT}/queues/missing", task=http_task(f"{receiver_url}/x"))


def test_views_list_and_get(client: tasks_v2.CloudTasksClient, receiver_url: str) -> None:
    queue = make_queue(client, "views")
    client.pause_queue(name=queue.name)
    name = f"{queue.name}/tasks/with-body"
    client.create_task(
        parent=queue.name,
        task=http_task(f"{receiver_url}/v", name, body=b'{"bookingId": "b1"}'),
    )
    basic = client.get_task(name=name)
    assert basic.view == Task.View.BASIC
    assert basic.http_request.body == b""  # the basic view leaves payloads out
    full = client.get_task(request={"name": name, "response_view": Task.View.FULL})
    assert full.http_request.body == b'{"bookingId": "b1"}'
    listed = list(client.list_tasks(request={"parent": queue.name, "response_view": 2}))
    assert [t.http_request.body for t in listed] == [b'{"bookingId": "b1"}']
    for n in range(4):
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/v{n}"))
    pages = client.list_tasks(request={"parent": queue.name, "page_size": 2}).pages
    assert [len(page.tasks) for page in pages] == [2, 2, 1]


# -- dispatch ----------------------------------------------------------------------------------
def test_dispatch_carries_the_task_and_a_verifiable_oidc_token(
    client: tasks_v2.CloudTasksClient,
    server: ServerThread,
    oauth_server: ServerThread,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    queue = make_queue(client, "schedule")
    name = f"{queue.name}/tasks/booking-7"
    created = client.create_task(
        parent=queue.name,
        task=http_task(
            f"{receiver_url}/schedule_class?source=tasks",
            name,
            body=b'{"bookingId": "booking-7"}',
            headers={
                "Content-Type": "application/json",
                "X-Trace": "abc",
                "X-CloudTasks-QueueName": "forged",
                "User-Agent": "mine",
            },
            oidc_token={"service_account_email": INVOKER, "audience": "schedule-class"},
        ),
    )
    log = dispatch_log(server, wait=1, task=name)
    assert log[0]["outcome"] == "acknowledged" and log[0]["status"] == 200
    [got] = receiver.at("/schedule_class")
    assert got.method == "POST"
    assert got.body == b'{"bookingId": "booking-7"}'
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-trace"] == "abc"
    assert got.headers["user-agent"] == "Google-Cloud-Tasks"
    assert got.headers["x-cloudtasks-queuename"] == "schedule"
    assert got.headers["x-cloudtasks-taskname"] == "booking-7"
    assert got.headers["x-cloudtasks-taskretrycount"] == "0"
    assert got.headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert "x-cloudtasks-taskpreviousresponse" not in got.headers
    eta = float(got.headers["x-cloudtasks-tasketa"])
    assert abs(eta - created.schedule_time.timestamp()) < 1e-3
    scheme, _, token = got.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = id_token.verify_token(
        token,
        Request(),
        audience="schedule-class",
        certs_url=f"{oauth_server.url}/oauth2/v1/certs",
    )
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == INVOKER
    assert claims["email_verified"] is True
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=name)  # acknowledged: deleted


def test_oidc_audience_defaults_to_the_url_and_get_has_no_body(
    client: tasks_v2.CloudTasksClient,
    server: ServerThread,
    oauth_server: ServerThread,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    queue = make_queue(client, "audience")
    url = f"{receiver_url}/renew_watch"
    task = client.create_task(
        parent=queue.name,
        task=http_task(
            url,
            http_method=tasks_v2.HttpMethod.GET,
            oidc_token={"service_account_email": INVOKER},
        ),
    )
    dispatch_log(server, wait=1, task=task.name)
    [got] = receiver.at("/renew_watch")
    assert got.method == "GET" and got.body == b""
    token = got.headers["authorization"].removeprefix("Bearer ")
    certs = f"{oauth_server.url}/oauth2/v1/certs"
    assert id_token.verify_token(token, Request(), audience=url, certs_url=certs)["aud"] == url


def test_a_task_waits_for_its_schedule_time(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(client, "later")
    due = time.time() + 1.0
    when = timestamp_pb2.Timestamp()
    when.FromNanoseconds(int(due * 1e9))
    task = client.create_task(
        parent=queue.name, task={**http_task(f"{receiver_url}/later"), "schedule_time": when}
    )
    dispatch_log(server, wait=1, task=task.name)
    [got] = receiver.at("/later")
    assert got.at >= due
    assert abs(float(got.headers["x-cloudtasks-tasketa"]) - due) < 1e-3


def test_errors_are_retried_with_the_queue_backoff(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(
        client, "flaky", max_attempts=5, min_backoff=0.2, max_backoff=5, max_doublings=3
    )
    receiver.answer("/flaky", 500, 404, 200)
    task = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/flaky"))
    log = dispatch_log(server, wait=3, task=task.name)
    assert [e["status"] for e in log] == [500, 404, 200]
    assert [e["outcome"] for e in log] == ["retry", "retry", "acknowledged"]
    got = receiver.at("/flaky")
    first, second = gaps(r.at for r in got)
    assert 0.2 <= first < 0.2 + 0.5
    assert 0.4 <= second < 0.4 + 0.5  # doubled
    retry_counts = [r.headers["x-cloudtasks-taskretrycount"] for r in got]
    assert retry_counts == ["0", "1", "2"]
    # ExecutionCount leaves 5xx answers out; PreviousResponse names the last answer.
    assert [r.headers["x-cloudtasks-taskexecutioncount"] for r in got] == ["0", "0", "1"]
    previous = [r.headers.get("x-cloudtasks-taskpreviousresponse") for r in got]
    assert previous == [None, "500", "404"]


def test_backoff_follows_googles_documented_progression() -> None:
    config = QueueConfig(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [config.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_429_and_503_back_off_faster_and_retry_after_is_honoured(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(client, "busy", max_attempts=10, min_backoff=0.1, max_backoff=10)
    receiver.answer("/unavailable", 503, 503, 200)
    receiver.answer("/limited", (429, {"Retry-After": "2"}), 200)
    unavailable = client.create_task(
        parent=queue.name, task=http_task(f"{receiver_url}/unavailable")
    )
    limited = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/limited"))
    dispatch_log(server, wait=3, task=unavailable.name)
    log = dispatch_log(server, wait=2, task=limited.name)
    assert log[0]["status"] == 429 and log[0]["retryAfter"] == 2.0
    # A 500 would wait 0.1s then 0.2s; after 503s the waits double once more per 503 in a row.
    first, second = gaps(r.at for r in receiver.at("/unavailable"))
    assert 0.2 <= first < 0.2 + 0.5
    assert 0.8 <= second < 0.8 + 0.5
    (waited,) = gaps(r.at for r in receiver.at("/limited"))
    assert 2.0 <= waited < 2.0 + 0.5  # Retry-After beats the 0.2s backoff
    state = requests.get(f"{server.url}/_emulator/cloudtasks/queues", timeout=TIMEOUT).json()
    assert state["queues"][queue.name]["throttle"] < 1  # system throttling: rate lowered


def test_max_attempts_gives_up(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(client, "doomed", max_attempts=3, min_backoff=0.05, max_backoff=0.1)
    receiver.answer("/doomed", 500, 500, 500, 500, 500)
    name = f"{queue.name}/tasks/doomed-1"
    client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/doomed", name))
    wait_idle(server, queue.name)
    log = dispatch_log(server, task=name)
    assert [e["outcome"] for e in log] == ["retry", "retry", "gave_up"]
    assert len(receiver.at("/doomed")) == 3
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=name)
    with pytest.raises(exceptions.Conflict):  # given up counts as executed for de-duplication
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/doomed", name))


def test_max_retry_duration_keeps_retrying_past_max_attempts(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(
        client,
        "patient",
        max_attempts=2,
        max_retry_duration=1,
        min_backoff=0.2,
        max_backoff=0.2,
    )
    receiver.answer("/patient", *[500] * 20)
    task = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/patient"))
    wait_idle(server, queue.name)
    log = dispatch_log(server, task=task.name)
    assert log[-1]["outcome"] == "gave_up"
    assert len(log) >= 4  # two attempts were not enough: a second had not passed
    got = receiver.at("/patient")
    assert got[-1].at - got[0].at >= 1.0


def test_run_task_dispatches_at_once_even_when_paused(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(client, "manual", min_backoff=30, max_backoff=60)
    client.pause_queue(name=queue.name)
    receiver.answer("/manual", 500)
    task = client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/manual"))
    ran = client.run_task(name=task.name)
    assert ran.dispatch_count == 1
    assert ran.last_attempt.dispatch_time is not None
    log = dispatch_log(server, wait=1, task=task.name)
    assert log[0]["forced"] is True and log[0]["outcome"] == "retry"
    after = client.get_task(name=task.name)
    assert after.response_count == 1
    assert after.last_attempt.response_status.code == 13  # INTERNAL, from the 500
    assert after.schedule_time.timestamp() >= time.time() + 25  # now + the 30s backoff
    client.run_task(name=task.name)  # answered 200 this time: acknowledged
    assert dispatch_log(server, wait=2, task=task.name)[1]["outcome"] == "acknowledged"
    with pytest.raises(exceptions.NotFound):
        client.run_task(name=task.name)


def test_rate_limit_is_respected(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    rate, count = 5.0, 16
    queue = make_queue(client, "throttled", rate=rate)
    burst = queue.rate_limits.max_burst_size
    client.pause_queue(name=queue.name)
    for n in range(count):
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/rate/{n}"))
    client.resume_queue(name=queue.name)
    wait_idle(server, queue.name)
    times = sorted(r.at for r in receiver.received)
    assert len(times) == count
    # A token bucket: in any window of T seconds, at most burst + rate * T dispatches.
    for i, start in enumerate(times):
        for window in (0.5, 1.0, 2.0):
            inside = sum(1 for t in times[i:] if t - start <= window)
            assert inside <= burst + rate * window + 1, (window, inside)
    assert times[-1] - times[0] >= (count - burst) / rate - 0.3


def test_max_concurrent_dispatches_is_respected(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver: Receiver, receiver_url: str
) -> None:
    queue = make_queue(client, "narrow", concurrent=2)
    receiver.delay = 0.3
    for n in range(6):
        client.create_task(parent=queue.name, task=http_task(f"{receiver_url}/narrow/{n}"))
    wait_idle(server, queue.name)
    assert len(receiver.received) == 6
    assert receiver.most_active == 2


def test_unreachable_worker_is_retried(
    client: tasks_v2.CloudTasksClient, server: ServerThread
) -> None:
    queue = make_queue(client, "nowhere", max_attempts=2, min_backoff=0.05, max_backoff=0.05)
    task = client.create_task(parent=queue.name, task=http_task("http://127.0.0.1:9/closed"))
    log = dispatch_log(server, wait=2, task=task.name)
    assert [e["status"] for e in log] == [None, None]
    assert log[0]["error"].startswith("UNAVAILABLE")
    assert log[-1]["outcome"] == "gave_up"


def test_reset_restores_the_seeded_queue_and_forgets_tasks(
    client: tasks_v2.CloudTasksClient, server: ServerThread, receiver_url: str
) -> None:
    client.pause_queue(name=SEEDED)
    client.update_queue(
        queue={"name": SEEDED, "retry_config": {"max_attempts": 9}},
        update_mask=field_mask_pb2.FieldMask(paths=["retry_config.max_attempts"]),
    )
    name = f"{SEEDED}/tasks/kept-until-reset"
    client.create_task(parent=SEEDED, task=http_task(f"{receiver_url}/r", name))
    make_queue(client, "temporary")
    requests.post(f"{server.url}/_emulator/cloudtasks/reset", timeout=30).raise_for_status()
    seeded = client.get_queue(name=SEEDED)
    assert seeded.state == Queue.State.RUNNING
    assert seeded.retry_config.max_attempts == 5
    assert list(client.list_tasks(parent=SEEDED)) == []
    assert [q.name for q in client.list_queues(parent=PARENT)] == [SEEDED]
    assert dispatch_log(server) == []
    client.create_task(parent=SEEDED, task=http_task(f"{receiver_url}/r", name))  # name free


def test_api_errors_can_be_injected(
    client: tasks_v2.CloudTasksClient, server: ServerThread
) -> None:
    requests.post(
        f"{server.url}/_emulator/faults",
        json={"rules": [{"status": 503, "count": 1, "pathContains": "/queues"}]},
        timeout=TIMEOUT,
    ).raise_for_status()
    try:
        with pytest.raises(exceptions.ServiceUnavailable):
            client.get_queue(name=SEEDED, retry=None)
        assert client.get_queue(name=SEEDED).name == SEEDED
    finally:
        requests.delete(f"{server.url}/_emulator/faults", timeout=TIMEOUT)
