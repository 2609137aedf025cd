//! Helpers shared by the integration tests that run the `comet` binary.
#![allow(dead_code)] // each test file uses a subset

pub mod process;
pub mod reference;
pub mod tcp;

use comet_compiler::passes::schedule::total_rounds;
use comet_ir::{DimEnv, Program};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The state directory (`COMET_STATE_DIR`: the list of used material) of the binaries
/// this test process runs: in cargo's temporary folder, one per test process, never the
/// user's home.
pub fn state_dir() -> PathBuf {
    temp_path(&format!("comet-state-{}", std::process::id()))
}

/// Runs `comet` with `args` from the workspace root.
pub fn comet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comet"))
        .args(args)
        .env("COMET_STATE_DIR", state_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A path in cargo's per-test temporary folder.
pub fn temp_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The plan's estimate for a call at `env`, every node counted densely: (online bits,
/// rounds, dealer bits).
pub fn estimate(p: &Program, env: DimEnv) -> (u64, u64, u64) {
    let costs = p.analyses.costs.as_ref().expect("costs");
    let (mut on, mut off) = (0i128, 0i128);
    for (_, c) in costs.iter() {
        on += c.online_bits.eval(env);
        off += c.offline_bits.eval(env);
    }
    (on as u64, total_rounds(p).eval(env) as u64, off as u64)
}
