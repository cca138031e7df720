"""Starting each component on 127.0.0.1 on a free port and waiting until it serves.

Each `start_*` function spawns its processes, returns the env-file entries tests read, and a
readiness wait. Starting is split from waiting so slow starters (Kafka, the API server) boot in
parallel.
"""

import base64
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
import uuid
from pathlib import Path

from . import install, paths, pki, procs
from .log import say


def http_ok(url: str, context=None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:
        return 200 <= response.status < 300


# ---------------------------------------------------------------- Kafka

KAFKA_LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


# The SCRAM user of the SASL_SSL listener (a test password: the broker listens on loopback only).
KAFKA_SASL_USER = "trendstream"
KAFKA_SASL_PASSWORD = "kafka-test-s3cret"


def start_kafka(ctx: dict):
    libs = install.kafka()
    home = paths.STATE / "kafka"
    home.mkdir(parents=True)
    port, controller_port = procs.free_port(), procs.free_port()
    # With the node, a second listener on its address: a client is told the address of the
    # listener it bootstrapped from, so pods get the node's and host tests 127.0.0.1.
    node_ip = ctx.get("node_ip")
    node_port = procs.free_port() if node_ip else None
    # A third, as managed Kafka is reached: TLS (a certificate from a CA of the environment's own)
    # and SASL/SCRAM-SHA-512 with a user the storage is formatted with.
    secure_port = procs.free_port()
    listeners = [f"PLAINTEXT://127.0.0.1:{port}", f"SASL_SSL://127.0.0.1:{secure_port}"] \
        + ([f"NODE://{node_ip}:{node_port}"] if node_ip else [])
    tls = home / "tls"
    pki.make_ca(tls, "trendstream-kafka-test-ca")
    pki.issue(tls, "broker", "/CN=127.0.0.1", "IP:127.0.0.1")
    # Kafka's PEM key store: the private key (unencrypted PKCS#8) and the certificate in one file.
    (tls / "broker.pem").write_text((tls / "broker.key").read_text() + (tls / "broker.crt").read_text())
    (home / "log4j2.properties").write_text(KAFKA_LOG4J)
    # One node that is both broker and controller. Transactions need their internal topics to be
    # satisfiable on one node, hence replication factor 1 and min ISR 1 throughout.
    (home / "server.properties").write_text(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={",".join(listeners)},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={",".join(listeners)}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,NODE:PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location={tls / 'broker.pem'}
log.dirs={home / 'data'}
num.partitions=12
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
""")
    java = ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp", f"{libs}/*"]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    format_log = paths.LOGS / "kafka-format.log"
    paths.LOGS.mkdir(parents=True, exist_ok=True)
    with open(format_log, "wb") as log:
        # One argument: a base64 id may begin with "-", which would read as an option.
        result = subprocess.run(java + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                        "-c", str(home / "server.properties"),
                                        f"--add-scram=SCRAM-SHA-512=[name={KAFKA_SASL_USER},"
                                        f"password={KAFKA_SASL_PASSWORD}]"],
                                stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"formatting Kafka's storage failed; see {format_log}:\n"
                           f"{format_log.read_text(errors='replace')[-3000:]}")
    entry = procs.spawn("kafka", java + ["kafka.Kafka", str(home / "server.properties")])

    def ready():
        return procs.tcp_open(port) and "Kafka Server started" in Path(entry.log).read_text(errors="replace")

    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS": f"127.0.0.1:{secure_port}",
           "KAFKA_TEST_CA_CERT": str(tls / "ca.crt"),
           "KAFKA_TEST_SASL_USERNAME": KAFKA_SASL_USER,
           "KAFKA_TEST_SASL_PASSWORD": KAFKA_SASL_PASSWORD}
    if node_ip:
        env["NODE_KAFKA_BOOTSTRAP_SERVERS"] = f"{node_ip}:{node_port}"
    return env, lambda: procs.wait_until(entry, "broker started", ready, 120)


# ---------------------------------------------------------------- Redis

def _node_hosts(ctx: dict) -> list[str]:
    """The addresses a component listens on: loopback, and the node's address when it runs."""
    return ["127.0.0.1"] + ([ctx["node_ip"]] if ctx.get("node_ip") else [])


def start_redis(ctx: dict):
    port = procs.free_port()
    data = paths.STATE / "redis"
    data.mkdir(parents=True)
    # Protected mode refuses every client but loopback when there is no password: pods connect
    # from the node's range.
    protected = "no" if ctx.get("node_ip") else "yes"
    entry = procs.spawn("redis", ["redis-server", "--bind", *_node_hosts(ctx), "--port", str(port),
                                  "--save", "", "--appendonly", "no", "--dir", str(data),
                                  "--daemonize", "no", "--protected-mode", protected])

    def ready():
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    env = {"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_PORT": str(port)}
    if ctx.get("node_ip"):
        env["NODE_REDIS_URL"] = f"redis://{ctx['node_ip']}:{port}"
    return env, lambda: procs.wait_until(entry, "PING answered", ready, 30)


# ---------------------------------------------------------------- PostgreSQL

def _postgres_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(Path(p).parent.parent.name))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found (Debian package `postgresql`)")


def start_postgres(ctx: dict):
    bindir = _postgres_bin()
    port = procs.free_port()
    # PostgreSQL refuses to run as root: as root, run it as the `postgres` user, in a directory
    # under /tmp that user can reach (the checkout may sit in a home it cannot enter).
    user = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="trendstream-pg-"))
    (paths.STATE / "postgres-data").write_text(str(data))
    if user:
        shutil.chown(data, user, user)
    init_log = paths.LOGS / "postgres-initdb.log"
    with open(init_log, "wb") as log:
        result = subprocess.run([str(bindir / "initdb"), "-D", str(data / "pgdata"), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"],
                                stdout=log, stderr=subprocess.STDOUT, user=user, group=user)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed; see {init_log}:\n{init_log.read_text(errors='replace')[-3000:]}")
    if ctx.get("node_ip"):
        with open(data / "pgdata" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {ctx['pod_cidr']} trust\nhost replication all {ctx['pod_cidr']} trust\n")
    # TLS is offered beside plain connections (`host` lines match both), with a certificate for
    # every address it listens on, signed by a CA of its own (PG_CA_CERT), so clients can be
    # tested with sslmode=require and verify-full.
    tls = data / "pki"
    pki.make_ca(tls, "trendstream-postgres-test-ca")
    pki.issue(tls, "server", "/CN=127.0.0.1", ",".join(f"IP:{host}" for host in _node_hosts(ctx)))
    (tls / "server.key").chmod(0o600)
    if user:
        for path in [tls, *tls.iterdir()]:
            shutil.chown(path, user, user)
    entry = procs.spawn("postgres", [
        str(bindir / "postgres"), "-D", str(data / "pgdata"), "-p", str(port),
        "-c", f"listen_addresses={','.join(_node_hosts(ctx))}", "-c", f"unix_socket_directories={data}",
        "-c", "wal_level=logical", "-c", "max_replication_slots=16", "-c", "max_wal_senders=16",
        # No fsync: test data need not survive a crash. synchronous_commit stays on, since logical
        # decoding only sees WAL that has been flushed.
        "-c", "fsync=off", "-c", "full_page_writes=off",
        "-c", "ssl=on", "-c", f"ssl_cert_file={tls / 'server.crt'}", "-c", f"ssl_key_file={tls / 'server.key'}",
    ], user=user, stop_signal=signal.SIGINT)

    def ready():
        if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
            return False
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "-c", "CREATE DATABASE trendstream"], check=True, capture_output=True)
        return True

    env = {"PG_HOST": "127.0.0.1", "PG_PORT": str(port), "PG_USER": "postgres",
           "PG_DATABASE": "trendstream", "PG_URL": f"postgres://postgres@127.0.0.1:{port}/trendstream",
           "PG_CA_CERT": str(tls / "ca.crt")}
    if ctx.get("node_ip"):
        env["NODE_PG_URL"] = f"postgres://postgres@{ctx['node_ip']}:{port}/trendstream"
    return env, lambda: procs.wait_until(entry, "accepting connections", ready, 60)


