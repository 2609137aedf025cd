//! Tokenizer files (`tokenizer.json`): read, then the file's own text encoded and decoded.
//! Seeds: `models/glassllm-en/tokenizer.json`, `tests/fuzz_corpus/byte-bpe-tokenizer.json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = comet_runtime::tokenizer::Tokenizer::from_json(text) {
        if let Ok(ids) = t.encode("Once upon a time") {
            let _ = t.decode(&ids);
        }
    }
});
