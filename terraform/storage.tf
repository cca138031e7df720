# Checkpoints: each SST file is uploaded once and shared by every later checkpoint that still
# contains it (services/checkpoint), so an object's age says nothing about whether the newest
# checkpoint needs it, and an age rule on live objects would break restores. The processors
# prune old checkpoints themselves (CHECKPOINT_RETAINED); with versioning, what they prune or
# overwrite becomes noncurrent and is deleted checkpoint_retention_days later, which also leaves
# that long to recover from a bad pruning.
resource "google_storage_bucket" "checkpoints" {
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs (Data Access); usage logs would need a further bucket
  name                        = "${var.project_id}-${var.name}-checkpoints"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.checkpoint_retention_days
    }
    action {
      type = "Delete"
    }
  }
  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }
  depends_on = [google_project_service.apis]
}

# Archives of the dead-letter topics: kept at hand for a week, then in Nearline, deleted after
# dlq_retention_days.
resource "google_storage_bucket" "dlq" {
  #checkov:skip=CKV_GCP_62:access is recorded by Cloud Audit Logs (Data Access); usage logs would need a further bucket
  name                        = "${var.project_id}-${var.name}-dlq"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = var.dlq_nearline_after_days
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
  lifecycle_rule {
    condition {
      age = var.dlq_retention_days
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
    }
    action {
      type = "Delete"
    }
  }
  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }
  depends_on = [google_project_service.apis]
}
