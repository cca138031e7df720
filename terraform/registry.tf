# The images skaffold (or CI) pushes: tags cannot move, untagged images go after 30 days.
resource "google_artifact_registry_repository" "images" {
  location      = var.region
  repository_id = var.name
  format        = "DOCKER"
  description   = "TrendStream operator and processor images"
  kms_key_name  = var.kms_key_name
  labels        = local.labels

  docker_config {
    immutable_tags = true
  }
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }
  depends_on = [google_project_service.apis]
}
