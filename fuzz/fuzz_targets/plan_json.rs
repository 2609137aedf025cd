//! Plan files (JSON): read and verified as `comet run` loads them. Seeds:
//! `tests/fuzz_corpus/*.plan`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = comet_runtime::load_plan(text);
    }
});
