//! Fuzzes `wisp_test_support::decoders::client_frame`: never a panic, and what is
//! accepted reads back as written.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wisp_test_support::decoders::client_frame(data));