def cleanup_postgres() -> None:
    marker = paths.STATE / "postgres-data"
    if marker.exists():
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)
        marker.unlink()


# ---------------------------------------------------------------- GCS emulator

def start_gcs(ctx: dict):
    bin_dir = install.python_tools()
    port = procs.free_port()
    # The emulator listens on one address: the node's when it runs (host tests reach it too).
    host = ctx.get("node_ip") or "127.0.0.1"
    entry = procs.spawn("gcs", [str(bin_dir / "gcp-storage-emulator"), "start", "--host", host,
                                "--port", str(port), "--in-memory"])
    url = f"http://{host}:{port}"
    env = {"GCS_ENDPOINT": url, "STORAGE_EMULATOR_HOST": url}
    return env, lambda: procs.wait_until(entry, "JSON API answering",
                                         lambda: http_ok(f"{url}/storage/v1/b?project=test"), 60)


# ---------------------------------------------------------------- Prometheus

def start_prometheus(ctx: dict):
    port = procs.free_port()
    home = paths.STATE / "prometheus"
    targets = home / "targets"
    targets.mkdir(parents=True)
    rules = home / "rules"
    rules.mkdir()
    # Tests add scrape targets at run time by writing <name>.json into the targets directory
    # (file service discovery, re-read every second), and rule files into the rules directory
    # (then POST /-/reload); scrapes and rule evaluations run every second. Debian's Prometheus
    # is built without Kubernetes service discovery: tests that scrape pods list them through
    # the API server and write their targets (trendstream_e2e::prometheus).
    (home / "prometheus.yml").write_text(f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}/*.yaml"]
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: tests
    file_sd_configs:
      - files: ["{targets}/*.json"]
        refresh_interval: 1s
""")
    entry = procs.spawn("prometheus", [
        "prometheus", f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d",
    ])
    url = f"http://127.0.0.1:{port}"
    env = {"PROMETHEUS_URL": url, "PROMETHEUS_TARGETS_DIR": str(targets), "PROMETHEUS_RULES_DIR": str(rules),
           "PROMTOOL": shutil.which("promtool") or "promtool"}
    return env, lambda: procs.wait_until(entry, "ready", lambda: http_ok(f"{url}/-/ready"), 60)


# ---------------------------------------------------------------- OCI registry

def start_registry(ctx: dict):
    """distribution's registry on 127.0.0.1: images are pushed here and the node pulls them."""
    bin_dir = install.go_tools("registry")
    port = procs.free_port()
    home = paths.STATE / "registry"
    home.mkdir(parents=True)
    (home / "config.yml").write_text(f"""\
version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {home / 'data'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
""")
    entry = procs.spawn("registry", [str(bin_dir / "registry"), "serve", str(home / "config.yml")],
                        env=dict(os.environ, OTEL_TRACES_EXPORTER="none"))
    address = f"127.0.0.1:{port}"
    ctx["registry"] = address
    return {"REGISTRY": address}, lambda: procs.wait_until(entry, "/v2/ answering",
                                                           lambda: http_ok(f"http://{address}/v2/"), 30)
