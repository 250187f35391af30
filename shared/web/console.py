"""The admin console's page: its HTML, CSS and JavaScript modules, and the headers that keep
it safe.

The function serves the files kept beside its `main.py` (`static/`, staged with it by
deploy.sh) with no build step: the page is plain ES modules. It calls the platform's other
functions (`list_events`, `manage_booking`, `oauth_start`, `class_sessions`) and its own
read views from the browser, on the same origin: in production every function answers under
`https://REGION-PROJECT.cloudfunctions.net/NAME`, and locally the stack's gateway serves them
the same way. So `connect-src 'self'` is all the page needs.

Safety, all in the headers:
- a strict Content-Security-Policy: scripts and styles only from this origin (and, in
  production, Google Identity Services' own script, frame and style), nothing inline, no
  `eval`, no plugins, no `<base>`, forms only to this origin, never framed;
- `X-Frame-Options: DENY` too, for browsers that predate `frame-ancestors`;
- `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff`, no caching of the page.

Sign-in: in production the page gets a Google ID token from Google Identity Services for the
client id in `ID_TOKEN_AUDIENCE` (an OAuth *Web* client whose authorized JavaScript origin
is the functions' origin). When `GOOGLE_OAUTH_AUTH_URI` points at a loopback address (the
local stack's OAuth emulator), the page signs in through the emulator's sign-in page
instead. Either way the token stays in the tab (sessionStorage) and goes out only as
`Authorization: Bearer` to these same-origin functions.

Changes the console itself makes (marking an item handled) take a person's ID token only:
the API key is for scripts, and a change should name the admin who made it; the admin's
Bearer header is never sent by a browser on its own, so no other site can forge the call.
"""

from __future__ import annotations

import hashlib
import html
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Response

from shared.clock import TIME_ZONE, Deadline
from shared.config import get_settings
from shared.errors import Forbidden, NotFound, PlatformError
from shared.web.auth import Admin, require_admin
from shared.web.endpoint import answer_error, json_response

__all__ = [
    "GIS_CLIENT",
    "VIEWS",
    "asset_name",
    "content_security_policy",
    "error_answer",
    "json_answer",
    "page",
    "page_config",
    "require_person",
    "secure",
    "sign_in_mode",
    "static_asset",
]

GIS_CLIENT = "https://accounts.google.com/gsi/client"
GIS_ORIGIN = "https://accounts.google.com/gsi/"
VIEWS = ("attention", "health")
PAGE = "index.html"
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CONFIG_MARK = "__CONSOLE_CONFIG__"


def sign_in_mode() -> str:
    """`google` (Google Identity Services) or `emulator` (the local OAuth emulator)."""
    host = urlsplit(get_settings().oauth_auth_uri).hostname or ""
    return "emulator" if host in _LOOPBACK else "google"


def content_security_policy(mode: str) -> str:
    """The page's policy: nothing inline, nothing from elsewhere but what sign-in needs."""
    google = mode == "google"
    directives = {
        "default-src": "'none'",
        "script-src": f"'self' {GIS_CLIENT}" if google else "'self'",
        "style-src": f"'self' {GIS_ORIGIN}style" if google else "'self'",
        "connect-src": f"'self' {GIS_ORIGIN}" if google else "'self'",
        "frame-src": GIS_ORIGIN if google else "'none'",
        "img-src": "'self'",
        "font-src": "'self'",
        "form-action": "'self'",
        "base-uri": "'none'",
        "object-src": "'none'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def secure(
    response: Response, policy: str = "default-src 'none'; frame-ancestors 'none'"
) -> Response:
    """The headers every console answer carries (a page, a file, JSON or an error)."""
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Google's sign-in popup talks back to this window; nothing else may.
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def error_answer(error: PlatformError) -> Response:
    """The platform's JSON error answer, with the console's headers."""
    return secure(answer_error(error))


def page_config() -> dict[str, Any]:
    """What the page must know that is not secret: how to sign in, and the time zone."""
    settings = get_settings()
    mode = sign_in_mode()
    parts = urlsplit(settings.oauth_auth_uri)
    return {
        "signIn": {
            "mode": mode,
            "clientId": settings.id_token_audience,
            "emulator": f"{parts.scheme}://{parts.netloc}" if mode == "emulator" else None,
        },
        "timeZone": TIME_ZONE,
    }


def page(static_dir: Path) -> Response:
    """The HTML page, its settings in a `<meta>` element (data, never script)."""
    mode = sign_in_mode()
    template = (static_dir / PAGE).read_text(encoding="utf-8")
    config = html.escape(json.dumps(page_config(), separators=(",", ":")), quote=True)
    body = template.replace(_CONFIG_MARK, config)
    response = Response(body, mimetype="text/html")
    return secure(response, content_security_policy(mode))


def asset_name(path: str) -> str:
    """The file a path asks for (its last segment, if it names a script, the stylesheet or
    an image), or "" for the page itself."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name if Path(name).suffix in ASSET_TYPES else ""


def static_asset(static_dir: Path, name: str, if_none_match: str) -> Response:
    """A JavaScript module, the stylesheet or the icon: revalidated by ETag on every load,
    so a new deployment is picked up at once."""
    file = static_dir / name
    if name != file.name or not file.is_file():
        raise NotFound("no such file")
    body = file.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    suffix = file.suffix
    content_type = ASSET_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "text/plain"
    if etag in [tag.strip() for tag in if_none_match.split(",")]:
        return secure(Response(status=304, headers=headers))
    charset = "; charset=utf-8" if content_type.startswith("text/") else ""
    response = Response(body, headers=headers, content_type=content_type + charset)
    return secure(response)


def require_person(headers: Mapping[str, str], deadline: Deadline) -> Admin:
    """An admin's Google ID token, and nothing else: the console's changes name a person."""
    if headers.get("x-api-key"):
        raise Forbidden(
            "the console's changes need an admin's Google ID token (Authorization: Bearer); "
            "the API key is for scripts"
        )
    return require_admin(dict(headers), deadline)


def json_answer(body: Any, status: int = 200) -> Response:
    """A JSON answer with the console's headers (never cached: it is one admin's view)."""
    return secure(json_response(body, status))
