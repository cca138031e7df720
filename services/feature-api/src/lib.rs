//! feature-api: REST over the Redis feature store the processors write
//! (layout: `trendstream_events::feature_store`), its OpenAPI document, RED metrics, health
//! probes and a live dashboard fed by server-sent events.

pub mod access;
pub mod config;
pub mod dashboard;
pub mod errors;
pub mod handlers;
pub mod metrics;
pub mod params;
pub mod routes;
pub mod store;
