output "function_urls" {
  description = "Every function's address."
  value       = { for name in keys(local.functions) : name => local.urls[name] }
}

output "oauth_redirect_uri" {
  description = "Register this as an authorized redirect URI of the OAuth client (Google Cloud Console > Credentials)."
  value       = local.urls["oauth_callback"]
}

output "mercadopago_webhook_url" {
  description = "Give this to Mercado Pago (Your integrations > Webhooks); source_news=webhooks stops the duplicate IPN delivery."
  value       = "${local.urls["payment_webhook"]}?source_news=webhooks"
}

output "calendar_notifications_url" {
  description = "Where Google Calendar delivers push notifications; renew_watch registers it."
  value       = local.urls["calendar_notifications"]
}

output "oauth_start_url" {
  description = "Open once as an admin (ID token or X-API-Key) to connect the calendar."
  value       = local.urls["oauth_start"]
}

output "service_accounts" {
  description = "The identity each function runs as (deploy.sh uses the same names)."
  value       = { for name, account in google_service_account.function : name => account.email }
}

output "scheduler_service_account" {
  description = "The identity whose OIDC tokens the scheduled functions accept."
  value       = google_service_account.scheduler.email
}
