"""The TrendStream test environment: installs, starts and stops real components on 127.0.0.1.

Every component is the real thing (Apache Kafka in KRaft mode, Redis, PostgreSQL with logical
replication, a GCS emulator, Prometheus, and a Kubernetes control plane with kwok). Downloads and
builds are cached under ~/.cache/trendstream; the running state (data, logs, the env file tests
read, and the PIDs to stop) lives in <repo>/.e2e-env.
"""
