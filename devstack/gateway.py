"""One origin for every local function, as cloudfunctions.net gives them in production.

In production each function answers at `https://REGION-PROJECT.cloudfunctions.net/NAME`, so
the admin console (a page served by one function) calls the others on its own origin. The
local stack runs each function on its own port; this gateway puts them back on one origin:
`http://127.0.0.1:PORT/NAME...` is passed unchanged (path, query, method, headers, body) to
that function's port, and its answer comes back unchanged. An unknown NAME is a 404, like a
function that is not deployed.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterable
from typing import Any

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class Gateway:
    """A WSGI app that forwards `/NAME...` to the function NAME's port on 127.0.0.1."""

    def __init__(self, ports: dict[str, int], timeout: float = 60.0) -> None:
        self.ports = ports
        self.timeout = timeout

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        name = path.lstrip("/").split("/", 1)[0]
        port = self.ports.get(name)
        if port is None:
            # What Google answers for a function that is not deployed: a page, not our JSON.
            body = b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>"
            start_response(
                "404 Not Found",
                [("Content-Type", "text/html"), ("Content-Length", str(len(body)))],
            )
            return [body]
        query = environ.get("QUERY_STRING", "")
        target = path + (f"?{query}" if query else "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in HOP_BY_HOP
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers["Host"] = f"127.0.0.1:{port}"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            connection.request(environ["REQUEST_METHOD"], target, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        finally:
            connection.close()
        forwarded = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
        forwarded.append(("Content-Length", str(len(payload))))
        start_response(f"{answer.status} {answer.reason}", forwarded)
        return [payload]
