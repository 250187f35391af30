"""Every setting the functions read, from environment variables, in one place.

Unset upstream endpoints mean production Google and Mercado Pago; the local stack
(`./dev.sh up`) points them at the emulators. The README's configuration table lists
each variable with its production default and its local override.

Each value is checked when first read (`read_settings`): a malformed or unknown one raises
`InvalidSettings` (503: the sender retries once an operator fixes it) instead of being
guessed at, and deploy.sh runs the same check before it deploys.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared import logs
from shared.errors import InvalidSettings

__all__ = ["SecretNames", "Settings", "get_settings", "read_settings"]

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
CALENDAR_AUTH_MODES = ("oauth", "service_account")
MAX_SYNC_INTERVAL_SECONDS = 60.0
MAX_MARGIN_MINUTES = 7 * 24 * 60.0
_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+")
_QUEUE = re.compile(
    r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/queues/[A-Za-z0-9-]{1,100}"
)
_PROJECT_ID = re.compile(r"([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DATABASE_ID = re.compile(r"\(default\)|[a-z][a-z0-9-]{2,61}[a-z0-9]")
_RESERVED_ID = re.compile(r"__.*__")


class _Environment:
    """Reads one mapping of variables and checks each value as it is read.

    Every refusal names the variable and what it accepts, never the value: a misplaced
    secret pasted into the wrong variable must not end up in a log line.
    An empty variable counts as unset.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str = "") -> str:
        return self._environ.get(name, "").strip() or default

    def _number(self, name: str) -> float | None:
        """The variable as a number (NaN when it is not one), None when unset."""
        raw = self.text(name)
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            return math.nan

    def seconds(self, name: str, default: float) -> float:
        value = self._number(name)
        if value is None:
            return default
        if not (math.isfinite(value) and value > 0):
            raise InvalidSettings(f"{name} must be a positive number of seconds, e.g. {default:g}")
        return value

    def minutes(self, name: str, default: float) -> float:
        """A number of minutes, zero allowed."""
        value = self._number(name)
        if value is None:
            return default
        if not (math.isfinite(value) and 0 <= value <= MAX_MARGIN_MINUTES):
            raise InvalidSettings(
                f"{name} must be a number of minutes from 0 to {MAX_MARGIN_MINUTES:g}, e.g. 0"
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw in TRUE_WORDS:
            return True
        if raw in FALSE_WORDS:
            return False
        accepted = ", ".join(TRUE_WORDS + FALSE_WORDS)
        raise InvalidSettings(f"{name} must be true or false (accepted: {accepted})")

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise InvalidSettings(f"{name} must be one of: {', '.join(choices)}")
        return value

    def url(self, name: str, default: str = "") -> str:
        value = self.text(name, default)
        if not value:
            return value
        try:
            parts = urlsplit(value)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 (raises ValueError for a port that is not one)
        except ValueError:
            usable = False
        if not usable or any(c.isspace() for c in value):
            raise InvalidSettings(f"{name} must be an http(s) URL, e.g. https://host/path")
        return value

    def matching(
        self, name: str, pattern: re.Pattern[str], accepted: str, default: str = ""
    ) -> str:
        value = self.text(name, default)
        if value and not pattern.fullmatch(value):
            raise InvalidSettings(f"{name} must be {accepted}")
        return value

    def emails(self, name: str) -> tuple[str, ...]:
        items = tuple(item.strip().lower() for item in self.text(name).split(",") if item.strip())
        if not all(_EMAIL.fullmatch(item) for item in items):
            raise InvalidSettings(f"{name} must be email addresses separated by commas")
        return items

    def collection_id(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if "/" in value or value in (".", "..") or _RESERVED_ID.fullmatch(value):
            raise InvalidSettings(f"{name} must be a Firestore collection id (no '/', not __x__)")
        return value


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
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    mercadopago_api_base: str = "https://api.mercadopago.com"
    # Google authorization.
    calendar_auth: str = "oauth"
    impersonate_subject: str = ""
    calendar_service_account: str = ""
    oauth_redirect_uri: str = ""
    # Webhooks and time budgets.
    webhook_tolerance_seconds: float = 300.0
    accept_unsigned_ipn: bool = True
    auto_refund_over_capacity: bool = False
    # A payment approved this close to its class's start (or later) schedules nothing.
    late_payment_margin_minutes: float = 0.0
    auto_refund_late_payments: bool = False
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
    # The sync's pace (empty SYNC_QUEUE: every notification syncs at once).
    sync_queue: str = ""
    sync_interval_seconds: float = 5.0
    scheduler_audience: str = ""
    scheduler_invoker_emails: tuple[str, ...] = ()
    # The queue between payments and Calendar (empty: the webhook calls Calendar itself).
    scheduling_queue: str = ""
    cloud_tasks_endpoint: str = ""
    schedule_class_url: str = ""
    tasks_invoker_email: str = ""
    tasks_audience: str = ""
    iam_credentials_endpoint: str = ""
    secrets: SecretNames = field(default_factory=SecretNames)

    @property
    def local(self) -> bool:
        """True when Secret Manager is an emulator: then no Google credentials are needed."""
        return bool(self.secret_manager_endpoint)


def read_settings(environ: Mapping[str, str]) -> Settings:
    """The settings a mapping of variables describes, or `InvalidSettings` for the first
    variable that is malformed or unknown. Pure: deploy.sh runs it over what it deploys."""
    env = _Environment(environ)
    defaults = Settings(project_id="", calendar_id="primary")
    email = "an email address"
    project = "a Google Cloud project id"
    settings = Settings(
        project_id=env.matching("GOOGLE_CLOUD_PROJECT", _PROJECT_ID, project)
        or env.matching("GCLOUD_PROJECT", _PROJECT_ID, project),
        calendar_id=env.text("CALENDAR_ID", defaults.calendar_id),
        firestore_database=env.matching(
            "FIRESTORE_DATABASE",
            _DATABASE_ID,
            "(default) or a Firestore database id",
            defaults.firestore_database,
        ),
        bookings_collection=env.collection_id("BOOKINGS_COLLECTION", defaults.bookings_collection),
        calendar_api_endpoint=env.url("CALENDAR_API_ENDPOINT"),
        secret_manager_endpoint=env.url("SECRET_MANAGER_ENDPOINT"),
        oauth_auth_uri=env.url("GOOGLE_OAUTH_AUTH_URI", defaults.oauth_auth_uri),
        oauth_token_uri=env.url("GOOGLE_OAUTH_TOKEN_URI", defaults.oauth_token_uri),
        google_certs_url=env.url("GOOGLE_CERTS_URL", defaults.google_certs_url),
        mercadopago_api_base=env.url("MERCADOPAGO_API_BASE", defaults.mercadopago_api_base).rstrip(
            "/"
        ),
        calendar_auth=env.choice("CALENDAR_AUTH", CALENDAR_AUTH_MODES, defaults.calendar_auth),
        impersonate_subject=env.matching("CALENDAR_IMPERSONATE_SUBJECT", _EMAIL, email),
        calendar_service_account=env.matching("CALENDAR_SERVICE_ACCOUNT", _EMAIL, email),
        oauth_redirect_uri=env.url("OAUTH_REDIRECT_URI"),
        webhook_tolerance_seconds=env.seconds(
            "WEBHOOK_TOLERANCE_SECONDS", defaults.webhook_tolerance_seconds
        ),
        accept_unsigned_ipn=env.flag("MERCADOPAGO_ACCEPT_IPN", defaults.accept_unsigned_ipn),
        auto_refund_over_capacity=env.flag(
            "AUTO_REFUND_OVER_CAPACITY", defaults.auto_refund_over_capacity
        ),
        late_payment_margin_minutes=env.minutes(
            "LATE_PAYMENT_MARGIN_MINUTES", defaults.late_payment_margin_minutes
        ),
        auto_refund_late_payments=env.flag(
            "AUTO_REFUND_LATE_PAYMENTS", defaults.auto_refund_late_payments
        ),
        handler_budget_seconds=env.seconds(
            "HANDLER_BUDGET_SECONDS", defaults.handler_budget_seconds
        ),
        upstream_timeout_seconds=env.seconds(
            "UPSTREAM_TIMEOUT_SECONDS", defaults.upstream_timeout_seconds
        ),
        admin_emails=env.emails("ADMIN_EMAILS"),
        id_token_audience=env.text("ID_TOKEN_AUDIENCE"),
        public_events_enabled=env.flag("PUBLIC_EVENTS_ENABLED", defaults.public_events_enabled),
        public_calendar_id=env.text("PUBLIC_CALENDAR_ID"),
        notifications_url=env.url("NOTIFICATIONS_URL"),
        channel_ttl_seconds=env.seconds("CHANNEL_TTL_SECONDS", defaults.channel_ttl_seconds),
        channel_renew_before_seconds=env.seconds(
            "CHANNEL_RENEW_BEFORE_SECONDS", defaults.channel_renew_before_seconds
        ),
        sync_queue=env.matching(
            "SYNC_QUEUE", _QUEUE, "a queue name, projects/P/locations/L/queues/Q"
        ),
        sync_interval_seconds=env.seconds("SYNC_INTERVAL_SECONDS", defaults.sync_interval_seconds),
        scheduler_audience=env.text("SCHEDULER_AUDIENCE"),
        scheduler_invoker_emails=env.emails("SCHEDULER_INVOKER_EMAILS"),
        scheduling_queue=env.matching(
            "SCHEDULING_QUEUE", _QUEUE, "a queue name, projects/P/locations/L/queues/Q"
        ),
        cloud_tasks_endpoint=env.url("CLOUD_TASKS_ENDPOINT"),
        schedule_class_url=env.url("SCHEDULE_CLASS_URL"),
        tasks_invoker_email=env.matching("TASKS_INVOKER_EMAIL", _EMAIL, "an email"),
        tasks_audience=env.text("TASKS_AUDIENCE"),
        iam_credentials_endpoint=env.url("IAM_CREDENTIALS_ENDPOINT"),
    )
    if settings.scheduling_queue and not (
        settings.schedule_class_url and settings.tasks_invoker_email
    ):
        raise InvalidSettings(
            "SCHEDULING_QUEUE needs SCHEDULE_CLASS_URL and TASKS_INVOKER_EMAIL (where tasks "
            "go and whose OIDC token they carry)"
        )
    if settings.sync_queue and not (settings.notifications_url and settings.tasks_invoker_email):
        raise InvalidSettings(
            "SYNC_QUEUE needs NOTIFICATIONS_URL and TASKS_INVOKER_EMAIL (where a deferred sync "
            "round goes and whose OIDC token it carries)"
        )
    if settings.sync_interval_seconds > MAX_SYNC_INTERVAL_SECONDS:
        raise InvalidSettings(
            f"SYNC_INTERVAL_SECONDS must be at most {MAX_SYNC_INTERVAL_SECONDS:g}: a change "
            "made right after a sync waits this long to reach its booking"
        )
    if settings.scheduler_audience and not settings.scheduler_invoker_emails:
        raise InvalidSettings(
            "SCHEDULER_INVOKER_EMAILS must name the scheduler's service account when "
            "SCHEDULER_AUDIENCE is set"
        )
    return settings


class _SettingsOnce:
    """`get_settings()`: the environment read and checked once per instance.

    A refusal is kept too, so it is logged at ERROR once per instance while every request
    answers 503 until an operator fixes the variable and the instance restarts. Tests call
    `get_settings.cache_clear()`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: Settings | InvalidSettings | None = None

    def __call__(self) -> Settings:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = _load()
                loaded = self._loaded
        if isinstance(loaded, InvalidSettings):
            raise InvalidSettings(loaded.message)
        return loaded

    def cache_clear(self) -> None:
        with self._lock:
            self._loaded = None


def _load() -> Settings | InvalidSettings:
    try:
        return read_settings(os.environ)
    except InvalidSettings as exc:
        logs.error("invalid settings: every request answers 503 until fixed", detail=exc.message)
        return exc


get_settings = _SettingsOnce()
