"""The Calendar API over HTTP: one Flask route per discovered method, plus the control routes.

Why apart from the store: everything HTTP (authentication, the caller behind a token, the
discovery checks, conditional headers, JSON bodies) is decided here, so the store only ever
sees a validated call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import Response, request

from emulators._base import EmulatorApp, json_response
from emulators.calendar.common import (
    API_PREFIX,
    CalendarError,
    calendar_hash,
    error_body,
    etag_listed,
    time_zone,
)
from emulators.calendar.discovery import MethodSpec, load_method_specs, validate_query
from emulators.calendar.push import Notifier
from emulators.calendar.quota import Caller, QuotaSettings
from emulators.calendar.store import CalendarStore

# Read methods Google serves to `key=` callers (no OAuth) on calendars made public.
PUBLIC_READ_METHODS = frozenset(
    {"calendar.events.list", "calendar.events.get", "calendar.calendars.get"}
)

Handler = Callable[[dict[str, str], dict[str, Any], Caller], Response]


class CalendarEmulator:
    """The Calendar API emulator: `.app` is the EmulatorApp, `.store` the state behind it."""

    def __init__(
        self,
        check_access_token: Callable[[str], bool],
        *,
        token_email: Callable[[str], str | None] | None = None,
        owner_email: str = "owner@classes.local",
        notify_timeout_s: float = 2.0,
        discovery_document: str | None = None,
    ) -> None:
        self.check_access_token = check_access_token
        self.token_email = token_email
        self.app = EmulatorApp("calendar", error_body)
        self.notifier = Notifier(notify_timeout_s)
        self.store = CalendarStore(self.notifier, owner_email)
        self.methods, self.global_params = load_method_specs(discovery_document)
        self._handlers: dict[str, Handler] = {
            "calendar.events.insert": self._events_insert,
            "calendar.events.get": self._events_get,
            "calendar.events.list": self._events_list,
            "calendar.events.patch": self._events_patch,
            "calendar.events.update": self._events_update,
            "calendar.events.delete": self._events_delete,
            "calendar.events.watch": self._events_watch,
            "calendar.channels.stop": self._channels_stop,
            "calendar.calendars.get": self._calendars_get,
            "calendar.calendarList.get": self._calendars_get,
            "calendar.freebusy.query": self._freebusy_query,
        }
        self._install_api_routes()
        self._install_control_routes()

    # -- routing ----------------------------------------------------------------------------
    def _install_api_routes(self) -> None:
        flask_app = self.app.app
        for spec in self.methods:
            flask_app.add_url_rule(
                spec.flask_rule,
                endpoint=spec.id,
                view_func=self._make_view(spec),
                methods=[spec.http_method],
            )

        @flask_app.route(
            API_PREFIX + "<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
        )
        def unknown_api_path(rest: str) -> Response:
            return self.app.error(404, "notFound", "Not Found")

    def _make_view(self, spec: MethodSpec) -> Callable[..., Response]:
        def view(**path_params: str) -> Response:
            try:
                self._authenticate(spec)
                caller = self._caller()
                self.store.quota.admit_request(caller.key)
                calendar_id = path_params.get("calendarId")
                self._check_calendar_access(calendar_id, caller)
                if calendar_id is not None:  # first use: free/busy knows the calendar now
                    self.store.note_calendar(calendar_id)
                params = validate_query(spec, self.global_params, request.args)
                handler = self._handlers.get(spec.id)
                if handler is None:
                    raise CalendarError(
                        501, "notImplemented", f"{spec.id} is not implemented by the emulator."
                    )
                return handler(path_params, params, caller)
            except CalendarError as exc:
                return exc.response()

        view.__name__ = spec.id.replace(".", "_")
        return view

    def _authenticate(self, spec: MethodSpec) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header and spec.id in PUBLIC_READ_METHODS and request.args.get("key"):
            return
        if not header:
            raise CalendarError(
                401,
                "required",
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                location="Authorization",
                location_type="header",
            )
        if (
            scheme.lower() != "bearer"
            or not token.strip()
            or not self.check_access_token(token.strip())
        ):
            raise CalendarError(
                401,
                "authError",
                "Invalid Credentials",
                location="Authorization",
                location_type="header",
            )

    def _caller(self) -> Caller:
        """Who an authenticated call comes from: its account, else its token or its key."""
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if not token:
            return Caller(key="apiKey")
        email = self.token_email(token) if self.token_email else None
        if email:
            return Caller(key=email.lower(), email=email)
        return Caller(key="token:" + hashlib.sha256(token.encode()).hexdigest()[:12])

    def _check_calendar_access(self, calendar_id: str | None, caller: Caller) -> None:
        """404 on a calendar forbidden to the account behind the bearer token."""
        if calendar_id is None or caller.key == "apiKey":
            return
        if self.store.forbidden(calendar_id, caller.email or ""):
            raise CalendarError(404, "notFound", "Not Found")

    @staticmethod
    def _body() -> dict[str, Any]:
        raw = request.get_data()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise CalendarError(400, "parseError", "Parse Error") from None
        if not isinstance(body, dict):
            raise CalendarError(400, "parseError", "Parse Error")
        return body

    # -- API handlers -----------------------------------------------------------------------
    def _events_insert(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        event = self.store.insert_event(path["calendarId"], self._body(), params, caller=caller)
        return json_response(event, headers={"ETag": event["etag"]})

    def _events_get(self, path: dict[str, str], params: dict[str, Any], caller: Caller) -> Response:
        if "timeZone" in params:
            time_zone(params["timeZone"], "request")
        event = self.store.get_event(path["calendarId"], path["eventId"])
        # Conditional retrieval, judged after the read: a get may itself finish a conference.
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and etag_listed(if_none_match, event["etag"], weak=True):
            return Response(status=304, headers={"ETag": event["etag"]})
        return json_response(event, headers={"ETag": event["etag"]})

    def _events_patch(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        return self._modify(path, params, caller, replace=False)

    def _events_update(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        return self._modify(path, params, caller, replace=True)

    def _modify(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller, *, replace: bool
    ) -> Response:
        event = self.store.modify_event(
            path["calendarId"],
            path["eventId"],
            self._body(),
            params,
            replace=replace,
            if_match=request.headers.get("If-Match"),
            caller=caller,
        )
        return json_response(event, headers={"ETag": event["etag"]})

    def _events_delete(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        self.store.delete_event(
            path["calendarId"],
            path["eventId"],
            params,
            if_match=request.headers.get("If-Match"),
            caller=caller,
        )
        return Response(status=204)

    def _events_list(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        if "timeZone" in params:
            time_zone(params["timeZone"], "request")
        return json_response(self.store.list_events(path["calendarId"], params))

    def _events_watch(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        base_url = request.host_url.rstrip("/") + API_PREFIX
        return json_response(self.store.watch(path["calendarId"], self._body(), base_url))

    def _channels_stop(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        self.store.stop_channel(self._body())
        return Response(status=204)

    def _calendars_get(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        cal_id = path["calendarId"]
        email_id = self.store.calendar_email(cal_id)
        return json_response(
            {
                "kind": "calendar#calendar"
                if "calendarList" not in request.path
                else "calendar#calendarListEntry",
                "etag": f'"{calendar_hash(cal_id)}"',
                "id": email_id,
                "summary": email_id,
                "timeZone": "UTC",
                "accessRole": "owner",
                "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
            }
        )

    def _freebusy_query(
        self, path: dict[str, str], params: dict[str, Any], caller: Caller
    ) -> Response:
        return json_response(self.store.free_busy(self._body(), caller))

    # -- control routes ---------------------------------------------------------------------
    def _install_control_routes(self) -> None:
        flask_app = self.app.app
        prefix = "/_emulator/calendar"

        @flask_app.route(prefix + "/conference", methods=["GET", "POST"])
        def conference_knob() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True) or {}
                status_code = str(raw.get("statusCode", "success"))
                if status_code not in ("success", "failure"):
                    return json_response({"error": "statusCode: success|failure"}, 400)
                self.store.set_conference(max(0, int(raw.get("pendingGets", 0))), status_code)
            conf = self.store.conference
            return json_response({"pendingGets": conf.pending_gets, "statusCode": conf.status_code})

        @flask_app.post(prefix + "/expire-sync-tokens")
        def expire_sync_tokens() -> Response:
            self.store.expire_sync_tokens()
            return json_response({})

        @flask_app.get(prefix + "/deliveries")
        def deliveries() -> Response:
            if request.args.get("wait"):
                self.notifier.wait_idle(5.0)
            return json_response(self.notifier.log())

        @flask_app.get(prefix + "/channels")
        def channels() -> Response:
            return json_response(self.store.channels())

        @flask_app.get(prefix + "/invitations")
        def invitations() -> Response:
            log = list(self.store.invitations)
            return json_response({"total": sum(len(i["recipients"]) for i in log), "log": log})

        @flask_app.post(prefix + "/forbid")
        def forbid() -> Response:
            raw = request.get_json(force=True, silent=True) or {}
            if not raw.get("calendarId"):
                return json_response({"error": "calendarId is required"}, 400)
            self.store.forbid(str(raw["calendarId"]), str(raw.get("email") or ""))
            return json_response({})

        @flask_app.route(prefix + "/freebusy-errors", methods=["GET", "POST", "DELETE"])
        def freebusy_errors() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True)
                if not isinstance(raw, dict):
                    return json_response({"error": "a JSON object"}, 400)
                cal_id, reason = raw.get("calendarId"), raw.get("reason", "internalError")
                count = raw.get("count")
                if not isinstance(cal_id, str) or not cal_id:
                    return json_response({"error": "calendarId is required"}, 400)
                if not isinstance(reason, str) or not reason:
                    return json_response({"error": "reason: a non-empty string"}, 400)
                if count is not None and (
                    isinstance(count, bool) or not isinstance(count, int) or count < 1
                ):
                    return json_response({"error": "count: a positive integer or null"}, 400)
                self.store.inject_freebusy_error(cal_id, reason, count)
            elif request.method == "DELETE":
                self.store.clear_freebusy_errors()
            return json_response(self.store.freebusy_errors())

        @flask_app.route(prefix + "/quota", methods=["GET", "POST", "DELETE"])
        def quota() -> Response:
            if request.method == "POST":
                raw = request.get_json(force=True, silent=True)
                if not isinstance(raw, dict):
                    return json_response({"error": "a JSON object of quota settings"}, 400)
                try:
                    self.store.quota.configure(QuotaSettings.from_json(raw))
                except ValueError as exc:
                    return json_response({"error": str(exc)}, 400)
            elif request.method == "DELETE":
                self.store.quota.reset()
            return json_response(self.store.quota.snapshot())

        @flask_app.post(prefix + "/reset")
        def reset() -> Response:
            self.store.reset()
            return json_response({})


__all__ = ["CalendarEmulator"]
