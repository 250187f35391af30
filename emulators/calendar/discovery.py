"""The discovery document as the emulator's front end: routes and query checks from calendar.v3.

Why: Google's front end refuses what the discovery document does not allow (unknown query
parameters, wrong types, values outside an enum or a range, missing required parameters)
before any method runs. Reading the document that ships with google-api-python-client (the
one the production client is built from) keeps the emulator's surface exactly the client's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import googleapiclient
from werkzeug.datastructures import MultiDict

from emulators.calendar.common import API_PREFIX, CalendarError, bad_request

# Standard system parameters every Google API accepts besides the discovered ones.
SYSTEM_PARAMS = frozenset({"access_token", "callback", "$.xgafv", "upload_protocol", "uploadType"})


@dataclass(frozen=True)
class ParamSpec:
    name: str
    location: str
    type: str
    repeated: bool = False
    required: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    @classmethod
    def from_json(cls, name: str, raw: dict[str, Any]) -> ParamSpec:
        return cls(
            name=name,
            location=raw.get("location", "query"),
            type=raw.get("type", "string"),
            repeated=bool(raw.get("repeated", False)),
            required=bool(raw.get("required", False)),
            enum=tuple(raw.get("enum", ())),
            minimum=int(raw["minimum"]) if "minimum" in raw else None,
            maximum=int(raw["maximum"]) if "maximum" in raw else None,
        )


@dataclass(frozen=True)
class MethodSpec:
    id: str
    http_method: str
    path: str
    params: dict[str, ParamSpec]

    @property
    def flask_rule(self) -> str:
        return API_PREFIX + self.path.replace("{", "<").replace("}", ">")


def discovery_path() -> str:
    """The calendar.v3 document shipped inside google-api-python-client (static discovery)."""
    base = os.path.dirname(googleapiclient.__file__)
    return os.path.join(base, "discovery_cache", "documents", "calendar.v3.json")


def load_method_specs(path: str | None = None) -> tuple[list[MethodSpec], dict[str, ParamSpec]]:
    """All discovered methods plus the API-wide parameters (alt, fields, ...)."""
    with open(path or discovery_path(), encoding="utf-8") as fh:
        doc = json.load(fh)
    global_params = {n: ParamSpec.from_json(n, p) for n, p in doc.get("parameters", {}).items()}
    specs: list[MethodSpec] = []

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for method in resource.get("methods", {}).values():
                params = {
                    n: ParamSpec.from_json(n, p) for n, p in method.get("parameters", {}).items()
                }
                specs.append(MethodSpec(method["id"], method["httpMethod"], method["path"], params))
            walk(resource.get("resources", {}))

    walk(doc.get("resources", {}))
    return specs, global_params


def _coerce(spec: ParamSpec, raw: str) -> Any:
    """Parse one query value the way Google's front end does (types, enums, bounds)."""
    if spec.type == "integer":
        try:
            value: Any = int(raw)
        except ValueError:
            raise bad_request(
                f"Invalid value '{raw}'. Values must match the following regular "
                f"expression: '-?\\d+'",
                spec.name,
            ) from None
        if spec.minimum is not None and value < spec.minimum:
            raise bad_request(
                f"Invalid value '{raw}'. Values must be greater than or equal to {spec.minimum}.",
                spec.name,
            )
        if spec.maximum is not None and value > spec.maximum:
            raise bad_request(
                f"Invalid value '{raw}'. Values must be less than or equal to {spec.maximum}.",
                spec.name,
            )
        return value
    if spec.type == "boolean":
        lowered = raw.lower()
        if lowered not in ("true", "false"):
            raise bad_request(f"Invalid value '{raw}'. Values must be true or false.", spec.name)
        return lowered == "true"
    if spec.enum and raw not in spec.enum:
        raise bad_request(f"Invalid value for: {spec.name}", spec.name)
    return raw


def validate_query(
    spec: MethodSpec, global_params: dict[str, ParamSpec], args: MultiDict[str, str]
) -> dict[str, Any]:
    """Checks the query string against the discovery document; returns parsed values."""
    parsed: dict[str, Any] = {}
    for name in args:
        values = args.getlist(name)
        pspec = spec.params.get(name) or global_params.get(name)
        if pspec is None or pspec.location == "path":
            if name in SYSTEM_PARAMS:
                continue
            raise CalendarError(
                400,
                "badRequest",
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                f"parameter. Field '{name}' could not be found in request message.",
            )
        if pspec.repeated:
            parsed[name] = [_coerce(pspec, v) for v in values]
        else:
            if len(values) > 1:
                raise bad_request(f"Parameter '{name}' cannot be repeated.", name)
            parsed[name] = _coerce(pspec, values[0])
    for pspec in spec.params.values():
        if pspec.location == "query" and pspec.required and pspec.name not in parsed:
            raise CalendarError(
                400, "required", "Required parameter is missing", location=pspec.name
            )
    if parsed.get("alt", "json") != "json":
        raise bad_request("Only alt=json is supported by this API method.", "alt")
    return parsed


__all__ = [
    "MethodSpec",
    "ParamSpec",
    "discovery_path",
    "load_method_specs",
    "validate_query",
]
