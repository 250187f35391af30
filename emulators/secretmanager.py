"""Secret Manager v1 emulator (REST), shaped for the `google-cloud-secret-manager` REST transport.

`SecretManagerServiceClient(transport="rest", client_options={"api_endpoint": url},
credentials=AnonymousCredentials())` works against it unchanged: the transport sends
camelCase JSON bodies, `$alt=json;enum-encoding=int` on every call (so enums are answered
as numbers, as Google does) and maps errors by HTTP status alone.

Secrets live under `projects/{project}` or `projects/{project}/locations/{location}`. A
project may be named by id or number; names are echoed the way the caller wrote them, and
`register_project(id, number)` makes both spellings reach the same secrets.

`latest` means what it means upstream: the most recently created version, whatever its
state, so a disabled newest version makes `versions/latest:access` fail with
FAILED_PRECONDITION. `SecretManagerEmulator(latest_skips_disabled=True)` instead resolves
`latest` to the newest ENABLED version.

Control routes, besides the shared ones in `_base`:

- `POST /_emulator/secretmanager/reset`     forget every secret
- `POST /_emulator/secretmanager/seed`      {"project", "secretId", "value" | "valueBase64"}
- `POST /_emulator/secretmanager/projects`  {"projectId", "projectNumber"} alias two names
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets as pysecrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Response, request
from werkzeug.routing import BaseConverter

from emulators._base import EmulatorApp, json_response
from emulators._status import grpc_status

MAX_PAYLOAD_BYTES = 65536
MAX_PAGE_SIZE = 25000
_SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_STATES = {"STATE_UNSPECIFIED": 0, "ENABLED": 1, "DISABLED": 2, "DESTROYED": 3}


def _error_body(status: int, reason: str, message: str) -> dict[str, Any]:
    """Google's JSON error; `reason` may be a gRPC status name (FAILED_PRECONDITION...)."""
    return {"error": {"code": status, "message": message, "status": grpc_status(status, reason)}}


def _make_crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Secret Manager uses, without a native dependency."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _timestamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _etag() -> str:
    return '"' + pysecrets.token_hex(7) + '"'


class _SegmentConverter(BaseConverter):
    """One path segment up to a ':' so `{name}:access` and `{name}` don't collide."""

    regex = r"[^/:]+"


@dataclass
class _Version:
    number: int
    data: bytes | None
    create_time: dt.datetime
    client_checksum: bool
    state: str = "ENABLED"
    destroy_time: dt.datetime | None = None
    etag: str = field(default_factory=_etag)


@dataclass
class _Secret:
    secret_id: str
    fields: dict[str, Any]  # what the caller set (replication, labels, annotations, ...)
    create_time: dt.datetime
    etag: str = field(default_factory=_etag)
    versions: list[_Version] = field(default_factory=list)


class _ApiError(Exception):
    def __init__(self, status: int, grpc_status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.grpc_status = grpc_status
        self.message = message


def _not_found(message: str) -> _ApiError:
    return _ApiError(404, "NOT_FOUND", message)


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "INVALID_ARGUMENT", message)


def _parse_filter(text: str) -> list[list[tuple[bool, str, str, str]]]:
    """A small subset of the list filter grammar: AND of (OR-groups of) `[-]key(:|=|!=)value`.

    As upstream, OR binds tighter than the implicit AND between terms.
    """
    tokens = [t for t in re.split(r"\s+", text.strip()) if t and t.upper() != "AND"]
    groups: list[list[tuple[bool, str, str, str]]] = []
    join_next = False
    for token in tokens:
        if token.upper() == "OR":
            if not groups:
                raise _invalid(f"Invalid filter: {text}")
            join_next = True
            continue
        negate = token.startswith("-")
        term = token[1:] if negate else token
        match = re.match(r"^([A-Za-z_][\w.]*)(!=|=|:)(.*)$", term)
        if not match:
            raise _invalid(f"Invalid filter: {text}")
        key, op, value = match.group(1), match.group(2), match.group(3).strip('"')
        if join_next:
            groups[-1].append((negate, key, op, value))
            join_next = False
        else:
            groups.append([(negate, key, op, value)])
    if join_next:
        raise _invalid(f"Invalid filter: {text}")
    return groups


