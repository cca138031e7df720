//! The live dashboard: one HTML page (inline SVG chart and script, nothing fetched from
//! elsewhere) fed by server-sent events from /dashboard/events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt, stream};
use serde::Serialize;
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

/// The snapshot's JSON each time it differs from the last one sent, polling every `interval`.
fn snapshots(store: Store, interval: Duration) -> impl Stream<Item = String> {
    stream::unfold(
        (store, None::<String>, true),
        move |(store, last, first)| async move {
            loop {
                if !first {
                    tokio::time::sleep(interval).await;
                }
                let json = serde_json::to_string(&snapshot(&store).await).unwrap_or_default();
                // The first snapshot always differs from `None`, so it is sent at once.
                if last.as_deref() != Some(json.as_str()) {
                    return Some((json.clone(), (store, Some(json), false)));
                }
            }
        },
    )
}

/// GET /dashboard/events: `snapshot` events, ended on shutdown.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let stream = snapshots(state.store.clone(), state.dashboard_interval)
        .map(|json| Ok(Event::default().event("snapshot").data(json)))
        .take_until(Box::pin(stopped));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_everything_it_needs() {
        assert!(PAGE.contains("new EventSource(\"/dashboard/events\")"));
        assert!(PAGE.contains("id=\"revenue-chart\""));
        assert!(PAGE.contains("id=\"alerts\""));
        assert!(!PAGE.contains("<script src"), "no external scripts");
        assert!(!PAGE.contains("src=\"http") && !PAGE.contains("href=\"http"));
    }
}
