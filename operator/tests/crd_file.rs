//! `crds/streamjob.yaml` is generated from the Rust types; this fails when it is stale.

use std::path::Path;

#[test]
fn the_checked_in_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/streamjob.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = trendstream_operator::crd::crd_yaml().expect("the CRD serializes");
    assert!(
        checked_in == generated,
        "{} is stale; regenerate it with\n  cargo run -p trendstream-operator --bin crdgen > crds/streamjob.yaml",
        path.display()
    );
}
