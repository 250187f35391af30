"""The local stack: the official Firestore emulator, our emulators, and every function.

`LocalStack.start()` brings everything up on free loopback ports, seeds Secret Manager with
the stack's (throwaway) credentials, points the Mercado Pago emulator's webhook at the local
payment_webhook (so a refund is notified as in production), creates the Cloud Tasks queue the
platform will schedule classes through, and returns the `stack.json`
document that tests, benchmarks and outside tools rely on. Functions run either as
`functions-framework` processes (what `./dev.sh up` does, like production) or as threads of
this process (what the test suite does, so it can reach clients and state directly).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.gateway import Gateway
from emulators import EmulatorCredentials, RunningEmulators, start_emulators
from emulators._base import ServerThread

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
PROJECT_ID = "demo-virtual-classes"
CALENDAR_ID = "clases@demo-virtual-classes.local"
ADMIN_EMAIL = "admin@example.com"
# Cloud Tasks: the region infra/ deploys to, the queue classes are scheduled through and the
# queue holding the sync's deferred rounds (both as infra/main.tf declares them).
CLOUD_TASKS_LOCATION = "southamerica-east1"
TASKS_INVOKER = "tasks-invoker@demo-virtual-classes.iam.gserviceaccount.com"
SCHEDULE_QUEUE_ID = "schedule-class"
SYNC_QUEUE_ID = "calendar-sync"
OPENAPI = ROOT / "docs" / "openapi.yaml"


def openapi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Serves the functions' contract (docs/openapi.yaml) at any path, for API tools."""
    body = OPENAPI.read_bytes()
    start_response(
        "200 OK", [("Content-Type", "application/yaml"), ("Content-Length", str(len(body)))]
    )
    return [body]


