variable "project_id" {
  description = "GCP project that holds everything."
  type        = string
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the cluster, the buckets, Redis and the registry."
  type        = string
  default     = "europe-west1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a GCP region such as europe-west1."
  }
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "trendstream"
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{1,14}$", var.name))
    error_message = "name must be 2 to 15 lowercase letters, digits or hyphens, starting with a letter (it prefixes service account IDs, at most 30 characters)."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the StreamJobs (their service accounts are named after the jobs)."
  type        = string
  default     = "trendstream"
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a Kubernetes namespace name (DNS label)."
  }
}

variable "jobs" {
  description = "StreamJobs by name (= their Kubernetes service account) and their processor; each gets its own GCP service account."
  type        = map(string)
  default = {
    cdc-processor      = "cdc-processor"
    session-aggregator = "session-aggregator"
    fraud-detector     = "fraud-detector"
    revenue-calculator = "revenue-calculator"
    feature-api        = "feature-api"
  }
  validation {
    condition = alltrue([
      for job, processor in var.jobs :
      contains(["cdc-processor", "session-aggregator", "fraud-detector", "revenue-calculator", "feature-api"], processor)
      && can(regex("^[a-z][-a-z0-9]{0,18}[a-z0-9]$", job))
    ])
    error_message = "each job name must be a DNS label of at most 20 characters, and each processor one of cdc-processor, session-aggregator, fraud-detector, revenue-calculator, feature-api."
  }
}

variable "dlq_archiver_service_account" {
  description = "Kubernetes service account (in var.namespace) of whatever archives the dead-letter topics to the DLQ bucket, such as a Kafka Connect GCS sink."
  type        = string
  default     = "dlq-archiver"
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.dlq_archiver_service_account))
    error_message = "dlq_archiver_service_account must be a Kubernetes service account name."
  }
}

variable "checkpoint_retention_days" {
  description = "Days after which a checkpoint object that is no longer current (pruned by the processor's retention, or overwritten) is deleted."
  type        = number
  default     = 7
  validation {
    condition     = var.checkpoint_retention_days >= 1 && var.checkpoint_retention_days <= 365
    error_message = "checkpoint_retention_days must be between 1 and 365."
  }
}

variable "dlq_nearline_after_days" {
  description = "Days after which a DLQ archive object moves to Nearline storage."
  type        = number
  default     = 7
  validation {
    condition     = var.dlq_nearline_after_days >= 1
    error_message = "dlq_nearline_after_days must be at least 1."
  }
}

variable "dlq_retention_days" {
  description = "Days after which a DLQ archive object is deleted."
  type        = number
  default     = 30
  validation {
    condition     = var.dlq_retention_days >= 2 && var.dlq_retention_days <= 3650
    error_message = "dlq_retention_days must be between 2 and 3650."
  }
}

variable "network_cidrs" {
  description = "Primary, pod and service ranges of the cluster's subnetwork, and the /28 of its control plane."
  type = object({
    nodes         = string
    pods          = string
    services      = string
    control_plane = string
  })
  default = {
    nodes         = "10.10.0.0/20"
    pods          = "10.20.0.0/14"
    services      = "10.24.0.0/20"
    control_plane = "172.16.0.0/28"
  }
  validation {
    condition     = alltrue([for cidr in values(var.network_cidrs) : can(cidrnetmask(cidr))])
    error_message = "every network_cidrs entry must be an IPv4 CIDR block."
  }
  validation {
    condition     = endswith(var.network_cidrs.control_plane, "/28")
    error_message = "network_cidrs.control_plane must be a /28."
  }
}

variable "authorized_networks" {
  description = "CIDR blocks allowed to reach the cluster's control plane, by display name."
  type        = map(string)
  validation {
    condition     = length(var.authorized_networks) > 0 && alltrue([for cidr in values(var.authorized_networks) : can(cidrnetmask(cidr)) && cidr != "0.0.0.0/0"])
    error_message = "authorized_networks needs at least one IPv4 CIDR block, and not 0.0.0.0/0."
  }
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"
  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GiB."
  type        = number
  default     = 5
  validation {
    condition     = var.redis_memory_gb >= 1 && var.redis_memory_gb <= 300
    error_message = "redis_memory_gb must be between 1 and 300."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) that encrypts the buckets, the registry and Redis; Google-managed keys when null. The services' agents need roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null
  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a full Cloud KMS crypto key name."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][-_a-z0-9]{0,62}$", k)) && can(regex("^[-_a-z0-9]{0,63}$", v))])
    error_message = "labels keys and values must be GCP labels: lowercase letters, digits, hyphens and underscores."
  }
}