def _filter_matches(
    groups: list[list[tuple[bool, str, str, str]]], lookup: Callable[[str], str | None]
) -> bool:
    for group in groups:
        hit = False
        for negate, key, op, value in group:
            actual = lookup(key)
            if op == ":":
                ok = actual is not None and (value == "*" or value.lower() in actual.lower())
            elif op == "=":
                ok = actual is not None and actual.lower() == value.lower()
            else:
                ok = actual is None or actual.lower() != value.lower()
            if ok != negate:
                hit = True
                break
        if not hit:
            return False
    return True


def _page(items: list[Any]) -> tuple[list[Any], str]:
    """Applies pageSize/pageToken; the token is an opaque offset."""
    raw_size = request.args.get("pageSize", "0") or "0"
    token = request.args.get("pageToken", "")
    try:
        size = int(raw_size)
    except ValueError as exc:
        raise _invalid("Invalid pageSize") from exc
    if size < 0 or size > MAX_PAGE_SIZE:
        raise _invalid(f"pageSize must be between 0 and {MAX_PAGE_SIZE}")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))
        except (ValueError, binascii.Error) as exc:
            raise _invalid("Invalid pageToken") from exc
    size = size or MAX_PAGE_SIZE
    chunk = items[start : start + size]
    end = start + len(chunk)
    next_token = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else ""
    return chunk, next_token


