//! Running the `comet` binary as separate processes: compiling the shipped model, free
//! loopback ports, spawning, bounded waits, JSON output.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{comet, state_dir, stderr, temp_path};

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
        .env("COMET_STATE_DIR", state_dir())
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

/// Both parties' `--json` reports (`client`, `server`) of one session of `n` calls: each
/// measured the estimated online bits and rounds, and the material they read together is
/// the estimated dealer bits, call by call.
pub fn assert_calls_match_estimate(
    client: &serde_json::Value,
    server: &serde_json::Value,
    n: usize,
) {
    let (cc, sc) = (
        client["calls"].as_array().unwrap(),
        server["calls"].as_array().unwrap(),
    );
    assert_eq!((cc.len(), sc.len()), (n, n));
    for (k, (c, s)) in cc.iter().zip(sc).enumerate() {
        for call in [c, s] {
            let (m, e) = (&call["measured"], &call["estimated"]);
            assert_eq!(m["online_bits"], e["online_bits"], "call {k}");
            assert_eq!(m["rounds"], e["rounds"], "call {k}");
        }
        let read = |v: &serde_json::Value| v["measured"]["material_bits_read"].as_u64().unwrap();
        assert_eq!(
            read(c) + read(s),
            c["estimated"]["offline_bits"].as_u64().unwrap(),
            "call {k}: the material both parties read is the estimated dealer bits"
        );
        assert_eq!(c["measured"]["setup_bits"].as_u64().unwrap() > 0, k == 0);
    }
}
