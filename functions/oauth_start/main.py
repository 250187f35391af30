"""Admins only: send the admin to Google's consent screen to connect the class calendar."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import logs
from shared.admin import require_admin
from shared.errors import MethodNotAllowed, PlatformError
from shared.oauth import start_consent
from shared.web import answer_error, json_response, lower_headers


@functions_framework.http
def oauth_start(request: Request) -> Response:
    try:
        if request.method != "GET":
            raise MethodNotAllowed("use GET")
        consent = start_consent(require_admin(lower_headers(request)))
    except PlatformError as exc:
        logs.warning("calendar consent not started", outcome=exc.code, detail=exc.message)
        return answer_error(exc)
    headers = {"Cache-Control": "no-store"}
    if request.accept_mimetypes.best == "application/json":
        # An admin page calling with fetch() cannot read a redirect; it opens this URL.
        body = {"authorizationUrl": consent.authorization_url, "expiresAt": consent.expires_at}
        return json_response(body, headers=headers)
    return Response(status=302, headers={**headers, "Location": consent.authorization_url})
