//! Fuzz target: `tower_anthropic::__private::fuzz::decode_message` (see its docs for the invariant).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tower_anthropic::__private::fuzz::decode_message(data);
});
