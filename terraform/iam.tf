# One GCP service account per StreamJob, bound through Workload Identity to the Kubernetes
# service account the operator creates for it (named after the job, in var.namespace).
resource "google_service_account" "jobs" {
  for_each     = var.jobs
  account_id   = "${var.name}-${each.key}"
  display_name = "TrendStream ${each.key} (${each.value})"
  lifecycle {
    precondition {
      condition     = length("${var.name}-${each.key}") <= 30
      error_message = "The service account ID ${var.name}-${each.key} is longer than 30 characters: shorten var.name or the job's name."
    }
  }
}

resource "google_service_account_iam_member" "jobs_workload_identity" {
  for_each           = var.jobs
  service_account_id = google_service_account.jobs[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_pool}[${var.namespace}/${each.key}]"
}

# Checkpoints are written, read back on restore, listed and pruned: objectUser, on this bucket
# only, and only for the processors that keep state.
resource "google_storage_bucket_iam_member" "checkpoints" {
  for_each = local.stateful_jobs
  bucket   = google_storage_bucket.checkpoints.name
  role     = "roles/storage.objectUser"
  member   = google_service_account.jobs[each.key].member
}

# The DLQ archiver only adds objects.
resource "google_service_account" "dlq_archiver" {
  account_id   = "${var.name}-dlq-archiver"
  display_name = "TrendStream DLQ archiver"
}

resource "google_service_account_iam_member" "dlq_archiver_workload_identity" {
  service_account_id = google_service_account.dlq_archiver.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_pool}[${var.namespace}/${var.dlq_archiver_service_account}]"
}

resource "google_storage_bucket_iam_member" "dlq_archiver" {
  bucket = google_storage_bucket.dlq.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.dlq_archiver.member
}

# The nodes pull the images from this repository only.
resource "google_artifact_registry_repository_iam_member" "nodes" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.nodes.member
}
