"""Google Calendar API v3 emulator: the subset of events our platform relies on, served locally.

Why: there is no official Calendar emulator, and the booking flow depends on details that
are easy to get wrong (client-chosen ids and 409s, Meet links only with
`conferenceDataVersion=1`, incremental sync with 410s, push notifications). The production
client (`googleapiclient` built from its static discovery document) talks to this server
unchanged with `client_options={"api_endpoint": "<url>/calendar/v3/"}`.

Every request is checked against the discovery document shipped with
google-api-python-client: path template and HTTP method, known query parameters (unknown
ones answer 400 as Google does), types, enums and required parameters. Implemented:
`events.insert/get/list/patch/update/delete/watch`, `channels.stop`, `calendars.get`,
`calendarList.get` and `freebusy.query`; every other discovered method answers 501. Any
calendar id works (calendars spring into existence on first use: any call naming the id in
its path; ids are taken literally, so `primary` and the owner's email are two calendars).
Calls need `Authorization: Bearer <token>`
accepted by `check_access_token`, else 401; read methods of a calendar (`events.list`,
`events.get`, `calendars.get`) also accept an API key alone (`key=`), as Google does for
calendars made public (every calendar counts as public here; the key's value is not checked).

What group classes and enrollment bursts rely on, as Google documents it:

- Every event carries an `etag` that changes with every modification. `events.patch`,
  `events.update` and `events.delete` with `If-Match: <etag>` answer 412 `conditionNotMet`
  when the event changed since; `events.get` with `If-None-Match: <etag>` answers 304 (no
  body) while it has not. googleapiclient sends them when set on the request object
  (`request.headers["If-Match"] = etag`). Inserts have no conditional form.
- `events.patch` replaces any array it is given whole (`attendees` included) and merges
  objects; `null` removes a field.
- `guestsCanSeeOtherGuests` is stored and returned; the organizer's copy, the only one served
  here, always lists every attendee.
- `sendUpdates` decides who is emailed; each email is logged with its kind: `invitation` for
  a guest who is new to the event, `update` for a guest who stays on an event that changed,
  `cancel` for a guest who was removed or whose event was cancelled or deleted. `all` emails
  every guest, `externalOnly` the guests who do not use Google Calendar (here: addresses
  outside gmail.com, googlemail.com, google.com and the organizer's domain), `none` (the
  default) nobody. The organizer is never emailed.
- A token of a service account acting as itself (its email is `...gserviceaccount.com`;
  with domain-wide delegation `token_email` names the impersonated user instead) may not
  add attendees: 403 `forbiddenForServiceAccounts`.
- Usage limits are off until `/_emulator/calendar/quota` turns them on.
- `freebusy.query` (POST `/calendar/v3/freeBusy`) answers `calendars[id].busy`: the events
  of each calendar that are neither cancelled nor `transparent` (tentative ones count),
  clipped to [timeMin, timeMax), sorted, merged where they overlap or touch, in UTC (`Z`;
  a `timeZone` is checked but not applied). A calendar the caller may not see gets
  `errors: [{"domain": "global", "reason": "notFound"}]` and `busy: []`: an id no call has
  used yet (besides `primary`, the owner's and the caller's own email), or one `/forbid`
  hides from the caller. Refused with 400: timeMax <= timeMin (`timeRangeEmpty`), a range
  over 90 days (`invalid`, "The requested time range is too long."; Google refuses long
  ranges but does not document the reason: our reading), more items than
  `calendarExpansionMax` (at most 50, the default) allows (`tooManyCalendarsRequested`),
  an expansion maximum past its documented bound (50; 100 for groups: our reading). Groups
  are not expanded (no `groups` in the answer) and recurring events count by their first
  instance. It is counted against the per-user request limit like every call.

Control routes (never part of the emulated API; the shared ones are in `_base.py`):

- `POST /_emulator/calendar/conference` {"pendingGets": 2, "statusCode": "success"}:
  conferences created from now on stay `pending` (no hangoutLink/entryPoints) for
  `pendingGets` `events.get` calls, then turn `statusCode` ("success" or "failure").
  `GET` on the same route shows the current setting.
- `POST /_emulator/calendar/expire-sync-tokens`: every sync token (and the page tokens of
  incremental syncs) issued so far answers 410 `fullSyncRequired`.
- `GET /_emulator/calendar/deliveries`: push-notification log, oldest first:
  [{"channelId", "resourceId", "state", "messageNumber", "address", "status", "error"}]
  (`status` is the receiver's HTTP status, null when it could not be reached).
  `?wait=1` first waits (up to 5 s) until every queued delivery was attempted.
- `GET /_emulator/calendar/channels`: active channels.
- `GET /_emulator/calendar/invitations`: the emails `sendUpdates` "sent", one entry per API
  call that sent any: {"total": <emails>, "log": [{"calendarId", "eventId", "action"
  ("insert", "update", "cancel" or "delete"), "sendUpdates", "recipients": [email, ...],
  "emails": [{"to": email, "kind": "invitation" | "update" | "cancel"}, ...],
  "guestsCanSeeOtherGuests": bool}]}.
- `POST /_emulator/calendar/forbid` {"calendarId", "email"}: the account `email` (every
  account when empty) can no longer see the calendar: its bearer calls on it answer 404
  `notFound`, as Google answers for a calendar not shared with the account. Needs the
  `token_email` lookup (the OAuth emulator's) to know whose token a call carries.
- `POST /_emulator/calendar/freebusy-errors` {"calendarId", "reason": "internalError",
  "count": null}: free/busy of that calendar answers `errors: [{"domain": "global",
  "reason"}]` and no busy time, for `count` queries (null: until cleared), whatever else
  would apply; the other calendars of the query are answered as usual. Any reason may be
  injected (Google warns that new ones may appear). `GET` shows {calendarId: {"reason",
  "count"}}; `DELETE` clears them all. A failure of the whole call is a `/_emulator/faults`
  rule with `"pathContains": "/freeBusy"`.
- `POST /_emulator/calendar/quota` turns usage limits on, replacing the settings and clearing
  the counters; every key is optional: {"requestsPerMinute": 300 (per user; null: no
  limit), "requestWindowSeconds": 60, "rateLimitStatus": 403 | 429, "rateLimitReason":
  "rateLimitExceeded" | "userRateLimitExceeded" (403 only), "invitationsPerWindow": 50
  (emails to external guests per calendar; null: no limit), "invitationWindowSeconds": 60,
  "limitedForSeconds": 60 (default: the invitation window), "readOnlyWhenLimited": false
  (true: a limited calendar refuses every write, not only those that email external
  guests), "internalDomains": ["example.edu"] (besides the organizer's own domain)}.
  Past `requestsPerMinute` a user's calls answer `rateLimitStatus`/`rateLimitReason`;
  a call that would take a calendar past `invitationsPerWindow` answers 403 `quotaExceeded`
  and leaves the calendar limited for `limitedForSeconds`, during which every call that
  would email an external guest answers the same. Refused calls change nothing and are not
  counted. `GET` shows {"settings", "requests": {user: n}, "externalEmails": {calendarId:
  n}, "limited": {calendarId: seconds left}, "rejected": {reason: n}}; `DELETE` turns the
  limits off and clears the counters.
- `POST /_emulator/calendar/reset`: drops every event, channel, delivery, invitation,
  forbidden calendar and injected free/busy error, forgets which calendars were used,
  restores the conference setting, turns usage limits off (counters cleared) and expires
  every sync token.

Layout, each part importing only those before it: `common` (Google's error shape, time and
etag helpers), `discovery` (routes and query checks from the discovery document), `quota`
(callers and usage limits), `push` (channels and notification deliveries), `store` (events,
sync state, the emails a write sends, free/busy) and `app` (`CalendarEmulator`: the HTTP routes).
"""

from __future__ import annotations

from emulators.calendar.app import CalendarEmulator
from emulators.calendar.store import meet_code

__all__ = ["CalendarEmulator", "meet_code"]
