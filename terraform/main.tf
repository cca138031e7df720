locals {
  labels = merge({ app = "trendstream", managed-by = "terraform" }, var.labels)
  # Stateful processors keep checkpoints in GCS; feature-api only reads Redis.
  stateful_jobs = { for job, processor in var.jobs : job => processor if processor != "feature-api" }
  workload_pool = "${var.project_id}.svc.id.goog"
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "redis.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

resource "google_compute_network" "main" {
  name                    = var.name
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

# Nothing from outside unless a rule allows it (GKE adds the rules the cluster needs, at a
# higher priority), and denied attempts are logged.
resource "google_compute_firewall" "deny_ingress" {
  name          = "${var.name}-deny-ingress"
  network       = google_compute_network.main.id
  direction     = "INGRESS"
  priority      = 65534
  source_ranges = ["0.0.0.0/0"]
  deny {
    protocol = "all"
  }
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "main" {
  name                     = var.name
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.network_cidrs.nodes
  private_ip_google_access = true
  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.network_cidrs.pods
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.network_cidrs.services
  }
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private nodes reach the internet (images outside Artifact Registry, external brokers) through NAT.
resource "google_compute_router" "main" {
  name    = var.name
  region  = var.region
  network = google_compute_network.main.id
}

resource "google_compute_router_nat" "main" {
  name                               = var.name
  router                             = google_compute_router.main.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# The nodes' own identity: logs, metrics and image pulls, nothing else (the default compute
# service account has Editor).
resource "google_service_account" "nodes" {
  account_id   = "${var.name}-nodes"
  display_name = "TrendStream GKE nodes"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/autoscaling.metricsWriter",
  ])
  project = var.project_id
  role    = each.value
  member  = google_service_account.nodes.member
}

# Autopilot: Google runs the nodes; Workload Identity, Shielded GKE nodes with secure boot and
# integrity monitoring, the GKE metadata server and Dataplane V2 (network policies) are always on.
resource "google_container_cluster" "main" {
  #checkov:skip=CKV_GCP_12:Autopilot enforces NetworkPolicy through Dataplane V2; the network_policy block is not accepted there
  #checkov:skip=CKV_GCP_61:Autopilot manages intranode visibility; the setting is not accepted there
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain group (gke-security-groups@DOMAIN) this module cannot know
  #checkov:skip=CKV_GCP_66:Binary Authorization needs a project policy and attestors managed outside this module; enable evaluation_mode once they exist
  #checkov:skip=CKV_GCP_67:node_config is managed by Autopilot, which disables legacy metadata endpoints
  #checkov:skip=CKV_GCP_68:node_config is managed by Autopilot, whose nodes use Shielded VMs with secure boot
  #checkov:skip=CKV_GCP_69:node_config is managed by Autopilot, which always runs the GKE metadata server
  #checkov:skip=CKV_GCP_72:node_config is managed by Autopilot, whose nodes have integrity monitoring on
  name                = var.name
  location            = var.region
  enable_autopilot    = true
  network             = google_compute_network.main.id
  subnetwork          = google_compute_subnetwork.main.id
  deletion_protection = var.deletion_protection
  resource_labels     = local.labels

  release_channel {
    channel = var.release_channel
  }
  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.network_cidrs.control_plane
  }
  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.authorized_networks
      content {
        display_name = cidr_blocks.key
        cidr_block   = cidr_blocks.value
      }
    }
  }
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }
  workload_identity_config {
    workload_pool = local.workload_pool
  }
  cluster_autoscaling {
    auto_provisioning_defaults {
      service_account = google_service_account.nodes.email
      oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    }
  }
  dynamic "database_encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      state    = "ENCRYPTED"
      key_name = database_encryption.value
    }
  }
  depends_on = [google_project_service.apis]
}
