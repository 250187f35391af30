"""The Cloud Tasks emulator inside the local stack: where `stack.json` says, with its queue.

The functions will be given `CLOUD_TASKS_ENDPOINT`; the queue classes are scheduled through
and the one holding the sync's deferred rounds exist from the start, in the region infra/
deploys to, and every test starts with them empty.
"""

from __future__ import annotations

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2

from devstack.client import StackClient

QUEUE = "projects/demo-virtual-classes/locations/southamerica-east1/queues/schedule-class"
SYNC_QUEUE = "projects/demo-virtual-classes/locations/southamerica-east1/queues/calendar-sync"


def tasks_client(client: StackClient) -> tasks_v2.CloudTasksClient:
    return tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": client.doc["env"]["CLOUD_TASKS_ENDPOINT"]},
    )


def test_stack_json_names_the_emulator_and_the_schedule_queue(client: StackClient) -> None:
    endpoint = client.doc["env"]["CLOUD_TASKS_ENDPOINT"]
    assert client.doc["emulators"]["cloudtasks"] == endpoint
    assert client.doc["cloud_tasks"] == {
        "endpoint": endpoint,
        "location": "southamerica-east1",
        "queues": {"schedule_class": QUEUE, "calendar_sync": SYNC_QUEUE},
    }
    assert client.doc["env"]["SYNC_QUEUE"] == SYNC_QUEUE  # the sync keeps its pace, as deployed
    assert client.doc["env"]["IAM_CREDENTIALS_ENDPOINT"] == client.doc["emulators"]["oauth"]
    for name in (QUEUE, SYNC_QUEUE):
        assert tasks_client(client).get_queue(name=name).state == tasks_v2.Queue.State.RUNNING


def test_a_task_is_dispatched_and_the_next_test_starts_empty(client: StackClient) -> None:
    tasks = tasks_client(client)
    tasks.pause_queue(name=QUEUE)
    tasks.create_task(
        parent=QUEUE,
        task={
            "name": f"{QUEUE}/tasks/left-for-reset",
            "http_request": {
                "url": client.doc["openapi"]["url"],
                "http_method": tasks_v2.HttpMethod.GET,
            },
        },
    )
    tasks.resume_queue(name=QUEUE)
    log = requests.get(
        client.doc["emulators"]["cloudtasks"] + "/_emulator/cloudtasks/dispatches",
        params={"wait": 1, "timeout": 20},
        timeout=30,
    ).json()["dispatches"]
    assert [(e["status"], e["outcome"]) for e in log] == [(200, "acknowledged")]
    tasks.pause_queue(name=QUEUE)  # the reset before the next test resumes it
    tasks.create_task(
        parent=QUEUE,
        task={"http_request": {"url": client.doc["openapi"]["url"]}},
    )


def test_reset_left_the_queue_running_empty_and_names_free(client: StackClient) -> None:
    tasks = tasks_client(client)
    assert tasks.get_queue(name=QUEUE).state == tasks_v2.Queue.State.RUNNING
    assert list(tasks.list_tasks(parent=QUEUE)) == []
    tasks.pause_queue(name=QUEUE)
    made = tasks.create_task(
        parent=QUEUE,
        task={
            "name": f"{QUEUE}/tasks/left-for-reset",
            "http_request": {"url": client.doc["openapi"]["url"]},
        },
    )
    assert made.name.endswith("/left-for-reset")
