# The platform on Google Cloud: APIs, Firestore, Secret Manager, one service account per
# function, the functions themselves (Cloud Functions gen2) and their scheduler jobs.
# Per-function settings live in functions.json, which ./deploy.sh reads too, so the gcloud
# path and this one deploy the same thing.

locals {
  settings = jsondecode(file("${path.module}/functions.json"))

  # Only functions whose folder exists are deployed; a new function needs its folder and
  # its entry in functions.json, nothing else.
  functions = {
    for name, fn in local.settings : name => fn
    if fileexists("${path.module}/../functions/${name}/main.py")
  }
  scheduled = { for name, fn in local.functions : name => fn if fn.invoker == "scheduler" }
  queued    = { for name, fn in local.functions : name => fn if fn.invoker == "tasks" }
  open      = { for name, fn in local.functions : name => fn if !contains(["scheduler", "tasks"], fn.invoker) }

  # Gen2 functions keep the predictable cloudfunctions.net address, so the functions can be
  # told each other's URLs without a dependency cycle.
  base_url = "https://${var.region}-${var.project_id}.cloudfunctions.net"
  urls     = { for name in keys(local.settings) : name => "${local.base_url}/${name}" }

  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region
  id_token_audience  = var.id_token_audience != "" ? var.id_token_audience : local.urls["list_events"]

  # Secret ids, as in shared/config.py SecretNames. Values are added out of band (docs/deploy.md)
  # so that none ever lands in the Terraform state.
  secret_ids = [
    "google-oauth-client",
    "google-calendar-refresh-token",
    "mercadopago-access-token",
    "mercadopago-webhook-secret",
    "admin-api-key",
    "oauth-state-key",
    "google-public-api-key",
  ]

  secret_readers = merge([
    for name, fn in local.functions : {
      for secret in fn.reads_secrets : "${name}/${secret}" => { function = name, secret = secret }
    }
  ]...)
  secret_rotators = merge([
    for name, fn in local.functions : {
      for secret in fn.rotates_secrets : "${name}/${secret}" => { function = name, secret = secret }
    }
  ]...)

  environment = {
    GOOGLE_CLOUD_PROJECT         = var.project_id
    CALENDAR_ID                  = var.calendar_id
    CALENDAR_AUTH                = var.calendar_auth
    CALENDAR_IMPERSONATE_SUBJECT = var.calendar_impersonate_subject
    ADMIN_EMAILS                 = join(",", var.admin_emails)
    ID_TOKEN_AUDIENCE            = local.id_token_audience
    OAUTH_REDIRECT_URI           = local.urls["oauth_callback"]
    NOTIFICATIONS_URL            = local.urls["calendar_notifications"]
    PUBLIC_EVENTS_ENABLED        = tostring(var.public_events_enabled)
    PUBLIC_CALENDAR_ID           = var.public_calendar_id
    SCHEDULING_QUEUE             = google_cloud_tasks_queue.schedule_class.id
    SYNC_QUEUE                   = google_cloud_tasks_queue.calendar_sync.id
    SCHEDULE_CLASS_URL           = local.urls["schedule_class"]
    TASKS_INVOKER_EMAIL          = google_service_account.tasks.email
  }
  # Scheduled functions check the scheduler's OIDC token themselves too (shared/services/channels.py).
  scheduler_environment = {
    for name in keys(local.scheduled) : name => {
      SCHEDULER_AUDIENCE       = local.urls[name]
      SCHEDULER_INVOKER_EMAILS = google_service_account.scheduler.email
    }
  }

  apis = [
    "artifactregistry.googleapis.com",
    "calendar-json.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "iamcredentials.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "api" {
  for_each           = toset(local.apis)
  service            = each.key
  disable_on_destroy = false
}

# -- Firestore -------------------------------------------------------------------------

resource "google_firestore_database" "main" {
  name                              = "(default)"
  location_id                       = local.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.api]
}

# Every query today is an equality on one field (bookings by preferenceId, googleEventId,
# status or conferenceStatus; channels by calendarId): Firestore's automatic single-field
# indexes serve them. This composite index serves a reconcile sweep that takes the oldest
# bookings of a status first (status == X order by updatedAt).
resource "google_firestore_index" "bookings_by_status_and_update" {
  database   = google_firestore_database.main.name
  collection = "bookings"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updatedAt"
    order      = "ASCENDING"
  }
}

