//! Reconcile metrics, served on /metrics (OpenMetrics, prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    category: &'static str,
}

pub struct Metrics {
    registry: Registry,
    reconciliations: Family<OutcomeLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("trendstream_operator");
        let reconciliations = Family::<OutcomeLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconciliations",
            "StreamJob reconciliations by outcome",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
        }
    }
}

impl Metrics {
    pub fn observe(&self, error_category: Option<&'static str>, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let outcome = if error_category.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciliations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(category) = error_category {
            self.failures.get_or_create(&ErrorLabels { category }).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
