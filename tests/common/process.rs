//! Running the `comet` binary as separate processes: compiling the shipped model, free
//! loopback ports, spawning, bounded waits, JSON output.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{comet, stderr, temp_path};

/// `examples/glassllm.model` compiled with `--comparison comparison` to `file` in the
/// tests' temporary folder.
pub fn compiled_glassllm(file: &str, comparison: &str) -> PathBuf {
    let plan = temp_path(file);
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "--comparison",
        comparison,
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    plan
}

/// A loopback address whose port was free a moment ago.
pub fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `comet args` from the workspace root, its output piped.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_comet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

/// Waits for `child` at most `limit`; kills it and fails the test if it hangs.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("the process did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Standard output as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}
