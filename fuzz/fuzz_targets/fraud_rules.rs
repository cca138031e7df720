//! fraud-detector's rule-file parser (the ConfigMap a user writes): any text is either a rule set
//! or an error naming the rule and field, never a panic.
#![no_main]

use fraud_detector::rules::parse_rules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = parse_rules(text, "fuzz.yaml");
    }
});
