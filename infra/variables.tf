variable "project_id" {
  description = "The Google Cloud project that runs the platform."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler jobs and the Firestore database."
  type        = string
  default     = "southamerica-east1"
}

variable "firestore_location" {
  description = "Firestore location; defaults to the region (Sao Paulo, closest to Buenos Aires)."
  type        = string
  default     = ""
}

variable "calendar_id" {
  description = "The Google Calendar that holds the classes (an email-like id, or \"primary\")."
  type        = string
}

variable "admin_emails" {
  description = "Google accounts allowed to call the admin functions with an ID token."
  type        = list(string)
  default     = []
}

variable "id_token_audience" {
  description = "Audience admins' ID tokens must carry; empty means the list_events URL."
  type        = string
  default     = ""
}

variable "calendar_auth" {
  description = "How Calendar calls authenticate: \"oauth\" (admin's refresh token) or \"service_account\"."
  type        = string
  default     = "oauth"

  validation {
    condition     = contains(["oauth", "service_account"], var.calendar_auth)
    error_message = "calendar_auth must be \"oauth\" or \"service_account\"."
  }
}

variable "calendar_impersonate_subject" {
  description = "Workspace user a service account acts as (domain-wide delegation); empty for none."
  type        = string
  default     = ""
}

variable "public_events_enabled" {
  description = "Serve the public read feed (title, start, end only) from list_events."
  type        = bool
  default     = false
}

variable "public_calendar_id" {
  description = "Public calendar the public read feed lists, never calendar_id (empty: the feed answers 404)."
  type        = string
  default     = ""
}

variable "runtime" {
  description = "Cloud Functions runtime of every function."
  type        = string
  default     = "python313"
}

variable "build_dir" {
  description = "Where ./deploy.sh --stage-only put each function's self-contained source."
  type        = string
  default     = "../build"
}

variable "manage_functions" {
  description = "Deploy the functions, their invokers and the scheduler jobs here; false when ./deploy.sh does it with gcloud."
  type        = bool
  default     = true
}
