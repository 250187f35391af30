"""Every setting the functions read, from environment variables, in one place.

Unset upstream endpoints mean production Google and Mercado Pago; the local stack
(`./dev.sh up`) points them at the emulators. The README's configuration table lists
each variable with its production default and its local override.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

TIME_ZONE = "America/Argentina/Buenos_Aires"
"""The platform's one time zone: every class starts and ends in Buenos Aires time."""


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw else default


def _env_bool(name: str, default: bool = False) -> bool:
    raw = _env(name).lower()
    if not raw:
        return default
    return raw in {"1", "true", "yes", "on"}


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in _env(name).split(",") if item.strip())


@dataclass(frozen=True)
class SecretNames:
    """Secret Manager secret ids (not values) the functions read or write."""

    oauth_client: str = "google-oauth-client"
    refresh_token: str = "google-calendar-refresh-token"
    mercadopago_access_token: str = "mercadopago-access-token"
    mercadopago_webhook_secret: str = "mercadopago-webhook-secret"
    admin_api_key: str = "admin-api-key"
    oauth_state_key: str = "oauth-state-key"
    public_api_key: str = "google-public-api-key"


@dataclass(frozen=True)
class Settings:
    project_id: str
    calendar_id: str
    firestore_database: str = "(default)"
    bookings_collection: str = "bookings"
    # Upstream endpoints; empty means the production service.
    calendar_api_endpoint: str = ""
    secret_manager_endpoint: str = ""
    oauth_auth_uri: str = "https://accounts.google.com/o/oauth2/auth"
    oauth_token_uri: str = "https://oauth2.googleapis.com/token"
    oauth_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    mercadopago_api_base: str = "https://api.mercadopago.com"
    firestore_emulator_host: str = ""
    # Google authorization.
    calendar_auth: str = "oauth"
    impersonate_subject: str = ""
    oauth_redirect_uri: str = ""
    # Webhooks and time budgets.
    webhook_tolerance_seconds: float = 300.0
    accept_unsigned_ipn: bool = True
    handler_budget_seconds: float = 10.0
    upstream_timeout_seconds: float = 5.0
    # Admin access and public feed.
    admin_emails: tuple[str, ...] = ()
    id_token_audience: str = ""
    public_events_enabled: bool = False
    public_calendar_id: str = ""  # the public feed's own calendar; never CALENDAR_ID
    # Push notifications.
    notifications_url: str = ""
    channel_ttl_seconds: float = 7 * 24 * 3600.0
    channel_renew_before_seconds: float = 24 * 3600.0
    scheduler_audience: str = ""
    scheduler_invoker_emails: tuple[str, ...] = ()
    secrets: SecretNames = field(default_factory=SecretNames)

    @property
    def local(self) -> bool:
        """True when Secret Manager is an emulator: then no Google credentials are needed."""
        return bool(self.secret_manager_endpoint)


@functools.cache
def get_settings() -> Settings:
    """Read the environment once per instance; tests call `get_settings.cache_clear()`."""
    defaults = Settings(project_id="", calendar_id="primary")
    return Settings(
        project_id=_env("GOOGLE_CLOUD_PROJECT") or _env("GCLOUD_PROJECT"),
        calendar_id=_env("CALENDAR_ID", "primary"),
        firestore_database=_env("FIRESTORE_DATABASE", defaults.firestore_database),
        bookings_collection=_env("BOOKINGS_COLLECTION", defaults.bookings_collection),
        calendar_api_endpoint=_env("CALENDAR_API_ENDPOINT"),
        secret_manager_endpoint=_env("SECRET_MANAGER_ENDPOINT"),
        oauth_auth_uri=_env("GOOGLE_OAUTH_AUTH_URI", defaults.oauth_auth_uri),
        oauth_token_uri=_env("GOOGLE_OAUTH_TOKEN_URI", defaults.oauth_token_uri),
        oauth_revoke_uri=_env("GOOGLE_OAUTH_REVOKE_URI", defaults.oauth_revoke_uri),
        google_certs_url=_env("GOOGLE_CERTS_URL", defaults.google_certs_url),
        mercadopago_api_base=_env("MERCADOPAGO_API_BASE", defaults.mercadopago_api_base).rstrip(
            "/"
        ),
        firestore_emulator_host=_env("FIRESTORE_EMULATOR_HOST"),
        calendar_auth=_env("CALENDAR_AUTH", defaults.calendar_auth).lower(),
        impersonate_subject=_env("CALENDAR_IMPERSONATE_SUBJECT"),
        oauth_redirect_uri=_env("OAUTH_REDIRECT_URI"),
        webhook_tolerance_seconds=_env_float(
            "WEBHOOK_TOLERANCE_SECONDS", defaults.webhook_tolerance_seconds
        ),
        accept_unsigned_ipn=_env_bool("MERCADOPAGO_ACCEPT_IPN", default=True),
        handler_budget_seconds=_env_float(
            "HANDLER_BUDGET_SECONDS", defaults.handler_budget_seconds
        ),
        upstream_timeout_seconds=_env_float(
            "UPSTREAM_TIMEOUT_SECONDS", defaults.upstream_timeout_seconds
        ),
        admin_emails=_env_list("ADMIN_EMAILS"),
        id_token_audience=_env("ID_TOKEN_AUDIENCE"),
        public_events_enabled=_env_bool("PUBLIC_EVENTS_ENABLED"),
        public_calendar_id=_env("PUBLIC_CALENDAR_ID"),
        notifications_url=_env("NOTIFICATIONS_URL"),
        channel_ttl_seconds=_env_float("CHANNEL_TTL_SECONDS", defaults.channel_ttl_seconds),
        channel_renew_before_seconds=_env_float(
            "CHANNEL_RENEW_BEFORE_SECONDS", defaults.channel_renew_before_seconds
        ),
        scheduler_audience=_env("SCHEDULER_AUDIENCE"),
        scheduler_invoker_emails=_env_list("SCHEDULER_INVOKER_EMAILS"),
    )
