//! Tests of the pass `approximate`: the declared errors against the exact functions in
//! f64 (`accuracy`), and the shape of the compiled forms (`structure`). The same bounds
//! are checked on the compiled subgraphs by the plaintext interpreters in
//! `tests/approx.rs`.

mod accuracy;
mod reference;
mod structure;
