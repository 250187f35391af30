"""Who may call the admin functions: a Google-signed ID token of an allowed admin, or a key.

People come with an ID token (`Authorization: Bearer ...`) that Google signed for our
audience; scripts come with the admin API key kept in Secret Manager (`X-API-Key`).
No credential -> 401; a valid credential without admin rights -> 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from shared.adapters.id_tokens import Admin, verify_id_token
from shared.adapters.secret_manager import matching_secret
from shared.clock import Deadline
from shared.config import get_settings
from shared.errors import Forbidden, Unauthenticated

__all__ = [
    "Admin",
    "require_admin",
    "require_scheduler_or_admin",
    "require_tasks_or_admin",
]


def require_admin(headers: dict[str, str], deadline: Deadline | None = None) -> Admin:
    """Authenticate an admin call from its (lower-cased) headers, or raise 401/403."""
    settings = get_settings()
    api_key = headers.get("x-api-key", "")
    if api_key:

        def same_key(expected: str) -> bool:
            return hmac.compare_digest(api_key.encode(), expected.encode())

        # A warm instance may hold a rotated-out key: a mismatch reads it once more.
        if matching_secret(settings.secrets.admin_api_key, same_key) is None:
            raise Unauthenticated("invalid API key")
        return Admin("api-key", "api_key")
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if not authorization:
        raise Unauthenticated("send an ID token (Authorization: Bearer) or an X-API-Key")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <ID token>'")
    if not settings.id_token_audience:
        raise Unauthenticated("ID tokens are not accepted: no audience is configured")
    claims = verify_id_token(token.strip(), settings.id_token_audience, deadline)
    email = str(claims.get("email") or "").lower()
    if not email or claims.get("email_verified") is not True:
        raise Forbidden("the ID token carries no verified email")
    if email not in settings.admin_emails:
        raise Forbidden("this account is not an admin")
    return Admin(email, "id_token")


def require_scheduler_or_admin(headers: Mapping[str, str], deadline: Deadline) -> str:
    """Cloud Scheduler's OIDC token (its own audience and service account), or an admin."""
    settings = get_settings()
    return _invoker_or_admin(
        headers,
        deadline,
        settings.scheduler_audience,
        settings.scheduler_invoker_emails,
        "scheduler",
    )


def require_tasks_or_admin(headers: Mapping[str, str], deadline: Deadline, url: str) -> str:
    """Cloud Tasks' OIDC token for the function at `url` (the queues' own service account),
    or an admin."""
    settings = get_settings()
    audience = settings.tasks_audience or url
    invokers = (settings.tasks_invoker_email.lower(),) if settings.tasks_invoker_email else ()
    return _invoker_or_admin(headers, deadline, audience, invokers, "tasks")


def _invoker_or_admin(
    headers: Mapping[str, str],
    deadline: Deadline,
    audience: str,
    invokers: tuple[str, ...],
    kind: str,
) -> str:
    """A Google-signed OIDC token for `audience` from one of `invokers` is checked first;
    any other credential goes through `require_admin` (API key or an admin's ID token), so
    an on-call engineer can run the job by hand."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if audience and scheme.lower() == "bearer" and token.strip():
        try:
            claims = verify_id_token(token.strip(), audience, deadline)
        except Unauthenticated:
            claims = None  # not for this audience: maybe an admin's ID token
        if claims is not None:
            email = str(claims.get("email") or "").lower()
            if claims.get("email_verified") is not True or email not in invokers:
                raise Forbidden(f"this account may not run {kind} jobs")
            return f"{kind}:{email}"
    return require_admin(dict(headers), deadline).identity
