"""docs/openapi.yaml describes every function, and every function keeps to it.

Schemathesis generates requests from the document and sends them to the local stack; an
answer that is a 5xx, or that the document does not describe (status, media type, headers,
body), fails the test. Examples per operation are few, so the suite stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.client import StackClient
from devstack.stack import LocalStack, function_names
from shared import errors

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "docs" / "openapi.yaml"
DOCUMENT: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
ADMIN_FUNCTIONS = {"list_events", "oauth_start", "renew_watch", "reconcile", "admin_console"}
HTML_FUNCTIONS = {"oauth_callback"}  # answers a browser with a page, errors included
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_path(OPENAPI)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _all_error_classes() -> list[type[errors.PlatformError]]:
    found: list[type[errors.PlatformError]] = []
    pending: list[type[errors.PlatformError]] = [errors.PlatformError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_function_has_one_path_in_the_document() -> None:
    documented = {path.strip("/") for path in DOCUMENT["paths"]}
    assert set(function_names()) <= documented, "describe each new function in docs/openapi.yaml"


def test_every_error_answer_of_a_json_function_is_the_error_shape() -> None:
    error_schema = _resolve({"$ref": "#/components/schemas/Error"})
    for path, item in DOCUMENT["paths"].items():
        if path.strip("/") in HTML_FUNCTIONS:
            continue
        for operation in item.values():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                content = _resolve(response)["content"]["application/json"]["schema"]
                assert _resolve(content) == error_schema, f"{path} {status}"


@pytest.mark.parametrize("error_class", _all_error_classes(), ids=lambda cls: cls.__name__)
def test_the_error_schema_matches_what_http_answer_sends(
    error_class: type[errors.PlatformError],
) -> None:
    error_schema = _resolve({"$ref": "#/components/schemas/Error"})
    detail_schema = _resolve(error_schema["properties"]["error"])

    for webhook in (False, True):
        body = errors.http_answer(error_class("something went wrong"), webhook=webhook).body

        assert set(error_schema["required"]) <= set(body)
        assert set(detail_schema["required"]) == set(body["error"])
        assert all(isinstance(value, str) for value in body["error"].values())
        if "status" in body:
            acknowledged = _resolve({"$ref": "#/components/schemas/Acknowledged"})
            assert body["status"] in acknowledged["properties"]["status"]["enum"]


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_functions_answer_as_the_document_says(case: schemathesis.Case, stack: LocalStack) -> None:
    name = case.operation.path.strip("/")
    url = stack.document["functions"].get(name)
    if url is None:
        pytest.skip(f"{name} is documented but functions/{name}/main.py does not exist yet")
    headers = None
    if name in ADMIN_FUNCTIONS:
        headers = {"X-API-Key": stack.document["secrets"]["admin_api_key"]}
    case.call_and_validate(
        base_url=url.removesuffix(case.operation.path), headers=headers, checks=CHECKS
    )


def test_the_local_stack_serves_the_document(stack: LocalStack) -> None:
    served = requests.get(stack.document["openapi"]["url"], timeout=5)

    assert served.status_code == 200
    assert yaml.safe_load(served.text) == DOCUMENT


def _ipn(payment_id: object) -> dict[str, Any]:
    return {"params": {"topic": "payment", "id": str(payment_id)}}


def _approved_ipn(client: StackClient) -> dict[str, Any]:
    return _ipn(client.create_payment(client.seed_booking())["id"])


def _push(channel_id: str, state: str) -> dict[str, Any]:
    return {"headers": {"X-Goog-Channel-ID": channel_id, "X-Goog-Resource-State": state}}


# case -> (path, status, the request's parameters for `requests`)
ANSWERS: dict[str, tuple[str, int, Callable[[StackClient], dict[str, Any]]]] = {
    "payment scheduled": ("/payment_webhook", 200, _approved_ipn),
    "payment not found": ("/payment_webhook", 200, lambda c: _ipn(4242)),
    "topic ignored": (
        "/payment_webhook",
        200,
        lambda c: {"params": {"topic": "merchant_order", "id": "1"}},
    ),
    "payment id not digits": ("/payment_webhook", 400, lambda c: _ipn("²")),
    "signature not ascii": (
        "/payment_webhook",
        401,
        lambda c: {
            "params": {"data.id": "1", "type": "payment"},
            "headers": {"x-signature": "ts=1700000000,v1=\xe9"},
        },
    ),
    "undocumented resource state": (
        "/calendar_notifications",
        400,
        lambda c: _push("ch-" + "0" * 32, "bogus"),
    ),
    "channel firestore cannot name": (
        "/calendar_notifications",
        404,
        lambda c: _push("a/b", "exists"),
    ),
    "instant past the year 9999": (
        "/list_events",
        400,
        lambda c: {
            "params": {"to": "9999-12-31T23:59:59-14:00"},
            "headers": {"X-API-Key": c.doc["secrets"]["admin_api_key"]},
        },
    ),
    "state not ascii": ("/oauth_callback", 400, lambda c: {"params": {"state": "é.1.x"}}),
}


@pytest.mark.parametrize("case", ANSWERS)
def test_answers_to_edge_inputs_are_the_documented_ones(client: StackClient, case: str) -> None:
    path, status, request = ANSWERS[case]
    [method] = [m.upper() for m in DOCUMENT["paths"][path]]

    response = requests.request(
        method, client.doc["functions"][path.strip("/")], timeout=30, **request(client)
    )

    assert response.status_code == status, response.text
    schema[path][method].validate_response(response)
