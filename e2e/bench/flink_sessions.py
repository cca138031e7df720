"""The Flink side of e2e/bench-sessions: session-aggregator's job in Flink SQL (PyFlink, local
mode, parallelism 1) over the clickstream records of a loadgen event file.

1. (untimed) The event file's `clickstream` lines are unwrapped into a JSON Lines file of
   ClickEvents (the `value` strings, byte for byte) in --work-dir.
2. (timed: "JVM start") The TableEnvironment is created: PyFlink launches the JVM and its py4j
   gateway.
3. (timed: "job") One INSERT into a `blackhole` sink runs to the end of the bounded file source:
   SESSION windows per user_id with a 30 minute gap (the SESSION window table-valued function),
   event time `ts` with a watermark 30 s behind it, computing what a SessionSummary holds: first
   and last click time, duration, event count, the six per-type counts, the last category and
   device and the distinct categories. The job's wall time is measured from the INSERT's submit
   (planning, the local MiniCluster's start-up) to its end; Flink's own net runtime is printed
   beside it.

With --kafka-bootstrap (the "same work" run) the job reads the clicks from the Kafka topic
session-aggregator read (bounded at its end offsets, JSON values), keeps its state in RocksDB
with an exactly-once checkpoint every --checkpoint-interval-ms (as session-aggregator commits
every 100 ms) and writes the sessions to a Kafka topic with exactly-once transactions: the
durable work session-aggregator does, minus its Redis writes.

The last stdout line is one JSON object with the figures, for the harness (bench_sessions.rs).

Semantics are those of the docs/processors.md session rules where it matters for the work done
(a click opens [ts, ts + gap), windows that overlap or touch merge); Flink has one watermark
for the single source split while session-aggregator keeps one per partition, so the few
loadgen "late" clicks may be dropped or kept differently. The bounded source ends with a final
watermark that closes every session, as loadgen's watermark records do for session-aggregator.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path


def unwrap(events_file: Path, out: Path, topic: str) -> int:
    """Writes the values of `topic`'s records to `out`, one per line; returns their count."""
    count = 0
    with events_file.open("rb") as src, out.open("wb") as dst:
        for line in src:
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("topic") != topic or record.get("value") is None:
                continue
            dst.write(record["value"].encode())
            dst.write(b"\n")
            count += 1
    return count


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


SOURCE = """
CREATE TABLE clicks (
  user_id STRING,
  event_type STRING,
  category STRING,
  device STRING,
  ts BIGINT,
  rt AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rt AS rt - INTERVAL '{ooo}' SECOND
) WITH (
{options},
  'format' = 'json',
  'json.ignore-parse-errors' = 'true'
)
"""

FILE_SOURCE_OPTIONS = """
  'connector' = 'filesystem',
  'path' = {path}"""

KAFKA_SOURCE_OPTIONS = """
  'connector' = 'kafka',
  'topic' = {topic},
  'properties.bootstrap.servers' = {bootstrap},
  'properties.group.id' = {group},
  'properties.isolation.level' = 'read_committed',
  'scan.startup.mode' = 'earliest-offset',
  'scan.bounded.mode' = 'latest-offset'"""

KAFKA_SINK_OPTIONS = """
  'connector' = 'kafka',
  'topic' = {topic},
  'properties.bootstrap.servers' = {bootstrap},
  'properties.transaction.timeout.ms' = '60000',
  'sink.delivery-guarantee' = 'exactly-once',
  'sink.transactional-id-prefix' = {prefix},
  'format' = 'json'
"""

SINK = """
CREATE TABLE sessions (
  user_id STRING,
  start_ts BIGINT,
  end_ts BIGINT,
  duration_ms BIGINT,
  event_count BIGINT,
  page_views BIGINT,
  product_views BIGINT,
  searches BIGINT,
  cart_adds BIGINT,
  cart_removes BIGINT,
  checkouts BIGINT,
  categories STRING
) WITH ({options})
"""

