//! Helpers shared by the integration tests that run the `comet` binary.
#![allow(dead_code)] // each test file uses a subset

pub mod process;
pub mod reference;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `comet` with `args` from the workspace root.
pub fn comet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comet"))
        .args(args)
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
