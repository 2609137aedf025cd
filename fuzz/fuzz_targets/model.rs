//! `.model` source text: parsed and lowered; an accepted model goes through the whole
//! compiler. Seeds: `tests/fuzz_corpus/*.model`, `examples/*.model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ast) = comet_compiler::front::parse::parse_model(text) else {
        return;
    };
    if comet_compiler::passes::lower::lower(&ast).is_ok() {
        let _ = comet_compiler::compile(text, "fuzz.model", &Default::default());
    }
});
