//! The live dashboard: one HTML page (inline SVG chart and script, nothing fetched from
//! elsewhere) fed by server-sent events from /dashboard/events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use trendstream_events::{FraudAlert, Money, RevenueWindow};

use crate::routes::AppState;
use crate::store::Store;

/// Windows on the chart: the newest hour of one-minute windows.
pub const CHART_WINDOWS: usize = 60;
/// Alerts in the feed.
pub const FEED_ALERTS: usize = 20;

const PAGE: &str = include_str!("dashboard.html");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/dashboard", get(|| async { Html(PAGE) }))
        .route("/dashboard/events", get(events))
        .with_state(state)
}

/// One bar of the chart.
#[derive(Debug, Serialize, PartialEq)]
pub struct ChartPoint {
    pub window_start: i64,
    pub gmv: Money,
    pub orders: i64,
}

/// What the page shows; sent whenever it changes.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub revenue: Vec<ChartPoint>,
    pub alerts: Vec<FraudAlert>,
    /// Set when the store could not be read; the page keeps its last data and says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn chart_points(windows: &[RevenueWindow]) -> Vec<ChartPoint> {
    windows
        .iter()
        .map(|w| ChartPoint {
            window_start: w.window_start,
            gmv: w.gmv,
            orders: w.orders,
        })
        .collect()
}

async fn snapshot(store: &Store) -> Snapshot {
    let read = async {
        let windows = store.latest_revenue(CHART_WINDOWS).await?;
        let alerts = store.recent_alerts(0, FEED_ALERTS).await?;
        Ok::<_, crate::store::StoreError>(Snapshot {
            revenue: chart_points(&windows),
            alerts,
            error: None,
        })
    };
    read.await.unwrap_or_else(|err| Snapshot {
        revenue: Vec::new(),
        alerts: Vec::new(),
        error: Some(err.to_string()),
    })
}

/// The latest snapshot as JSON (empty until the first read), shared by every open event stream.
pub type Snapshots = watch::Receiver<Arc<str>>;

/// Reads the store every `interval` in one background task (however many dashboards are open)
/// and publishes the snapshot when it changed; stops on shutdown.
pub fn spawn_poller(
    store: Store,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Snapshots {
    let (publish, snapshots) = watch::channel(Arc::<str>::from(""));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let json = serde_json::to_string(&snapshot(&store).await).unwrap_or_default();
            publish.send_if_modified(|current| {
                let changed = current.as_ref() != json.as_str();
                if changed {
                    *current = Arc::from(json);
                }
                changed
            });
        }
    });
    snapshots
}

/// GET /dashboard/events: the current snapshot at once, then each change; ended on shutdown.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let stream = WatchStream::new(state.snapshots.clone())
        .filter(|json| std::future::ready(!json.is_empty()))
        .map(|json| Ok(Event::default().event("snapshot").data(json.as_ref())))
        .take_until(Box::pin(stopped));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_poller_publishes_snapshots_and_stops_on_shutdown() {
        let store = Store::new(
            redis::Client::open("redis://127.0.0.1:1").expect("url"),
            trendstream_events::feature_store::KeySpace::default(),
            Duration::from_millis(100),
        )
        .expect("client");
        let (stop, shutdown) = watch::channel(false);
        let mut snapshots = spawn_poller(store, Duration::from_millis(20), shutdown);
        snapshots.changed().await.expect("a first snapshot");
        let json = snapshots.borrow_and_update().clone();
        assert!(json.contains("\"error\""), "Redis is down: {json}");
        stop.send(true).expect("poller listening");
        tokio::time::timeout(Duration::from_secs(2), async {
            while snapshots.changed().await.is_ok() {}
        })
        .await
        .expect("the poller ended, closing the channel");
    }

    #[test]
    fn the_page_embeds_everything_it_needs() {
        assert!(PAGE.contains("new EventSource(\"/dashboard/events\")"));
        assert!(PAGE.contains("id=\"revenue-chart\""));
        assert!(PAGE.contains("id=\"alerts\""));
        assert!(!PAGE.contains("<script src"), "no external scripts");
        assert!(!PAGE.contains("src=\"http") && !PAGE.contains("href=\"http"));
    }
}
