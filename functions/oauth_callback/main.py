"""Where Google sends the admin back after the consent screen: store the grant, say what happened.

The page is for a person, in Spanish and English: what happened and what to do next.
"""

from __future__ import annotations

import html

import functions_framework
from flask import Request, Response

from shared.errors import PlatformError
from shared.services.consent import ConsentOutcome, ConsentResult, complete_consent
from shared.web.endpoint import Handled, endpoint

RETRY_ES = "Volvé al panel de administración y conectá Google Calendar otra vez."
RETRY_EN = "Go back to the admin panel and connect Google Calendar again."
REVOKE_ES = (
    "Quitá el acceso de la aplicación en https://myaccount.google.com/permissions y conectá "
    "Google Calendar otra vez: Google entrega un token nuevo solo tras un consentimiento nuevo."
)
REVOKE_EN = (
    "Remove the app's access at https://myaccount.google.com/permissions, then connect Google "
    "Calendar again: Google hands out a new token only after a fresh consent."
)

# outcome -> (Spanish title, Spanish text, English title, English text)
PAGES: dict[ConsentOutcome, tuple[str, str, str, str]] = {
    ConsentOutcome.CONNECTED: (
        "Google Calendar conectado",
        "Las clases pagadas se crearán en el calendario {calendar} con su enlace de Meet.",
        "Google Calendar connected",
        "Paid classes will be created in the calendar {calendar} with their Meet link.",
    ),
    ConsentOutcome.INVALID_STATE: (
        "Enlace no válido",
        "Este enlace no lo generó la plataforma. No se guardó nada. " + RETRY_ES,
        "Invalid link",
        "This link was not issued by the platform. Nothing was stored. " + RETRY_EN,
    ),
    ConsentOutcome.EXPIRED_STATE: (
        "El enlace venció",
        "Pasaron más de 10 minutos desde que empezó la conexión. No se guardó nada. " + RETRY_ES,
        "The link expired",
        "More than 10 minutes passed since the connection started. Nothing was stored. " + RETRY_EN,
    ),
    ConsentOutcome.REUSED_STATE: (
        "Enlace ya usado",
        "Este enlace de conexión ya se usó una vez. No se guardó nada. " + RETRY_ES,
        "Link already used",
        "This connection link was already used once. Nothing was stored. " + RETRY_EN,
    ),
    ConsentOutcome.ACCESS_DENIED: (
        "Acceso no concedido",
        "No se dio permiso a Google Calendar, así que las clases no se pueden agendar. " + RETRY_ES,
        "Access not granted",
        "Google Calendar access was not granted, so classes cannot be scheduled. " + RETRY_EN,
    ),
    ConsentOutcome.OAUTH_ERROR: (
        "Google devolvió un error",
        "Google respondió «{error}». No se guardó nada. " + RETRY_ES,
        "Google returned an error",
        'Google answered "{error}". Nothing was stored. ' + RETRY_EN,
    ),
    ConsentOutcome.CODE_REJECTED: (
        "La autorización venció",
        "Google no aceptó el código de autorización (vencido o ya usado). " + RETRY_ES,
        "The authorization expired",
        "Google did not accept the authorization code (expired or already used). " + RETRY_EN,
    ),
    ConsentOutcome.NO_REFRESH_TOKEN: (
        "Google no entregó un token de actualización",
        "Sin él la plataforma no puede crear eventos cuando no estás conectado. " + REVOKE_ES,
        "Google did not return a refresh token",
        "Without it the platform cannot create events while you are away. " + REVOKE_EN,
    ),
    ConsentOutcome.MISSING_SCOPES: (
        "Faltan permisos de Google Calendar",
        "Hay que marcar las casillas de ver y editar eventos del calendario. " + RETRY_ES,
        "Google Calendar permissions missing",
        "Tick the boxes to see and edit calendar events. " + RETRY_EN,
    ),
    ConsentOutcome.CALENDAR_UNREACHABLE: (
        "Esa cuenta no puede editar el calendario",
        "La cuenta {account} no puede crear eventos en el calendario {calendar}. No se guardó "
        "nada y la conexión anterior sigue activa. Conectá con la cuenta dueña del calendario "
        "o con una que tenga permiso para modificar sus eventos. " + RETRY_ES,
        "That account cannot edit the calendar",
        "The account {account} cannot create events in the calendar {calendar}. Nothing was "
        "stored and the previous connection still works. Connect with the calendar's owner "
        "or an account allowed to change its events. " + RETRY_EN,
    ),
}
UNAVAILABLE = (
    "Servicio no disponible",
    "Google o nuestro almacenamiento no respondieron. Probá de nuevo en unos minutos. " + RETRY_ES,
    "Service unavailable",
    "Google or our storage did not answer. Try again in a few minutes. " + RETRY_EN,
)
FAILED = (
    "No se pudo completar la conexión",
    "Ocurrió un error de configuración; avisá al equipo técnico.",
    "The connection could not be completed",
    "A configuration error occurred; tell the technical team.",
)


def page(texts: tuple[str, str, str, str], status: int, **values: str) -> Response:
    safe = {name: html.escape(value) for name, value in values.items()}
    title_es, text_es, title_en, text_en = (html.escape(t).format(**safe) for t in texts)
    body = (
        '<!doctype html><html lang="es"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title_es} / {title_en}</title>"
        f"<h1>{title_es}</h1><p>{text_es}</p>"
        f'<hr><section lang="en"><h2>{title_en}</h2><p>{text_en}</p></section></html>'
    )
    headers = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the URL carried a one-time authorization code
        "Content-Security-Policy": "default-src 'none'",
        "X-Frame-Options": "DENY",
    }
    return Response(body, status=status, headers=headers, mimetype="text/html")


def error_page(error: PlatformError) -> Response:
    return page(UNAVAILABLE, 503) if error.retry else page(FAILED, error.status)


@functions_framework.http
@endpoint("calendar consent", methods=("GET",), on_error=error_page)
def oauth_callback(request: Request) -> Handled:
    result: ConsentResult = complete_consent(request.args.to_dict())
    response = page(
        PAGES[result.outcome],
        result.outcome.status,
        calendar=result.calendar_id,
        error=result.error,
        account=result.connected_by or "-",
    )
    return Handled(response, {"outcome": result.outcome.value})