class SecretManagerEmulator:
    """Secret Manager's secrets and versions, in memory, over the v1 REST surface."""

    def __init__(
        self,
        project_numbers: dict[str, str] | None = None,
        latest_skips_disabled: bool = False,
    ) -> None:
        self.latest_skips_disabled = latest_skips_disabled
        self._lock = threading.RLock()
        self._aliases: dict[str, str] = {}
        self._secrets: dict[tuple[str, str], _Secret] = {}
        for project_id, number in (project_numbers or {}).items():
            self.register_project(project_id, number)
        self.app = EmulatorApp("secretmanager", _error_body)
        self.app.app.url_map.converters["seg"] = _SegmentConverter
        self._install_routes()
        self._install_control_routes()

    # -- public, in-process API -------------------------------------------------------
    def register_project(self, project_id: str, project_number: str) -> None:
        """Lets `projects/{id}` and `projects/{number}` name the same secrets."""
        with self._lock:
            self._aliases[project_id] = project_number

    def seed(self, project: str, secret_id: str, value: bytes) -> str:
        """Creates the secret if missing and adds `value` as a new version; returns its name."""
        with self._lock:
            parent = f"projects/{project}"
            key = self._key(parent, secret_id)
            if key not in self._secrets:
                self._secrets[key] = _Secret(secret_id, {"replication": {"automatic": {}}}, _now())
            version = self._add_version(self._secrets[key], value, checksum=False)
            return f"{parent}/secrets/{secret_id}/versions/{version.number}"

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()

    # -- internals --------------------------------------------------------------------
    def _key(self, parent: str, secret_id: str) -> tuple[str, str]:
        parts = parent.split("/")
        parts[1] = self._aliases.get(parts[1], parts[1])
        return "/".join(parts), secret_id

    def _get_secret(self, parent: str, secret_id: str) -> _Secret:
        secret = self._secrets.get(self._key(parent, secret_id))
        if secret is None:
            raise _not_found(f"Secret [{parent}/secrets/{secret_id}] not found.")
        return secret

    def _add_version(self, secret: _Secret, data: bytes, checksum: bool) -> _Version:
        number = len(secret.versions) + 1
        version = _Version(number, data, _now(), client_checksum=checksum)
        secret.versions.append(version)
        return version

    def _resolve(self, secret: _Secret, secret_name: str, version_id: str) -> _Version:
        """Turns a version id (number, `latest`, or an alias) into a version."""
        name = f"{secret_name}/versions/{version_id}"
        if version_id == "latest":
            candidates = secret.versions
            if self.latest_skips_disabled:
                candidates = [v for v in candidates if v.state == "ENABLED"]
            if not candidates:
                raise _not_found(f"Secret [{secret_name}] not found or has no versions.")
            return candidates[-1]
        aliases = secret.fields.get("versionAliases") or {}
        if version_id in aliases:
            version_id = str(aliases[version_id])
        if not version_id.isdigit():
            raise _invalid(f"Invalid version id: {version_id}")
        number = int(version_id)
        if number < 1 or number > len(secret.versions):
            raise _not_found(f"Secret Version [{name}] not found.")
        return secret.versions[number - 1]

    @staticmethod
    def _parent(project: str, location: str | None) -> str:
        if location is None:
            return f"projects/{project}"
        return f"projects/{project}/locations/{location}"

    @staticmethod
    def _enum(state: str) -> str | int:
        if "enum-encoding=int" in request.args.get("$alt", ""):
            return _STATES[state]
        return state

    def _secret_json(self, parent: str, secret: _Secret) -> dict[str, Any]:
        body: dict[str, Any] = {"name": f"{parent}/secrets/{secret.secret_id}"}
        body.update(secret.fields)
        body["createTime"] = _timestamp(secret.create_time)
        body["etag"] = secret.etag
        return body

    def _version_json(self, secret_name: str, version: _Version) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"{secret_name}/versions/{version.number}",
            "createTime": _timestamp(version.create_time),
            "state": self._enum(version.state),
        }
        if version.destroy_time is not None:
            body["destroyTime"] = _timestamp(version.destroy_time)
        body["etag"] = version.etag
        body["clientSpecifiedPayloadChecksum"] = version.client_checksum
        return body

    def _run(self, handler: Callable[[], Any]) -> Response:
        """Runs a handler under the lock and turns `_ApiError` into Google's error JSON."""
        try:
            with self._lock:
                return json_response(handler())
        except _ApiError as exc:
            return self.app.error(exc.status, exc.grpc_status, exc.message)

    def _json_body(self) -> dict[str, Any]:
        if not request.data:
            return {}
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received.")
        return body

    # -- routes -------------------------------------------------------------------------
    def _route(self, suffix: str, methods: list[str], view: Callable[..., Response]) -> None:
        """Registers a route under both `projects/*` and `projects/*/locations/*`."""
        app = self.app.app
        for prefix in (
            "/v1/projects/<seg:project>",
            "/v1/projects/<seg:project>/locations/<seg:location>",
        ):
            endpoint = f"{view.__name__}{'_loc' if 'location' in prefix else ''}"
            app.add_url_rule(prefix + suffix, endpoint=endpoint, view_func=view, methods=methods)

    def _install_routes(self) -> None:
        def create_secret(project: str, location: str | None = None) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                secret_id = request.args.get("secretId", "")
                if not _SECRET_ID_RE.match(secret_id):
                    raise _invalid(
                        "secretId must be 1-255 letters, digits, underscores or hyphens."
                    )
                body = self._json_body()
                fields = {
                    k: v
                    for k, v in body.items()
                    if k not in ("name", "createTime", "etag") and v not in (None, {}, [], "")
                }
                if location is None and not fields.get("replication"):
                    raise _invalid("Secret.replication must be specified.")
                if location is not None and fields.get("replication"):
                    raise _invalid("Regional secrets must not set replication.")
                key = self._key(parent, secret_id)
                if key in self._secrets:
                    raise _ApiError(
                        409,
                        "ALREADY_EXISTS",
                        f"Secret [{parent}/secrets/{secret_id}] already exists.",
                    )
                secret = _Secret(secret_id, fields, _now())
                self._secrets[key] = secret
                return self._secret_json(parent, secret)

            return self._run(handle)

        def list_secrets(project: str, location: str | None = None) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                canonical = self._key(parent, "")[0]
                found = [s for (p, _), s in self._secrets.items() if p == canonical]
                groups = _parse_filter(request.args.get("filter", ""))

                def lookup_for(secret: _Secret) -> Callable[[str], str | None]:
                    def lookup(key: str) -> str | None:
                        if key == "name":
                            return secret.secret_id
                        if key.startswith("labels."):
                            value = (secret.fields.get("labels") or {}).get(key[7:])
                            return None if value is None else str(value)
                        if key == "create_time":
                            return _timestamp(secret.create_time)
                        raise _invalid(f"Invalid filter field: {key}")

                    return lookup

                found = [s for s in found if _filter_matches(groups, lookup_for(s))]
                chunk, next_token = _page(found)
                body: dict[str, Any] = {"secrets": [self._secret_json(parent, s) for s in chunk]}
                if next_token:
                    body["nextPageToken"] = next_token
                body["totalSize"] = len(found)
                return body

            return self._run(handle)

        def get_secret(project: str, secret: str, location: str | None = None) -> Response:
            parent = self._parent(project, location)
            return self._run(lambda: self._secret_json(parent, self._get_secret(parent, secret)))

        def delete_secret(project: str, secret: str, location: str | None = None) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                self._get_secret(parent, secret)
                del self._secrets[self._key(parent, secret)]
                return {}

            return self._run(handle)

        def add_version(project: str, secret: str, location: str | None = None) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                record = self._get_secret(parent, secret)
                payload = self._json_body().get("payload")
                if not isinstance(payload, dict):
                    raise _invalid("Secret payload must be specified.")
                try:
                    data = base64.b64decode(payload.get("data", ""), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise _invalid("Invalid value at 'payload.data' (TYPE_BYTES).") from exc
                if len(data) > MAX_PAYLOAD_BYTES:
                    raise _invalid(f"Secret payload exceeds the {MAX_PAYLOAD_BYTES} byte limit.")
                given = payload.get("dataCrc32c")
                if given is not None:
                    try:
                        expected = int(given)
                    except (TypeError, ValueError) as exc:
                        raise _invalid("Invalid value at 'payload.data_crc32c'.") from exc
                    if expected != crc32c(data):
                        raise _invalid(
                            "Checksum mismatch: payload.data_crc32c does not match the data."
                        )
                version = self._add_version(record, data, checksum=given is not None)
                return self._version_json(f"{parent}/secrets/{secret}", version)

            return self._run(handle)

        def list_versions(project: str, secret: str, location: str | None = None) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                record = self._get_secret(parent, secret)
                groups = _parse_filter(request.args.get("filter", ""))

                def lookup_for(version: _Version) -> Callable[[str], str | None]:
                    def lookup(key: str) -> str | None:
                        if key == "state":
                            return version.state
                        if key == "name":
                            return str(version.number)
                        if key == "create_time":
                            return _timestamp(version.create_time)
                        raise _invalid(f"Invalid filter field: {key}")

                    return lookup

                newest_first = list(reversed(record.versions))
                found = [v for v in newest_first if _filter_matches(groups, lookup_for(v))]
                chunk, next_token = _page(found)
                secret_name = f"{parent}/secrets/{secret}"
                body: dict[str, Any] = {
                    "versions": [self._version_json(secret_name, v) for v in chunk]
                }
                if next_token:
                    body["nextPageToken"] = next_token
                body["totalSize"] = len(found)
                return body

            return self._run(handle)

        def get_version(
            project: str, secret: str, version: str, location: str | None = None
        ) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                secret_name = f"{parent}/secrets/{secret}"
                record = self._get_secret(parent, secret)
                return self._version_json(secret_name, self._resolve(record, secret_name, version))

            return self._run(handle)

        def access_version(
            project: str, secret: str, version: str, location: str | None = None
        ) -> Response:
            def handle() -> Any:
                parent = self._parent(project, location)
                secret_name = f"{parent}/secrets/{secret}"
                record = self._secrets.get(self._key(parent, secret))
                if record is None:
                    raise _not_found(f"Secret [{secret_name}] not found or has no versions.")
                found = self._resolve(record, secret_name, version)
                name = f"{secret_name}/versions/{found.number}"
                if found.state != "ENABLED" or found.data is None:
                    raise _ApiError(
                        400,
                        "FAILED_PRECONDITION",
                        f"Secret Version [{name}] is in {found.state} state.",
                    )
                return {
                    "name": name,
                    "payload": {
                        "data": base64.b64encode(found.data).decode(),
                        "dataCrc32c": str(crc32c(found.data)),
                    },
                }

            return self._run(handle)

        def transition(target: str) -> Callable[..., Response]:
            def view(
                project: str, secret: str, version: str, location: str | None = None
            ) -> Response:
                def handle() -> Any:
                    parent = self._parent(project, location)
                    secret_name = f"{parent}/secrets/{secret}"
                    record = self._get_secret(parent, secret)
                    if version == "latest":
                        raise _invalid("A version number is required here, not 'latest'.")
                    found = self._resolve(record, secret_name, version)
                    if found.state == "DESTROYED":
                        raise _ApiError(
                            400,
                            "FAILED_PRECONDITION",
                            f"Secret Version [{secret_name}/versions/{found.number}] is in "
                            "DESTROYED state.",
                        )
                    found.state = target
                    found.etag = _etag()
                    if target == "DESTROYED":
                        found.data = None
                        found.destroy_time = _now()
                    return self._version_json(secret_name, found)

                return self._run(handle)

            view.__name__ = f"{target.lower()}_version"
            return view

        secret_path = "/secrets/<seg:secret>"
        version_path = secret_path + "/versions/<seg:version>"
        self._route("/secrets", ["POST"], create_secret)
        self._route("/secrets", ["GET"], list_secrets)
        self._route(secret_path, ["GET"], get_secret)
        self._route(secret_path, ["DELETE"], delete_secret)
        self._route(secret_path + ":addVersion", ["POST"], add_version)
        self._route(secret_path + "/versions", ["GET"], list_versions)
        self._route(version_path, ["GET"], get_version)
        self._route(version_path + ":access", ["GET"], access_version)
        self._route(version_path + ":disable", ["POST"], transition("DISABLED"))
        self._route(version_path + ":enable", ["POST"], transition("ENABLED"))
        self._route(version_path + ":destroy", ["POST"], transition("DESTROYED"))

    def _install_control_routes(self) -> None:
        app = self.app.app

        @app.post("/_emulator/secretmanager/reset")
        def sm_reset() -> Response:
            self.reset()
            return json_response({})

        @app.post("/_emulator/secretmanager/seed")
        def sm_seed() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            project, secret_id = raw.get("project"), raw.get("secretId")
            if not project or not secret_id or not _SECRET_ID_RE.match(str(secret_id)):
                return self.app.error(400, "INVALID_ARGUMENT", "project and secretId required")
            if "valueBase64" in raw:
                value = base64.b64decode(raw["valueBase64"])
            else:
                value = str(raw.get("value", "")).encode()
            return json_response({"name": self.seed(str(project), str(secret_id), value)})

        @app.post("/_emulator/secretmanager/projects")
        def sm_projects() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            if not raw.get("projectId") or not raw.get("projectNumber"):
                return self.app.error(
                    400, "INVALID_ARGUMENT", "projectId and projectNumber required"
                )
            self.register_project(str(raw["projectId"]), str(raw["projectNumber"]))
            return json_response({})
