//! Fuzzes `wisp_test_support::decoders::redis_url`: never a panic, and what is
//! accepted reads back as written.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wisp_test_support::decoders::redis_url(data));
