//! The checkpoint loader, kiln's metadata and optimiser state (tests/fuzz_harness: `checkpoint`).
#![no_main]

#[path = "../../tests/fuzz_harness/mod.rs"]
#[allow(dead_code)] // each target uses one function of the harness
mod fuzz_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok and Err are both fine; a panic, a hang or a huge allocation is what the fuzzer finds.
    let _ = fuzz_harness::checkpoint(data);
});
