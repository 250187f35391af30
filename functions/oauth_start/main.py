"""Admins only: send the admin to Google's consent screen to connect the class calendar."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.clock import Deadline
from shared.config import get_settings
from shared.services.consent import start_consent
from shared.web.auth import require_admin
from shared.web.endpoint import Handled, endpoint, json_response, lower_headers


@functions_framework.http
@endpoint("calendar consent start", methods=("GET",))
def oauth_start(request: Request) -> Handled:
    admin = require_admin(lower_headers(request), Deadline(get_settings().handler_budget_seconds))
    consent = start_consent(admin)
    headers = {"Cache-Control": "no-store"}
    log = {"caller": admin.identity, "outcome": "redirected"}
    if request.accept_mimetypes.best == "application/json":
        # An admin page calling with fetch() cannot read a redirect; it opens this URL.
        body = {"authorizationUrl": consent.authorization_url, "expiresAt": consent.expires_at}
        return Handled(json_response(body, headers=headers), log)
    location = {**headers, "Location": consent.authorization_url}
    return Handled(Response(status=302, headers=location), log)