# A reschedule looks for the teacher's other scheduled classes (teacher.email == X and
# status == scheduled): two equalities that Firestore can also serve by merging the
# single-field indexes; this composite one keeps that query fast as bookings grow.
resource "google_firestore_index" "bookings_by_teacher_and_status" {
  database   = google_firestore_database.main.name
  collection = "bookings"

  fields {
    field_path = "teacher.email"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
}

# The bookings by status and end: the reconcile sweep pages through upcoming scheduled
# classes (end >= a day ago, ordered by end then id), and list_events reads a page's bookings
# beside its events.list (scheduled bookings ending after the page's first instant, ordered
# by end; without the index that query fails and pages are joined after Calendar instead).
resource "google_firestore_index" "bookings_by_status_and_end" {
  database   = google_firestore_database.main.name
  collection = "bookings"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "end"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "bookings_by_status_and_payment_status" {
  database   = google_firestore_database.main.name
  collection = "bookings"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "paymentStatus"
    order      = "ASCENDING"
  }
}

# OAuth states live ten minutes; Firestore's TTL policy deletes the old ones (shared/services/consent.py).
resource "google_firestore_field" "oauth_state_expiry" {
  database   = google_firestore_database.main.name
  collection = "oauth_states"
  field      = "expiresAt"

  ttl_config {}
}

# -- Secret Manager --------------------------------------------------------------------

resource "google_secret_manager_secret" "secret" {
  for_each  = toset(local.secret_ids)
  secret_id = each.key

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "reader" {
  for_each  = local.secret_readers
  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

# Rotation: a new refresh token is added as a version and the older ones are disabled
# (shared/adapters/secret_manager.py add_secret_version). roles/secretmanager.secretVersionManager would also
# allow destroying versions, the way back to a previous grant, so this role has only what
# rotation and an operator's rollback need.
resource "google_project_iam_custom_role" "secret_rotator" {
  role_id     = "secretVersionRotator"
  title       = "Secret version rotator"
  description = "Adds secret versions and disables or enables older ones; never destroys one."
  permissions = [
    "secretmanager.secrets.get",
    "secretmanager.versions.add",
    "secretmanager.versions.disable",
    "secretmanager.versions.enable",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
  ]

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_iam_member" "rotator" {
  for_each  = local.secret_rotators
  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = google_project_iam_custom_role.secret_rotator.name
  member    = google_service_account.function[each.value.function].member
}

# -- Identities ------------------------------------------------------------------------

# One identity per function: it reads only its own secrets.
resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = "fn-${replace(each.key, "_", "-")}"
  display_name = "Cloud Function ${each.key}"
  description  = each.value.description
}

# Firestore has no per-collection IAM: every function reads and writes documents.
resource "google_project_iam_member" "firestore_user" {
  for_each = local.functions
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = google_service_account.function[each.key].member
}

# Builds the functions' containers instead of the default compute service account (Editor).
resource "google_service_account" "builder" {
  account_id   = "fn-builder"
  display_name = "Cloud Functions builder"
  description  = "Builds the functions' images from their staged sources."
}

resource "google_project_iam_member" "builder" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectViewer",
  ])
  project = var.project_id
  role    = each.key
  member  = google_service_account.builder.member
}

# Cloud Scheduler calls the scheduled functions with an OIDC token of this identity.
resource "google_service_account" "scheduler" {
  account_id   = "scheduler-invoker"
  display_name = "Cloud Scheduler invoker"
  description  = "Signs the OIDC tokens Cloud Scheduler sends to the scheduled functions."
}

# Cloud Tasks calls schedule_class (and calendar_notifications, for deferred sync rounds)
# with an OIDC token of this identity.
resource "google_service_account" "tasks" {
  account_id   = "tasks-invoker"
  display_name = "Cloud Tasks invoker"
  description  = "Signs the OIDC tokens the queues send: schedule-class to schedule_class, calendar-sync to calendar_notifications."
}

# The queue between payments and Calendar. Google allows one user about 600 Calendar
# requests a minute (10 a second) and a class costs one insert: the sync's push-triggered
# listings keep their own pace (calendar-sync below, 12 a minute at most), so 9.5 dispatches
# a second leave about 18 requests a minute for admins' listings and reconcile
# (bench/burst.py: 1.05x the quota's floor). Retries never give up (reconcile would notice
# within 15 minutes anyway) and back off to five minutes; a 429 from schedule_class slows
# the queue further (Cloud Tasks' system throttling). schedule_class serves up to 20 at once
# (functions.json: 4 per instance, 5 instances).
resource "google_cloud_tasks_queue" "schedule_class" {
  name     = "schedule-class"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 9.5
    max_concurrent_dispatches = 16 # an insert with a Meet link takes up to a second or so
  }

  retry_config {
    max_attempts       = -1
    max_retry_duration = "0s"
    min_backoff        = "5s"
    max_backoff        = "300s"
    max_doublings      = 5
  }

  depends_on = [google_project_service.api]
}

