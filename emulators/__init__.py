"""Local emulators of the upstreams that have no official one.

Google Calendar API v3, Google OAuth 2.0 (with the IAM Credentials API's signJwt/signBlob),
Secret Manager v1 (REST), Cloud Tasks v2 (REST, with a dispatcher) and the Mercado Pago API,
each a small HTTP server on 127.0.0.1 that the production client libraries talk to unchanged.
They live outside `shared/` because they are never deployed.

`start_emulators()` runs all five in this process: the OAuth server's access tokens must be
known to the Calendar server, and its keys sign the OIDC tokens Cloud Tasks dispatches with.
`RunningEmulators.stop()` also stops the Cloud Tasks dispatcher thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulators._base import EmulatorApp, ServerThread
from emulators.calendar import CalendarEmulator
from emulators.cloudtasks import CloudTasksEmulator
from emulators.mercadopago import MercadoPagoEmulator
from emulators.oauth import OAuthEmulator
from emulators.secretmanager import SecretManagerEmulator


@dataclass(frozen=True)
class EmulatorCredentials:
    """The fixed credentials a local stack is born with (never real ones)."""

    oauth_client_id: str
    oauth_client_secret: str
    refresh_token: str
    mercadopago_access_token: str


@dataclass
class RunningEmulators:
    oauth: OAuthEmulator
    calendar: CalendarEmulator
    secretmanager: SecretManagerEmulator
    mercadopago: MercadoPagoEmulator
    cloudtasks: CloudTasksEmulator
    servers: dict[str, ServerThread]

    def urls(self) -> dict[str, str]:
        return {
            "calendar": self.servers["calendar"].url + "/calendar/v3/",
            "secretmanager": self.servers["secretmanager"].url,
            "oauth": self.servers["oauth"].url,
            "mercadopago": self.servers["mercadopago"].url,
            "cloudtasks": self.servers["cloudtasks"].url,
        }

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.cloudtasks.stop()


def start_emulators(
    creds: EmulatorCredentials, ports: dict[str, int] | None = None
) -> RunningEmulators:
    ports = ports or {}
    oauth = OAuthEmulator(
        client_id=creds.oauth_client_id,
        client_secret=creds.oauth_client_secret,
        refresh_token=creds.refresh_token,
    )
    calendar = CalendarEmulator(
        check_access_token=oauth.check_access_token,
        token_email=lambda token: (oauth.access_token_info(token) or {}).get("email"),
    )
    secretmanager = SecretManagerEmulator()
    mercadopago = MercadoPagoEmulator(access_token=creds.mercadopago_access_token)
    cloudtasks = CloudTasksEmulator(
        id_token_for=oauth.service_account_id_token,
        access_token_for=oauth.service_account_access_token,
    )
    apps: dict[str, EmulatorApp] = {
        "oauth": oauth.app,
        "calendar": calendar.app,
        "secretmanager": secretmanager.app,
        "mercadopago": mercadopago.app,
        "cloudtasks": cloudtasks.app,
    }
    servers = {
        name: ServerThread(app.app, ports.get(name, 0)).start() for name, app in apps.items()
    }
    return RunningEmulators(oauth, calendar, secretmanager, mercadopago, cloudtasks, servers)