QUERY = """
SELECT
  user_id,
  MIN(ts), MAX(ts), MAX(ts) - MIN(ts),
  COUNT(*),
  COUNT(*) FILTER (WHERE event_type = 'page_view'),
  COUNT(*) FILTER (WHERE event_type = 'product_view'),
  COUNT(*) FILTER (WHERE event_type = 'search'),
  COUNT(*) FILTER (WHERE event_type = 'add_to_cart'),
  COUNT(*) FILTER (WHERE event_type = 'remove_from_cart'),
  COUNT(*) FILTER (WHERE event_type = 'checkout_start'),
  LISTAGG(DISTINCT category)
FROM TABLE(SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(rt), INTERVAL '{gap}' MINUTES))
GROUP BY user_id, window_start, window_end
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-file", required=True, type=Path, help="loadgen's event file")
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--topic", default="clickstream")
    parser.add_argument("--gap-minutes", type=int, default=30)
    parser.add_argument("--out-of-orderness-seconds", type=int, default=30)
    parser.add_argument("--kafka-bootstrap", help="read from and write to Kafka (the same-work run)")
    parser.add_argument("--kafka-topic", help="the clicks topic (with --kafka-bootstrap)")
    parser.add_argument("--kafka-output-topic", help="the sessions topic (with --kafka-bootstrap)")
    parser.add_argument("--kafka-connector-jar", type=Path,
                        help="flink-sql-connector-kafka jar (with --kafka-bootstrap)")
    parser.add_argument("--checkpoint-interval-ms", type=int, default=100)
    parser.add_argument("--count-sessions", action="store_true",
                        help="after the timed job, count the sessions in a second, untimed job")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    clicks = args.work_dir / "clicks.jsonl"
    started = time.monotonic()
    events = unwrap(args.events_file, clicks, args.topic)
    print(f"flink: {events} click events unwrapped to {clicks} in "
          f"{time.monotonic() - started:.1f}s (untimed)", flush=True)

    # Keep PyFlink's logs out of the way; the harness reads stdout.
    os.environ.setdefault("FLINK_LOG_DIR", str(args.work_dir / "log"))
    from pyflink.table import EnvironmentSettings, TableEnvironment

    jvm_started = time.monotonic()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    config.set("parallelism.default", "1")
    config.set("table.exec.resource.default-parallelism", "1")
    config.set("pipeline.name", "bench-sessions")
    if args.kafka_bootstrap:
        config.set("pipeline.jars", args.kafka_connector_jar.resolve().as_uri())
        config.set("state.backend.type", "rocksdb")
        config.set("execution.checkpointing.interval", f"{args.checkpoint_interval_ms} ms")
        config.set("execution.checkpointing.mode", "EXACTLY_ONCE")
        config.set("execution.checkpointing.dir", (args.work_dir / "checkpoints").resolve().as_uri())
    jvm_seconds = time.monotonic() - jvm_started
    print(f"flink: JVM and TableEnvironment up in {jvm_seconds:.2f}s", flush=True)

    if args.kafka_bootstrap:
        t_env.execute_sql(SOURCE.format(
            options=KAFKA_SOURCE_OPTIONS.format(
                topic=sql_str(args.kafka_topic), bootstrap=sql_str(args.kafka_bootstrap),
                group=sql_str(args.kafka_topic + "-flink")),
            ooo=args.out_of_orderness_seconds))
        t_env.execute_sql(SINK.format(options=KAFKA_SINK_OPTIONS.format(
            topic=sql_str(args.kafka_output_topic), bootstrap=sql_str(args.kafka_bootstrap),
            prefix=sql_str(args.kafka_output_topic))))
    else:
        t_env.execute_sql(SOURCE.format(
            options=FILE_SOURCE_OPTIONS.format(path=sql_str(str(clicks))),
            ooo=args.out_of_orderness_seconds))
        t_env.execute_sql(SINK.format(options="'connector' = 'blackhole'"))
    query = QUERY.format(gap=args.gap_minutes)

    job_started = time.monotonic()
    result = t_env.execute_sql("INSERT INTO sessions " + query)
    result.wait()
    job_seconds = time.monotonic() - job_started
    net_ms = None
    try:
        net_ms = (result.get_job_client().get_job_execution_result().result()
                  .get_net_runtime())
    except Exception as err:  # the figure is a bonus; the wall time is the measurement
        print(f"flink: no net runtime from the job client ({err})", file=sys.stderr)
    rate = events / job_seconds
    print(f"flink: job over {events} events in {job_seconds:.2f}s: {rate:,.0f} events/s"
          + (f" (Flink's net runtime {net_ms / 1000:.2f}s: {events / (net_ms / 1000):,.0f} events/s)"
             if net_ms else ""), flush=True)

    sessions = None
    if args.count_sessions:
        with t_env.execute_sql(f"SELECT COUNT(*) FROM ({query})").collect() as rows:
            for row in rows:
                sessions = row[0]
        print(f"flink: {sessions} sessions (untimed second job)", flush=True)

    print(json.dumps({
        "events": events,
        "jvm_seconds": jvm_seconds,
        "job_seconds": job_seconds,
        "net_runtime_seconds": net_ms / 1000 if net_ms else None,
        "events_per_second": rate,
        "sessions": sessions,
        "flink_version": flink_version(),
    }), flush=True)


def flink_version() -> str:
    from importlib.metadata import version
    return version("apache-flink")


if __name__ == "__main__":
    main()