# Who enqueues (the webhook), pauses (schedule_class on Google's usage limit) and resumes
# (reconcile, when the limit should be over): the queue's own IAM, not the project's.
resource "google_cloud_tasks_queue_iam_member" "queue_user" {
  for_each = toset(["payment_webhook", "reconcile", "schedule_class", "manage_booking"])
  name     = google_cloud_tasks_queue.schedule_class.id
  location = var.region
  role     = "roles/cloudtasks.queueAdmin"
  member   = google_service_account.function[each.key].member
}

# The sync's deferred rounds: a push sooner than SYNC_INTERVAL_SECONDS after the last round
# asks for one round at the paced time (named after it, so many pushes make one task), sent
# back to calendar_notifications with the tasks identity's OIDC token. One at a time: rounds
# of one calendar never overlap anyway (the sync's lease). Never paused: reading changes back
# is not what Google's usage limit stops.
resource "google_cloud_tasks_queue" "calendar_sync" {
  name     = "calendar-sync"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 1
    max_concurrent_dispatches = 1
  }

  retry_config {
    max_attempts       = 10
    max_retry_duration = "900s"
    min_backoff        = "5s"
    max_backoff        = "120s"
    max_doublings      = 4
  }

  depends_on = [google_project_service.api]
}

# A push (calendar_notifications) or the scheduled catch-up (renew_watch) may defer a round.
resource "google_cloud_tasks_queue_iam_member" "sync_enqueuer" {
  for_each = toset(["calendar_notifications", "renew_watch"])
  name     = google_cloud_tasks_queue.calendar_sync.id
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.key].member
}

# Enqueuing a task with the tasks identity's OIDC token requires acting as it.
resource "google_service_account_iam_member" "act_as_tasks" {
  for_each           = toset(["payment_webhook", "reconcile", "calendar_notifications", "renew_watch"])
  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.key].member
}

# -- Function sources ------------------------------------------------------------------

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs (zipped sources); access is already recorded by Cloud Audit Logs.
  name                        = "${var.project_id}-function-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
    }
    action {
      type = "Delete"
    }
  }
}

data "archive_file" "source" {
  for_each    = var.manage_functions ? local.functions : {}
  type        = "zip"
  source_dir  = "${path.module}/${var.build_dir}/${each.key}"
  output_path = "${path.module}/${var.build_dir}/${each.key}.zip"
}

resource "google_storage_bucket_object" "source" {
  for_each = data.archive_file.source
  # The content hash in the name makes a code change a new object, hence a new revision.
  name   = "${each.key}/${each.value.output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = each.value.output_path
}

# -- Functions -------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:Callers are on the internet (Mercado Pago, Google push, browsers, admin scripts); IAM (scheduled functions: only the scheduler identity) and in-function authentication guard each endpoint.
  for_each    = var.manage_functions ? local.functions : {}
  name        = each.key
  location    = var.region
  description = each.value.description

  build_config {
    runtime         = var.runtime
    entry_point     = each.key
    service_account = google_service_account.builder.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    max_instance_request_concurrency = each.value.concurrency
    timeout_seconds                  = each.value.timeout_seconds
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = merge(local.environment, lookup(local.scheduler_environment, each.key, {}))
  }

  depends_on = [
    google_project_service.api,
    google_project_iam_member.builder,
    google_secret_manager_secret_iam_member.reader,
    google_secret_manager_secret_iam_member.rotator,
  ]
}

# Webhooks, the push channel and the OAuth redirect are called by Mercado Pago, Google and
# browsers, which carry no Google identity; admin functions check an ID token or the API key
# themselves, since an API-key script has no Google identity either.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = var.manage_functions ? local.open : {}
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler" {
  for_each = var.manage_functions ? local.scheduled : {}
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_run_v2_service_iam_member" "tasks" {
  for_each = var.manage_functions ? local.queued : {}
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.tasks.member
}

resource "google_cloud_scheduler_job" "job" {
  for_each         = var.manage_functions ? local.scheduled : {}
  name             = replace(each.key, "_", "-")
  region           = var.region
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = "America/Argentina/Buenos_Aires"
  attempt_deadline = "${each.value.timeout_seconds + 20}s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function[each.key].url

    # The function's cloudfunctions.net URL: known before deploy, so the function can be told
    # which audience to expect.
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.urls[each.key]
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler]
}
