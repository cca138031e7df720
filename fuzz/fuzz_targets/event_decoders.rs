//! The event contracts' decoders (what every processor reads from Kafka): any bytes either decode
//! or give an error, never a panic; what decodes writes back to bytes that decode to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trendstream_events::{InventoryChange, decode, decode_click, decode_order, encode};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(click) = decode_click(bytes) {
        let again = decode_click(&encode(&click).expect("a decoded click encodes"));
        assert_eq!(
            again.as_ref().ok(),
            Some(&click),
            "click round trip: {again:?}"
        );
    }
    if let Ok(order) = decode_order(bytes) {
        let again = decode_order(&encode(&order).expect("a decoded order encodes"));
        assert_eq!(
            again.as_ref().ok(),
            Some(&order),
            "order round trip: {again:?}"
        );
    }
    if let Ok(change) = decode::<InventoryChange>(bytes) {
        let again = decode::<InventoryChange>(&encode(&change).expect("a change encodes"));
        assert_eq!(
            again.as_ref().ok(),
            Some(&change),
            "inventory round trip: {again:?}"
        );
    }
});
