//! Orders into the example PostgreSQL tables (`sql/ecommerce.sql`), so the CDC path (Debezium
//! or pg-capture, then cdc-processor) sees the same orders loadgen would send to Kafka.
//!
//! Each order event is one PostgreSQL transaction: a `placed` event inserts the order and its
//! lines; any other status updates the order's `status` and `updated_at` (inserting the order
//! if it is not there yet, so a cancellation whose order was never placed still lands). Event
//! time becomes `updated_at` (and `created_at` on insert), which cdc-processor reads back as
//! the event time. Poison pills and watermark records are not written: they are Kafka-level
//! test devices with no meaning as rows.

use thiserror::Error;
use tokio_postgres::Client;
use trendstream_events::{OrderEvent, OrderStatus};
use trendstream_service::postgres::PgConnectError;

#[derive(Debug, Error)]
pub enum PostgresSinkError {
    #[error("PostgreSQL: {context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("--postgres-url: {0}")]
    Connect(#[from] PgConnectError),
    #[error("starting the PostgreSQL client runtime: {0}")]
    Runtime(std::io::Error),
}

fn sql(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PostgresSinkError {
    let context = context.into();
    move |source| PostgresSinkError::Sql { context, source }
}

/// A blocking writer (loadgen's loop is synchronous) over one connection.
pub struct PostgresSink {
    runtime: tokio::runtime::Runtime,
    client: Client,
    written: u64,
}

impl PostgresSink {
    pub fn connect(url: &str) -> Result<Self, PostgresSinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PostgresSinkError::Runtime)?;
        let client = runtime.block_on(trendstream_service::postgres::connect(url))?;
        Ok(Self {
            runtime,
            client,
            written: 0,
        })
    }

    /// Writes one order event in its own transaction.
    pub fn write(&mut self, order: &OrderEvent) -> Result<(), PostgresSinkError> {
        let client = &mut self.client;
        self.runtime.block_on(async {
            let tx = client.transaction().await.map_err(sql("BEGIN"))?;
            let ts = order.ts as f64 / 1000.0;
            let amount = order.amount.to_string();
            tx.execute(
                "INSERT INTO orders (id, user_id, status, amount, currency, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4::text::numeric, $5, to_timestamp($6), to_timestamp($6)) \
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at",
                &[&order.order_id, &order.user_id, &order.status.as_str(), &amount, &order.currency.as_str(), &ts],
            )
            .await
            .map_err(sql(format!("writing order {}", order.order_id)))?;
            if order.status == OrderStatus::Placed {
                for (line, item) in order.items.iter().enumerate() {
                    let line_no = i32::try_from(line + 1).unwrap_or(i32::MAX);
                    let quantity = i32::try_from(item.quantity).unwrap_or(i32::MAX);
                    tx.execute(
                        "INSERT INTO order_items (order_id, line_no, product_id, category, quantity, unit_price) \
                         VALUES ($1, $2, $3, $4, $5, $6::text::numeric) ON CONFLICT DO NOTHING",
                        &[&order.order_id, &line_no, &item.product_id, &item.category, &quantity, &item.unit_price.to_string()],
                    )
                    .await
                    .map_err(sql(format!("writing the lines of order {}", order.order_id)))?;
                }
            }
            tx.commit().await.map_err(sql("COMMIT"))
        })?;
        self.written += 1;
        Ok(())
    }

    /// Order events written.
    pub fn written(&self) -> u64 {
        self.written
    }
}
