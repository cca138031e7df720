//! revenue-calculator against the real broker and Redis: two replicas, four partitions; the
//! committed windows and the Redis revenue series equal the oracle's, exactly once each.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use trendstream_e2e::kafka::{Outgoing, create_topic, produce_records, read_committed};
use trendstream_e2e::oracle::partition_for;
use trendstream_e2e::oracle::revenue::{Settings, expected};
use trendstream_e2e::oracle::sessions::EventLine;
use trendstream_e2e::process::{Running, free_port, workspace_binary};
use trendstream_e2e::{TestEnv, unique_name};
use trendstream_events::feature_store::{KeySpace, revenue_field};
use trendstream_events::{
    Currency, OrderEvent, OrderItem, OrderStatus, RevenueWindow, encode_order,
};

const PARTITIONS: i32 = 4;
const T0: i64 = 1_700_000_040_000; // a minute boundary

fn order(
    user: &str,
    id: &str,
    status: OrderStatus,
    ts: i64,
    lines: &[(&str, u32, &str)],
) -> OrderEvent {
    let items: Vec<OrderItem> = lines
        .iter()
        .map(|(category, quantity, price)| OrderItem {
            product_id: format!("p-{category}"),
            category: (*category).into(),
            quantity: *quantity,
            unit_price: price.parse().expect("price"),
        })
        .collect();
    let mut amount: trendstream_events::Money = "0".parse().expect("zero");
    for item in &items {
        amount = amount
            .checked_add(
                item.unit_price
                    .checked_mul_quantity(item.quantity)
                    .expect("line"),
            )
            .expect("sum");
    }
    OrderEvent {
        event_id: format!("{id}-{}", status.as_str()),
        order_id: id.into(),
        user_id: user.into(),
        status,
        amount,
        currency: Currency::default(),
        items,
        ts,
    }
}

fn line(topic: &str, event: &OrderEvent) -> EventLine {
    EventLine {
        topic: topic.into(),
        partition: partition_for(event.user_id.as_bytes(), PARTITIONS),
        key: Some(event.user_id.clone()),
        value: String::from_utf8(encode_order(event).expect("encode")).expect("utf8"),
    }
}

