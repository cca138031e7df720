//! `/metrics` in both exposition formats.
//!
//! prometheus-client writes OpenMetrics, which Prometheus asks for. Older scrapers and
//! `promtool check metrics` read the classic text format 0.0.4, where a counter's family is
//! named with its `_total` suffix and there is no `# UNIT`/`# EOF`; [`to_text_format`] rewrites
//! one into the other, so the endpoint can answer whichever the client accepts.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes the registry for a client whose `Accept` header is `accept`; returns the body and
/// its content type.
pub fn render(registry: &Registry, accept: Option<&str>) -> (String, &'static str) {
    let mut body = String::new();
    if let Err(err) = encode(&mut body, registry) {
        // Only a broken `fmt::Write` fails; a String never does.
        tracing::error!(%err, "encoding metrics failed");
    }
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (body, OPENMETRICS_CONTENT_TYPE)
    } else {
        (to_text_format(&body), TEXT_CONTENT_TYPE)
    }
}

/// Rewrites OpenMetrics text into the Prometheus text format 0.0.4.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "info" => (name.to_owned(), "gauge"),
                "histogram" => (name.to_owned(), "histogram"),
                "summary" => (name.to_owned(), "summary"),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, help)) = pending_help.take() {
                out.push_str(&format!("# HELP {name} {help}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        } else {
            // Exemplars (` # {...}`) exist only in OpenMetrics.
            let sample = line.split_once(" # ").map_or(line, |(sample, _)| sample);
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;

    #[test]
    fn counters_get_their_total_suffix_and_openmetrics_markers_go() {
        let mut registry = Registry::with_prefix("trendstream");
        let records: Family<Vec<(String, String)>, Counter> = Family::default();
        records
            .get_or_create(&vec![("topic".into(), "orders".into())])
            .inc_by(3);
        registry.register("records_in", "Records read", records);
        let lag = Gauge::<i64>::default();
        lag.set(7);
        registry.register("lag", "Consumer lag", lag);
        let latency = Histogram::new([0.1, 1.0]);
        latency.observe(0.5);
        registry.register("latency_seconds", "Latency", latency);

        let (open, kind) = render(&registry, Some("application/openmetrics-text"));
        assert_eq!(kind, OPENMETRICS_CONTENT_TYPE);
        assert!(open.ends_with("# EOF\n"));

        let (text, kind) = render(&registry, Some("*/*"));
        assert_eq!(kind, TEXT_CONTENT_TYPE);
        let expected = "\
# HELP trendstream_records_in_total Records read.
# TYPE trendstream_records_in_total counter
trendstream_records_in_total{topic=\"orders\"} 3
# HELP trendstream_lag Consumer lag.
# TYPE trendstream_lag gauge
trendstream_lag 7
";
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains("# TYPE trendstream_latency_seconds histogram\n"));
        assert!(text.contains("trendstream_latency_seconds_bucket{le=\"1.0\"} 1\n"));
        assert!(!text.contains("# EOF"));
    }
}
