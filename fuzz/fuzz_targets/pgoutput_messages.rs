//! pg-capture's pgoutput decoder: any bytes from the replication slot decode to a message or give
//! an error naming the message kind, never a panic or an allocation the input did not pay for.
#![no_main]

use cdc_processor::capture::pgoutput::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = decode(bytes);
});
