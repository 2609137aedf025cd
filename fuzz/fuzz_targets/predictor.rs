//! Predictor files (safetensors) for `tests/fuzz_corpus/mlp-sparse.plan`: read and turned
//! into the plan's predictor weights as the server does. Seeds: `comet calibrate` output
//! for that plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const PLAN: &str = include_str!("../../tests/fuzz_corpus/mlp-sparse.plan");

fuzz_target!(|data: &[u8]| {
    static PROGRAM: OnceLock<comet_ir::Program> = OnceLock::new();
    let program = PROGRAM.get_or_init(|| comet_ir::plan::read_plan_json(PLAN).expect("plan"));
    let path = std::env::temp_dir().join(format!("comet-fuzz-{}.pred", std::process::id()));
    std::fs::write(&path, data).expect("a scratch file");
    let _ = comet_runtime::sparsity::plan::plan_weights(&path, program);
});
