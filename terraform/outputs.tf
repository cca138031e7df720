output "cluster_name" {
  description = "The GKE Autopilot cluster."
  value       = google_container_cluster.main.name
}

output "get_credentials" {
  description = "The command that writes the cluster's kubeconfig entry."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.main.name} --region ${var.region} --project ${var.project_id}"
}

output "image_registry" {
  description = "Where the images go: skaffold's --default-repo, and the operator chart's processorImages.registry."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "checkpoint_bucket" {
  description = "The checkpoint bucket (StreamJob spec.checkpoint.gcs.bucket)."
  value       = google_storage_bucket.checkpoints.name
}

output "dlq_bucket" {
  description = "The bucket for DLQ archives."
  value       = google_storage_bucket.dlq.name
}

output "job_service_accounts" {
  description = "GCP service account of each StreamJob (spec.identity.gcpServiceAccount)."
  value       = { for job, account in google_service_account.jobs : job => account.email }
}

output "dlq_archiver_service_account" {
  description = "GCP service account of the DLQ archiver."
  value       = google_service_account.dlq_archiver.email
}

output "redis_url" {
  description = "The feature store's URL (TLS); the AUTH string is the redis_auth_string output."
  value       = "rediss://${google_redis_instance.features.host}:${google_redis_instance.features.port}"
}

output "redis_auth_string" {
  description = "Redis AUTH password, for the Secret the jobs chart's redis.passwordSecretName names."
  value       = google_redis_instance.features.auth_string
  sensitive   = true
}

output "redis_ca_certificate" {
  description = "CA certificate of the Redis server's TLS certificate."
  value       = google_redis_instance.features.server_ca_certs[0].cert
}

output "operator_values" {
  description = "Values for the trendstream-operator chart (helm -f)."
  value = yamlencode({
    processorImages = { registry = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}" }
  })
}

output "jobs_values" {
  description = "Values for the trendstream-jobs chart (helm -f): buckets, Redis and each job's Workload Identity."
  value = yamlencode({
    checkpoint = { gcsBucket = google_storage_bucket.checkpoints.name }
    redis = {
      url                = "rediss://${google_redis_instance.features.host}:${google_redis_instance.features.port}"
      passwordSecretName = "redis-auth"
      caSecretName       = "redis-ca"
    }
    jobs = {
      for job, account in google_service_account.jobs :
      job => { spec = { identity = { gcpServiceAccount = account.email } } }
    }
  })
}