class PrerequisiteMissing(RuntimeError):
    """A tool the stack needs is not installed; the message says what to install."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def function_names() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/main.py"))


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    """Poll until something answers HTTP at `url` (any status counts as up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answered at {url} within {timeout:.0f}s") from None
            time.sleep(0.1)


def check_prerequisites() -> None:
    if shutil.which("java") is None:
        raise PrerequisiteMissing("Java is missing: install a JRE 11+ (e.g. openjdk-17-jre).")
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise PrerequisiteMissing(
            "gcloud is missing: install the Google Cloud CLI with the Firestore emulator "
            "component (gcloud components install cloud-firestore-emulator)."
        )
    sdk_root = Path(gcloud).resolve().parent.parent
    if not any(sdk_root.glob("**/cloud-firestore-emulator/cloud_firestore_emulator")):
        raise PrerequisiteMissing(
            "The Firestore emulator is missing: gcloud components install "
            "cloud-firestore-emulator (or the Debian package "
            "google-cloud-cli-firestore-emulator)."
        )


class FirestoreEmulator:
    """The official emulator, started through gcloud in a process group of its own."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> FirestoreEmulator:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            ["gcloud", "emulators", "firestore", "start", f"--host-port={self.host}"],
            # Under faketime (devstack/faketime) the JVM keeps both clocks faked, which it
            # handles; only Python's processes need the monotonic clock left real.
            env={k: v for k, v in os.environ.items() if k != "FAKETIME_DONT_FAKE_MONOTONIC"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(f"http://{self.host}/", timeout=90)
        return self

    def reset(self, project_id: str) -> None:
        """Drop every document (the emulator's own endpoint for it)."""
        url = f"http://{self.host}/emulator/v1/projects/{project_id}/databases/(default)/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process = None


@dataclass
class LocalStack:
    """Everything `./dev.sh up` runs, startable from a test session too.

    Two options exist for fault injection (`proof/`), both off by default:
    `firestore_front(host)` receives the Firestore emulator's `host:port` once it runs and
    returns the `host:port` the functions are given instead (a proxy in front of it), while
    `stack.json` `emulators.firestore` keeps naming the emulator itself; `function_env` adds
    environment variables per function (e.g. `THREADS`, functions-framework's worker
    threads). With functions as processes, `restart_function` kills one and starts it again.
    """

    functions_in_process: bool = False
    scheduling_queue: bool = False
    """Set SCHEDULING_QUEUE: paid classes go through Cloud Tasks to `schedule_class`, as
    deployed (`./dev.sh up` and the demo). Off, the webhook calls Calendar itself: the
    path the suite proves by default (its queue tests set the variable)."""
    state_dir: Path = ROOT / ".local"
    project_id: str = PROJECT_ID
    calendar_id: str = CALENDAR_ID
    firestore_front: Callable[[str], str] | None = None
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    firestore: FirestoreEmulator | None = None
    emulators: RunningEmulators | None = None
    document: dict[str, Any] = field(default_factory=dict)
    _function_servers: list[ServerThread] = field(default_factory=list)
    function_processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _function_ports: dict[str, int] = field(default_factory=dict)
    _function_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> dict[str, Any]:
        check_prerequisites()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.firestore = FirestoreEmulator(log_path=self.state_dir / "firestore.log").start()
        creds = EmulatorCredentials(
            oauth_client_id="local-client.apps.googleusercontent.com",
            oauth_client_secret=secrets.token_urlsafe(24),
            refresh_token="1//local-" + secrets.token_urlsafe(32),
            mercadopago_access_token="TEST-local-" + secrets.token_hex(16),
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per emulator request
        self.emulators = start_emulators(creds)
        urls = self.emulators.urls()
        oauth_base = urls["oauth"]
        queues = f"projects/{self.project_id}/locations/{CLOUD_TASKS_LOCATION}/queues"
        schedule_queue = f"{queues}/{SCHEDULE_QUEUE_ID}"
        sync_queue = f"{queues}/{SYNC_QUEUE_ID}"
        for queue in (schedule_queue, sync_queue):
            self.emulators.cloudtasks.seed_queue(queue)  # reset puts it back as it is
        stack_secrets = {
            "mercadopago_webhook_secret": secrets.token_hex(32),
            "admin_api_key": secrets.token_urlsafe(32),
        }
        self._seed_secrets(creds, stack_secrets, oauth_base)
        names = function_names()
        ports = {name: free_port() for name in names}
        function_urls = {name: f"http://127.0.0.1:{ports[name]}/{name}" for name in names}
        env = {
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            "CALENDAR_ID": self.calendar_id,
            "FIRESTORE_EMULATOR_HOST": (
                self.firestore_front(self.firestore.host)
                if self.firestore_front
                else self.firestore.host
            ),
            "CALENDAR_API_ENDPOINT": urls["calendar"],
            "SECRET_MANAGER_ENDPOINT": urls["secretmanager"],
            "GOOGLE_OAUTH_AUTH_URI": f"{oauth_base}/o/oauth2/auth",
            "GOOGLE_OAUTH_TOKEN_URI": f"{oauth_base}/token",
            "GOOGLE_CERTS_URL": f"{oauth_base}/oauth2/v1/certs",
            "MERCADOPAGO_API_BASE": urls["mercadopago"],
            # Where the Cloud Tasks client and the IAM Credentials API (signJwt/signBlob,
            # served by the OAuth emulator) are pointed.
            "CLOUD_TASKS_ENDPOINT": urls["cloudtasks"],
            "IAM_CREDENTIALS_ENDPOINT": oauth_base,
            "OAUTHLIB_INSECURE_TRANSPORT": "1",  # the OAuth emulator speaks http on loopback
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "ID_TOKEN_AUDIENCE": "local-virtual-classes",
            # The repository, then what dev.sh set (under faketime: devstack/faketime).
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        if "oauth_callback" in function_urls:
            env["OAUTH_REDIRECT_URI"] = function_urls["oauth_callback"]
        if "schedule_class" in function_urls:
            # The queue's target and the identity of its OIDC tokens.
            env["SCHEDULE_CLASS_URL"] = function_urls["schedule_class"]
            env["TASKS_INVOKER_EMAIL"] = TASKS_INVOKER
            if self.scheduling_queue:
                env["SCHEDULING_QUEUE"] = schedule_queue
        if "calendar_notifications" in function_urls:
            env["NOTIFICATIONS_URL"] = function_urls["calendar_notifications"]
            if "TASKS_INVOKER_EMAIL" in env:
                env["SYNC_QUEUE"] = sync_queue  # the sync keeps its pace, as deployed
        if "payment_webhook" in function_urls:
            # What a merchant sets in Mercado Pago's "Your integrations": the URL with
            # source_news=webhooks (no IPN beside it) and the secret its signatures use.
            self.emulators.mercadopago.configure_webhook(
                function_urls["payment_webhook"] + "?source_news=webhooks",
                stack_secrets["mercadopago_webhook_secret"],
            )
        self._start_functions(names, ports, env)
        openapi = ServerThread(openapi_app).start()
        self._function_servers.append(openapi)
        # Every function on one origin, as cloudfunctions.net serves them: the console's page
        # calls the others there.
        site = ServerThread(Gateway(ports)).start()
        self._function_servers.append(site)
        self.document = {
            "project_id": self.project_id,
            "calendar_id": self.calendar_id,
            "functions": function_urls,
            "site": {
                "url": site.url,
                "functions": {name: f"{site.url}/{name}" for name in names},
            },
            "console": {
                "url": f"{site.url}/admin_console" if "admin_console" in names else None,
                "sign_in_as": ADMIN_EMAIL,
            },
            "emulators": {"firestore": self.firestore.host, **urls},
            "oauth": {
                "auth_uri": env["GOOGLE_OAUTH_AUTH_URI"],
                "token_uri": env["GOOGLE_OAUTH_TOKEN_URI"],
                "client_id": creds.oauth_client_id,
                "client_secret": creds.oauth_client_secret,
                "refresh_token": creds.refresh_token,
            },
            "secrets": stack_secrets,
            "cloud_tasks": {
                "endpoint": urls["cloudtasks"],
                "location": CLOUD_TASKS_LOCATION,
                "queues": {"schedule_class": schedule_queue, "calendar_sync": sync_queue},
            },
            "admin_email": ADMIN_EMAIL,
            "openapi": {"path": str(OPENAPI), "url": f"{openapi.url}/openapi.yaml"},
            "env": env,
        }
        (self.state_dir / "stack.json").write_text(json.dumps(self.document, indent=2) + "\n")
        if "renew_watch" in function_urls:
            self._register_channel(function_urls["renew_watch"], stack_secrets["admin_api_key"])
        return self.document

    @staticmethod
    def _register_channel(renew_url: str, api_key: str) -> None:
        """Open the calendar's push channel now, as the scheduler would, so changes sync at once."""
        request = urllib.request.Request(
            renew_url, data=b"", method="POST", headers={"X-API-Key": api_key}
        )
        try:
            urllib.request.urlopen(request, timeout=60).close()
        except OSError as exc:
            print(f"devstack: could not open the calendar channel: {exc}", file=sys.stderr)

    def _seed_secrets(
        self, creds: EmulatorCredentials, stack_secrets: dict[str, str], oauth_base: str
    ) -> None:
        assert self.emulators is not None
        client_json = {
            "web": {
                "client_id": creds.oauth_client_id,
                "client_secret": creds.oauth_client_secret,
                "auth_uri": f"{oauth_base}/o/oauth2/auth",
                "token_uri": f"{oauth_base}/token",
                "redirect_uris": [],
            }
        }
        values = {
            "google-oauth-client": json.dumps(client_json),
            "google-calendar-refresh-token": creds.refresh_token,
            "mercadopago-access-token": creds.mercadopago_access_token,
            "mercadopago-webhook-secret": stack_secrets["mercadopago_webhook_secret"],
            "admin-api-key": stack_secrets["admin_api_key"],
            "oauth-state-key": secrets.token_hex(32),
            "google-public-api-key": "local-public-" + secrets.token_hex(8),
        }
        for secret_id, value in values.items():
            self.emulators.secretmanager.seed(self.project_id, secret_id, value.encode())

    def _start_functions(
        self, names: list[str], ports: dict[str, int], env: dict[str, str]
    ) -> None:
        if self.functions_in_process:
            import functions_framework

            os.environ.update(env)
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            for name in names:
                app = functions_framework.create_app(name, str(FUNCTIONS_DIR / name / "main.py"))
                self._function_servers.append(ServerThread(app, ports[name]).start())
            return
        self._function_ports = dict(ports)
        self._function_env = {**os.environ, **env}
        for name in names:
            self._spawn_function(name, truncate_log=True)
        for name in names:
            wait_for_http(f"http://127.0.0.1:{ports[name]}/", timeout=60)

    def _spawn_function(self, name: str, *, truncate_log: bool) -> None:
        bin_dir = Path(sys.executable).parent
        log = open(self.state_dir / f"{name}.log", "wb" if truncate_log else "ab")  # noqa: SIM115
        self.function_processes[name] = subprocess.Popen(
            [
                str(bin_dir / "functions-framework"),
                f"--source={FUNCTIONS_DIR / name / 'main.py'}",
                f"--target={name}",
                "--host=127.0.0.1",
                f"--port={self._function_ports[name]}",
            ],
            env={**self._function_env, **self.function_env.get(name, {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own copy

    def restart_function(self, name: str, kill_signal: int = signal.SIGKILL) -> float:
        """Kill one function's instance (its whole process group) and start it again on the
        same port, its log appended to; returns the seconds until it answered again."""
        if self.functions_in_process:
            raise RuntimeError("restart_function needs functions as processes")
        started = time.monotonic()
        process = self.function_processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, kill_signal)
        process.wait(timeout=30)
        self._spawn_function(name, truncate_log=False)
        wait_for_http(f"http://127.0.0.1:{self._function_ports[name]}/", timeout=60)
        return time.monotonic() - started

    def stop(self) -> None:
        for process in self.function_processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.function_processes.clear()
        for server in self._function_servers:
            server.stop()
        self._function_servers.clear()
        if self.emulators is not None:
            self.emulators.stop()
            self.emulators = None
        if self.firestore is not None:
            self.firestore.stop()
            self.firestore = None


def is_alive(document: dict[str, Any]) -> bool:
    """Whether a stack described by `stack.json` still answers (its Firestore and functions)."""
    try:
        wait_for_http(f"http://{document['emulators']['firestore']}/", timeout=1)
        for url in document["functions"].values():
            wait_for_http(url.rsplit("/", 1)[0] + "/", timeout=1)
    except (TimeoutError, KeyError):
        return False
    return True