/// The scenario: five minutes of orders from eight users, out of order within the bound, one
/// late order, a cancellation, an order in USD, a poison pill, then loadgen's watermark records.
fn scenario(topic: &str) -> Vec<EventLine> {
    use OrderStatus::*;
    let mut lines = Vec::new();
    let mut n = 0;
    for minute in 0..5 {
        for user in 1..=8 {
            n += 1;
            let ts = T0 + minute * 60_000 + user * 6_000;
            let category = if user % 2 == 0 { "books" } else { "toys" };
            lines.push(line(
                topic,
                &order(
                    &format!("u{user}"),
                    &format!("o{n}"),
                    Placed,
                    ts,
                    &[(category, user as u32, "12.50"), ("gifts", 1, "3.99")],
                ),
            ));
        }
    }
    // Out of order within the 30 s bound: lands in minute 2 after minute-3 orders of u1.
    lines.push(line(
        topic,
        &order(
            "u1",
            "o-ooo",
            Placed,
            T0 + 3 * 60_000 + 5_000,
            &[("toys", 1, "100.00")],
        ),
    ));
    // A cancellation subtracts in its own window.
    lines.push(line(
        topic,
        &order(
            "u2",
            "o2",
            Cancelled,
            T0 + 4 * 60_000 + 50_000,
            &[("books", 2, "12.50"), ("gifts", 1, "3.99")],
        ),
    ));
    // Late: u3's partition has seen T0+4m18s, so a minute-0 order is beyond the bound.
    lines.push(line(
        topic,
        &order("u3", "o-late", Placed, T0 + 1_000, &[("toys", 1, "999.00")]),
    ));
    let mut usd = order(
        "u4",
        "o-usd",
        Placed,
        T0 + 4 * 60_000 + 1_000,
        &[("toys", 1, "5.00")],
    );
    usd.currency = "USD".parse().expect("usd");
    lines.push(line(topic, &usd));
    lines.push(EventLine {
        topic: topic.into(),
        partition: partition_for(b"u5", PARTITIONS),
        key: Some("u5".into()),
        value: "{\"order_id\": 17, \"poison\": true".into(),
    });
    // Watermark records: one order per partition a day after the last event.
    let last = T0 + 5 * 60_000;
    for partition in 0..PARTITIONS {
        let user = (0..)
            .map(|i| format!("__watermark__{i}"))
            .find(|u| partition_for(u.as_bytes(), PARTITIONS) == partition)
            .expect("some key hashes to every partition");
        lines.push(line(
            topic,
            &order(
                &user,
                &format!("wm-{partition}"),
                Placed,
                last + 86_400_000,
                &[("none", 1, "0.01")],
            ),
        ));
    }
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_emit_each_window_once_and_exactly_the_oracles_totals() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")?.to_owned();
    let name = unique_name("revenue");
    let input = format!("{name}-orders");
    let output = format!("{name}-revenue");
    create_topic(&bootstrap, &input, PARTITIONS).await?;
    let lines = scenario(&input);
    let settings = Settings {
        topic: input.clone(),
        window_ms: 60_000,
        bound_ms: 30_000,
        currency: Currency::default(),
    };
    let want = expected(&settings, &lines);
    assert_eq!(want.windows.len(), 5, "the scenario closes five windows");
    assert_eq!((want.late, want.dead), (1, 2));

    let dir = std::env::temp_dir()
        .join("trendstream-revenue-tests")
        .join(&name);
    let mut replicas: Vec<(Running, u16)> = Vec::new();
    for replica in ["replica-0", "replica-1"] {
        let port = free_port()?;
        let mut command = Command::new(workspace_binary("revenue-calculator")?);
        command
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("KAFKA_INPUT_TOPICS", &input)
            .env("KAFKA_OUTPUT_TOPIC", &output)
            .env("KAFKA_CONSUMER_GROUP", &name)
            .env("KAFKA_DLQ_TOPIC", format!("{name}-dlq"))
            .env("KAFKA_LATE_TOPIC", format!("{name}-late"))
            .env("KAFKA_PARTITIONS", PARTITIONS.to_string())
            .env("KAFKA_SESSION_TIMEOUT", "6s")
            .env("IDLE_TIMEOUT", "24h")
            .env("REDIS_URL", env.get("REDIS_URL")?)
            .env("REDIS_KEY_PREFIX", &name)
            .env("POD_NAME", replica)
            .env("STATE_DIR", dir.join(replica))
            .env("TRENDSTREAM_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info,librdkafka=warn");
        replicas.push((
            Running::start(command, dir.join(format!("{replica}.log")))?,
            port,
        ));
    }
    // Both replicas ready (partitions assigned and restored) before producing.
    for (process, port) in &mut replicas {
        process.wait_ready(*port, Duration::from_secs(90)).await?;
    }
    let outgoing: Vec<Outgoing> = lines
        .iter()
        .map(|l| Outgoing {
            key: l.key.clone(),
            value: l.value.clone().into_bytes(),
            partition: Some(l.partition),
        })
        .collect();
    produce_records(&bootstrap, &input, &outgoing)?;

    let emitted = read_committed(
        &bootstrap,
        &output,
        want.windows.len(),
        Duration::from_secs(5),
        Duration::from_secs(120),
    )?;
    let mut got: BTreeMap<i64, RevenueWindow> = BTreeMap::new();
    for record in &emitted {
        let window: RevenueWindow =
            serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
        anyhow::ensure!(
            got.insert(window.window_start, window).is_none(),
            "a window emitted twice"
        );
    }
    assert_eq!(got, want.windows);

    let keys = KeySpace::new(name.clone());
    let client = redis::Client::open(env.get("REDIS_URL")?)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    for (start, window) in &want.windows {
        let stored: Option<String> = redis::cmd("HGET")
            .arg(keys.revenue_windows())
            .arg(revenue_field(*start))
            .query_async(&mut redis)
            .await?;
        let stored: RevenueWindow = serde_json::from_str(stored.as_deref().unwrap_or("null"))?;
        assert_eq!(&stored, window, "Redis window {start}");
    }
    let late = read_committed(
        &bootstrap,
        &format!("{name}-late"),
        want.late,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )?;
    assert_eq!(late.len(), want.late);
    let dead = read_committed(
        &bootstrap,
        &format!("{name}-dlq"),
        want.dead,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )?;
    assert_eq!(dead.len(), want.dead);
    Ok(())
}

/// Retention of the Redis revenue series: the trim removes old windows from the index and the
/// hash together (one Lua script on the real Redis), keeps the rest, and is idempotent.
#[tokio::test]
async fn the_retention_trim_removes_old_windows_from_both_keys() -> anyhow::Result<()> {
    use trendstream_e2e::feature_api::apply;
    use trendstream_events::feature_store::{trim_revenue_before, write_revenue_window};
    use trendstream_events::{Currency, Money, RevenueWindow};

    let env = TestEnv::load()?;
    let keys = KeySpace::new(unique_name("trim").replace('-', "_"));
    let client = redis::Client::open(env.get("REDIS_URL")?)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut writes = Vec::new();
    for start in [0_i64, 60_000, 120_000, 180_000] {
        let window = RevenueWindow::new(
            start,
            start + 60_000,
            Currency::TRY,
            Money::ZERO,
            0,
            BTreeMap::new(),
        );
        writes.extend(write_revenue_window(&keys, &window)?);
    }
    apply(&mut conn, &writes).await?;
    for _ in 0..2 {
        apply(&mut conn, &[trim_revenue_before(&keys, 120_000)]).await?;
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(keys.revenue_windows())
            .query_async(&mut conn)
            .await?;
        let mut fields = fields;
        fields.sort();
        let index: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.revenue_index())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        assert_eq!(fields, ["120000", "180000"]);
        assert_eq!(index, ["120000", "180000"]);
    }
    let _: () = redis::cmd("DEL")
        .arg(keys.revenue_windows())
        .arg(keys.revenue_index())
        .query_async(&mut conn)
        .await?;
    Ok(())
}
