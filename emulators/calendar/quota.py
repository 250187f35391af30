"""Who a call comes from and the usage limits it is counted against.

Why: Google refuses calls past a per-user rate (403 or 429) and emails to external guests
past a per-calendar limit (403 `quotaExceeded`, then a calendar limited for a while); group
enrollments burst into both. The limits are off until `/_emulator/calendar/quota` turns them
on, so nothing else has to know they exist.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulators.calendar.common import email_domain, google_error


@dataclass(frozen=True)
class Caller:
    """Who a call comes from, as far as the bearer token tells.

    `email` is what `token_email` answers: the account, or with domain-wide delegation the
    user a service account acts as. That is how Google tells them apart too: a service
    account acting as itself is an `...gserviceaccount.com` principal.
    """

    key: str  # the per-user quota bucket
    email: str | None = None

    @property
    def undelegated_service_account(self) -> bool:
        domain = email_domain(self.email or "")
        return domain == "gserviceaccount.com" or domain.endswith(".gserviceaccount.com")


def _seconds(raw: dict[str, Any], name: str, default: float | None) -> float | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name}: a positive number of seconds")
    return float(value)


def _count(raw: dict[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: a non-negative integer or null")
    return value


@dataclass(frozen=True)
class QuotaSettings:
    """The usage limits in force; the defaults limit nothing (quota mode off)."""

    requests_per_minute: int | None = None
    request_window_s: float = 60.0
    rate_limit_status: int = 403
    rate_limit_reason: str = "rateLimitExceeded"
    invitations_per_window: int | None = None
    invitation_window_s: float = 60.0
    limited_for_s: float | None = None  # None: as long as the invitation window
    read_only_when_limited: bool = False
    internal_domains: tuple[str, ...] = ()

    _KEYS = frozenset(
        {
            "requestsPerMinute",
            "requestWindowSeconds",
            "rateLimitStatus",
            "rateLimitReason",
            "invitationsPerWindow",
            "invitationWindowSeconds",
            "limitedForSeconds",
            "readOnlyWhenLimited",
            "internalDomains",
        }
    )

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QuotaSettings:
        """Validates a control-route body; ValueError says what is wrong."""
        unknown = sorted(set(raw) - cls._KEYS)
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(unknown)}")
        status = raw.get("rateLimitStatus", 403)
        reason = raw.get("rateLimitReason", "rateLimitExceeded")
        # Google's errors guide: rateLimitExceeded comes as 403 or 429,
        # userRateLimitExceeded as 403 only.
        if (status, reason) not in {
            (403, "rateLimitExceeded"),
            (429, "rateLimitExceeded"),
            (403, "userRateLimitExceeded"),
        }:
            raise ValueError(
                "rateLimitStatus/rateLimitReason: 403 or 429 with rateLimitExceeded, "
                "403 with userRateLimitExceeded"
            )
        domains = raw.get("internalDomains", [])
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise ValueError("internalDomains: a list of domains")
        read_only = raw.get("readOnlyWhenLimited", False)
        if not isinstance(read_only, bool):
            raise ValueError("readOnlyWhenLimited: true or false")
        return cls(
            requests_per_minute=_count(raw, "requestsPerMinute"),
            request_window_s=_seconds(raw, "requestWindowSeconds", 60.0) or 60.0,
            rate_limit_status=int(status),
            rate_limit_reason=str(reason),
            invitations_per_window=_count(raw, "invitationsPerWindow"),
            invitation_window_s=_seconds(raw, "invitationWindowSeconds", 60.0) or 60.0,
            limited_for_s=_seconds(raw, "limitedForSeconds", None),
            read_only_when_limited=read_only,
            internal_domains=tuple(d.lower() for d in domains),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requestsPerMinute": self.requests_per_minute,
            "requestWindowSeconds": self.request_window_s,
            "rateLimitStatus": self.rate_limit_status,
            "rateLimitReason": self.rate_limit_reason,
            "invitationsPerWindow": self.invitations_per_window,
            "invitationWindowSeconds": self.invitation_window_s,
            "limitedForSeconds": self.limited_for_s,
            "readOnlyWhenLimited": self.read_only_when_limited,
            "internalDomains": list(self.internal_domains),
        }


class Quota:
    """Sliding-window counters behind the usage limits; thread-safe, off until configured.

    Why sliding windows: Google computes its per-minute quotas that way, so a burst is
    refused until enough of it has aged out, not until the clock turns a minute.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.settings = QuotaSettings()
        self._requests: dict[str, deque[float]] = {}
        self._emails: dict[str, deque[tuple[float, int]]] = {}
        self._limited_until: dict[str, float] = {}
        self._rejected: Counter[str] = Counter()

    def configure(self, settings: QuotaSettings) -> None:
        """New settings, fresh counters."""
        with self._lock:
            self.settings = settings
            self._requests.clear()
            self._emails.clear()
            self._limited_until.clear()
            self._rejected.clear()

    def reset(self) -> None:
        self.configure(QuotaSettings())

    def is_external(self, email: str, organizer: str) -> bool:
        """Outside the organizer's domain (and the configured internal ones)."""
        domain = email_domain(email)
        return domain != email_domain(organizer) and domain not in self.settings.internal_domains

    def note_rejection(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1

    def admit_request(self, user: str) -> None:
        """Counts one API call of `user`; raises the rate-limit error past the limit."""
        with self._lock:
            limit = self.settings.requests_per_minute
            if limit is None:
                return
            now = self._clock()
            window = self._requests.setdefault(user, deque())
            while window and window[0] <= now - self.settings.request_window_s:
                window.popleft()
            if len(window) >= limit:
                self._rejected[self.settings.rate_limit_reason] += 1
                raise google_error(self.settings.rate_limit_status, self.settings.rate_limit_reason)
            window.append(now)

    def charge_emails(self, calendar_id: str, external: int) -> None:
        """Accounts a write that emails `external` external guests, or refuses it.

        Called before the write commits, so a refused call changes nothing.
        """
        with self._lock:
            settings = self.settings
            now = self._clock()
            limited = self._limited_until.get(calendar_id, 0.0) > now
            if limited and (external or settings.read_only_when_limited):
                self._rejected["quotaExceeded"] += 1
                raise google_error(403, "quotaExceeded")
            if not external:
                return
            sent = self._emails.setdefault(calendar_id, deque())
            while sent and sent[0][0] <= now - settings.invitation_window_s:
                sent.popleft()
            limit = settings.invitations_per_window
            if limit is not None and sum(n for _, n in sent) + external > limit:
                hold = settings.limited_for_s or settings.invitation_window_s
                self._limited_until[calendar_id] = now + hold
                self._rejected["quotaExceeded"] += 1
                raise google_error(403, "quotaExceeded")
            sent.append((now, external))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            settings = self.settings
            requests = {
                user: sum(1 for t in window if t > now - settings.request_window_s)
                for user, window in self._requests.items()
            }
            emails = {
                cal: sum(n for t, n in sent if t > now - settings.invitation_window_s)
                for cal, sent in self._emails.items()
            }
            limited = {
                cal: round(until - now, 3)
                for cal, until in self._limited_until.items()
                if until > now
            }
            return {
                "settings": settings.to_json(),
                "requests": {k: v for k, v in requests.items() if v},
                "externalEmails": {k: v for k, v in emails.items() if v},
                "limited": limited,
                "rejected": dict(self._rejected),
            }


__all__ = ["Caller", "Quota", "QuotaSettings"]
