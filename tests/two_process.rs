//! Two processes over loopback TCP, as a user runs them: `comet deal`, then `comet run
//! --party 0 --listen` and `comet run --party 1 --connect`. The client gets the
//! reference's greedy tokens; per call both parties measure the estimated online bits and
//! rounds, and their two material files together hold the estimated dealer bits. Faults
//! (used or mismatched material, a vanished, stalled or foreign peer) are clear errors
//! with exit status 1 within a bounded time.

mod common;

use common::process::{
    assert_calls_match_estimate, compiled_glassllm, free_port, json, spawn, wait,
};
use common::{comet, stderr, temp_path};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const PROMPT: &str = "41,69,186,960,94,437";
const WEIGHTS: &str = "models/glassllm-en/model.safetensors";

fn glassllm_plan() -> PathBuf {
    compiled_glassllm("two-process-glassllm.plan", "fss")
}

fn deal(plan: &Path, dir: &str, prompt_len: &str, generate: &str) -> PathBuf {
    let dir = temp_path(dir);
    let _ = std::fs::remove_dir_all(&dir); // a fresh session, no markers of earlier runs
    let out = comet(&[
        "deal",
        plan.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--prompt-len",
        prompt_len,
        "--generate",
        generate,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        common::stdout(&out).contains("dealt = estimated for every call: yes"),
        "{}",
        common::stdout(&out)
    );
    dir
}

fn server(plan: &Path, material: &Path, addr: &str, extra: &[&str]) -> Child {
    let args = [
        &[
            "run",
            plan.to_str().unwrap(),
            "--party",
            "0",
            "--listen",
            addr,
            "--weights",
            WEIGHTS,
            "--material",
            material.to_str().unwrap(),
            "--json",
        ][..],
        extra,
    ]
    .concat();
    spawn(&args)
}

fn client(plan: &Path, material: &Path, addr: &str, extra: &[&str]) -> Child {
    let args = [
        &[
            "run",
            plan.to_str().unwrap(),
            "--party",
            "1",
            "--connect",
            addr,
            "--material",
            material.to_str().unwrap(),
            "--json",
        ][..],
        extra,
    ]
    .concat();
    spawn(&args)
}

#[test]
fn two_processes_give_the_reference_tokens_and_the_estimated_costs() {
    two_processes(&glassllm_plan(), "two-process-ok");
}

/// As above with GMW comparisons: the boolean material (AND triples, daBits) travels in
/// the files and is replayed by each party.
#[test]
fn two_processes_with_gmw_comparisons() {
    let plan = compiled_glassllm("two-process-glassllm-gmw.plan", "gmw");
    two_processes(&plan, "two-process-gmw");
}

/// A sparse plan (block-sparse FFNs, a predictor calibrated to recall 1) over TCP: the
/// setup's two block-shuffle exchanges pass the setup cap the plan derives for them (each
/// carries every permuted operand at once, far above one weight chunk), and the tokens
/// are the reference's.
#[test]
fn two_processes_with_sparse_ffns() {
    let plan = sparse_plan("two-process-sparse.plan");
    let args = ["--score", "sum", "--recall", "1.0", "--sparsity", "0.3"];
    let pred = calibrate(&args, "two-process-sparse.pred");
    with_extra(
        &plan,
        "two-process-sparse",
        &["--predictor", &pred],
        &["--accept-leakage", "sparse-masks"],
    );
}

/// The same over TCP with a predictor trained beside attention (`comet calibrate
/// --train`, recall 1): each call's measurement equals its estimate, and the tokens are
/// the reference's.
#[test]
fn two_processes_with_a_predictor_beside_attention() {
    let plan = sparse_plan_with("two-process-beside.plan", "ffn:block=16,input=attention");
    let args = [
        "--train",
        "--train-samples",
        "16",
        "--recall",
        "1.0",
        "--sparsity",
        "0.3",
    ];
    let pred = calibrate(&args, "two-process-beside.pred");
    with_extra(
        &plan,
        "two-process-beside",
        &["--predictor", &pred],
        &["--accept-leakage", "sparse-masks"],
    );
}

/// A head-sparse plan over TCP, its missed K/V rows refilled merged (the default) and
/// naive (`--kv-refill naive` at both parties): the same tokens; per call both parties
/// measure the estimated online bits, merged the estimated rounds, naive those plus its
/// reported extra exchanges, and the calls miss rows.
#[test]
fn two_processes_with_head_sparse_attention_refill_merged_and_naive() {
    let plan = sparse_plan_with("two-process-heads.plan", "heads");
    let pred = calibrate(&["--heads", "--recall", "0.9"], "two-process-heads.pred");
    let pred = pred.as_str();
    let mut runs = Vec::new();
    for refill in ["merged", "naive"] {
        let (c, s) = heads_session(&plan, pred, refill, refill);
        assert!(c.status.success(), "client: {}", stderr(&c));
        assert!(s.status.success(), "server: {}", stderr(&s));
        runs.push((json(&c), json(&s)));
    }
    assert_eq!(runs[0].0["tokens"], runs[1].0["tokens"]);
    let mut missed = 0;
    for (k, (cj, sj)) in runs.iter().enumerate() {
        for call in (cj["calls"].as_array().unwrap().iter()).chain(sj["calls"].as_array().unwrap())
        {
            let (m, e) = (&call["measured"], &call["estimated"]);
            let refill = &m["kv_refill"];
            let extra = refill["extra_rounds"].as_u64().unwrap();
            assert_eq!(m["online_bits"], e["online_bits"]);
            assert_eq!(
                m["rounds"].as_u64().unwrap(),
                e["rounds"].as_u64().unwrap() + extra
            );
            let requests = refill["miss_requests"].as_u64().unwrap();
            assert_eq!(extra, if k == 0 { 0 } else { 2 * requests }, "{call}");
            missed += refill["missed_rows"].as_u64().unwrap();
        }
    }
    assert!(
        missed > 0,
        "no call missed a row: the refill was not exercised"
    );
    // parties that chose different refills fail at the first miss, with a clear error
    let (c, s) = heads_session(&plan, pred, "merged", "naive");
    for (who, out) in [("client", &c), ("server", &s)] {
        assert_eq!(out.status.code(), Some(1), "{who}: {}", stderr(out));
        assert!(
            stderr(out).contains("protocol message: expected"),
            "{who}: {}",
            stderr(out)
        );
    }
}

/// A head-sparse session over TCP (prompt 6, 3 tokens, fresh material), the server's and
/// the client's refill as given: the client's and the server's output.
fn heads_session(
    plan: &Path,
    pred: &str,
    server_refill: &str,
    client_refill: &str,
) -> (std::process::Output, std::process::Output) {
    let session = format!("two-process-heads-{server_refill}-{client_refill}");
    let dir = deal(plan, &session, "6", "3");
    let addr = free_port();
    let server_args = ["--head-predictor", pred, "--kv-refill", server_refill];
    let s = server(plan, &dir.join("party0.mat"), &addr, &server_args);
    let client_args = [
        "--prompt-ids",
        PROMPT,
        "--accept-leakage",
        "sparse-masks",
        "--kv-refill",
        client_refill,
    ];
    let c = client(plan, &dir.join("party1.mat"), &addr, &client_args);
    (
        wait(c, Duration::from_secs(300)),
        wait(s, Duration::from_secs(60)),
    )
}

/// `comet calibrate examples/glassllm.model` on the shipped weights with `args`, the
/// predictor written to `file`; its path.
fn calibrate(args: &[&str], file: &str) -> String {
    let out_path = temp_path(file);
    let out = comet(
        &[
            &["calibrate", "examples/glassllm.model", "--weights", WEIGHTS][..],
            args,
            &["--samples", "4", "--out", out_path.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    out_path.to_str().unwrap().to_string()
}

/// The shipped model compiled with block-sparse FFNs (blocks of 16) to `file`.
fn sparse_plan(file: &str) -> PathBuf {
    sparse_plan_with(file, "ffn:block=16")
}

/// The shipped model compiled with `--sparsity spec` to `file`.
fn sparse_plan_with(file: &str, spec: &str) -> PathBuf {
    let plan = temp_path(file);
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "--sparsity",
        spec,
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    plan
}

fn two_processes(plan: &Path, session: &str) {
    with_extra(plan, session, &[], &[]);
}

fn with_extra(plan: &Path, session: &str, server_extra: &[&str], client_extra: &[&str]) {
    let plan = plan.to_path_buf();
    let dir = deal(&plan, session, "6", "3");
    let addr = free_port();
    let s = server(&plan, &dir.join("party0.mat"), &addr, server_extra);
    let c = client(
        &plan,
        &dir.join("party1.mat"),
        &addr,
        &[
            &[
                "--prompt-ids",
                PROMPT,
                "--tokenizer",
                "models/glassllm-en/tokenizer.json",
            ][..],
            client_extra,
        ]
        .concat(),
    );
    let (c, s) = (
        wait(c, Duration::from_secs(300)),
        wait(s, Duration::from_secs(60)),
    );
    assert!(c.status.success(), "client: {}", stderr(&c));
    assert!(s.status.success(), "server: {}", stderr(&s));
    let (cj, sj) = (json(&c), json(&s));
    // the first three greedy tokens of "Once upon a time" in ../shared/reference
    assert_eq!(cj["tokens"], serde_json::json!([4, 75, 78]));
    assert_eq!(cj["text"], serde_json::json!("\ntw"));
    assert_eq!(
        sj["tokens"],
        serde_json::json!([]),
        "the server sees no tokens"
    );
    assert_calls_match_estimate(&cj, &sj, 3);
    // the same file again is refused, before any connection
    let again = client(
        &plan,
        &dir.join("party1.mat"),
        &free_port(),
        &[&["--prompt-ids", PROMPT][..], client_extra].concat(),
    );
    let again = wait(again, Duration::from_secs(30));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already used"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn material_for_another_plan_party_or_prompt_is_refused() {
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-mismatch", "6", "2");
    let other = temp_path("two-process-other.plan");
    let out = comet(&[
        "compile",
        "examples/glassllm.model",
        "--comparison",
        "gmw",
        "-o",
        other.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let cases: [(&Path, &str, &[&str], &str); 3] = [
        (
            &other,
            "party1.mat",
            &["--prompt-ids", PROMPT],
            "dealt for plan",
        ),
        (
            &plan,
            "party0.mat",
            &["--prompt-ids", PROMPT],
            "party 0's material",
        ),
        (
            &plan,
            "party1.mat",
            &["--prompt-ids", "41,69"],
            "dealt for a prompt of 6",
        ),
    ];
    for (plan, file, extra, expected) in cases {
        let c = client(plan, &dir.join(file), &free_port(), extra);
        let c = wait(c, Duration::from_secs(30));
        assert_eq!(c.status.code(), Some(1), "{expected}");
        assert!(stderr(&c).contains(expected), "{expected}: {}", stderr(&c));
    }
}

#[test]
fn a_vanished_peer_is_an_error_within_the_timeout() {
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-vanish", "6", "4");
    let addr = free_port();
    let s = server(&plan, &dir.join("party0.mat"), &addr, &["--timeout", "20"]);
    let mut c = client(
        &plan,
        &dir.join("party1.mat"),
        &addr,
        &["--prompt-ids", PROMPT],
    );
    // kill the client once its first token is out, mid-session
    let mut err = c.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("token   1/") {
        let n = err.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "client ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    c.kill().unwrap();
    c.wait().unwrap();
    let start = Instant::now();
    let s = wait(s, Duration::from_secs(40));
    assert_eq!(s.status.code(), Some(1), "{}", stderr(&s));
    assert!(start.elapsed() < Duration::from_secs(30));
    let e = stderr(&s);
    assert!(
        e.contains("call 1") && e.contains("peer"),
        "names the call and the peer: {e}"
    );
}

#[test]
fn a_stalled_or_foreign_peer_is_an_error_within_the_timeout() {
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-stall", "6", "1");
    for (i, (reply, expected)) in [
        (None, "no message from the peer for 2s"),
        (
            Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
            // refused at the connection's clear preamble, before any frame
            "the peer is not a comet party (its first bytes are \"http/1.1\")",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (mut s, _): (TcpStream, _) = listener.accept().unwrap();
            if let Some(r) = reply {
                let _ = s.write_all(&r);
            }
            std::thread::sleep(Duration::from_secs(6));
        });
        // each case needs its own unused copy of the material
        let copy = dir.join(format!("copy{i}.mat"));
        std::fs::copy(dir.join("party1.mat"), &copy).unwrap();
        let c = client(
            &plan,
            &copy,
            &addr,
            &["--prompt-ids", PROMPT, "--timeout", "2"],
        );
        let start = Instant::now();
        let c = wait(c, Duration::from_secs(30));
        assert_eq!(c.status.code(), Some(1), "{expected}: {}", stderr(&c));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "bounded: {:?}",
            start.elapsed()
        );
        assert!(
            stderr(&c).to_lowercase().contains(expected),
            "{expected}: {}",
            stderr(&c)
        );
        peer.join().unwrap();
    }
}

/// Whether `path` (party `p`'s material for `plan`) is still unused: it opens, checked
/// whole, against the list the test's binaries mark (`COMET_STATE_DIR`).
fn unused(plan: &Path, path: &Path, p: u8) -> Result<(), String> {
    use comet_runtime::dealer::{UsedList, file, plan_digest};
    let program = comet_runtime::load_plan(&std::fs::read_to_string(plan).unwrap()).unwrap();
    let used = UsedList::at(&common::state_dir().join("used-material")).unwrap();
    file::open(path, p, &plan_digest(&program), &used)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(unix)]
#[test]
fn comet_deal_writes_private_files_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-private", "2", "1");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the folder it created");
    for f in ["party0.mat", "party1.mat"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let before = std::fs::read(dir.join("party1.mat")).unwrap();
    let out = comet(&[
        "deal",
        plan.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--prompt-len",
        "2",
        "--generate",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("party0.mat exists") && e.contains("never overwrites"),
        "names the file: {e}"
    );
    assert_eq!(std::fs::read(dir.join("party1.mat")).unwrap(), before);
}

#[test]
fn altered_headers_are_refused_quickly_and_leave_the_material_unused() {
    const SEED_AT: usize = 8 + 4 + 1 + 2 * 32;
    const SEQ_AT: usize = 8 + 4 + 1 + 4 * 32 + 8 + 4;
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-altered", "6", "2");
    // a flipped seed byte (the client's file), a forged seq of 2^40 (the server's)
    let genuine = [0, 1].map(|p| std::fs::read(dir.join(format!("party{p}.mat"))).unwrap());
    let mut seed = genuine[1].clone();
    seed[SEED_AT] ^= 1;
    let mut seq = genuine[0].clone();
    seq[SEQ_AT..SEQ_AT + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    for (p, bytes) in [(1u8, seed), (0, seq)] {
        let path = dir.join(format!("altered{p}.mat"));
        std::fs::write(&path, &bytes).unwrap();
        let addr = free_port();
        let child = if p == 0 {
            server(&plan, &path, &addr, &[])
        } else {
            client(&plan, &path, &addr, &["--prompt-ids", PROMPT])
        };
        let start = Instant::now();
        let out = wait(child, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1), "party {p}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("SHA-256 does not match"),
            "party {p}: {}",
            stderr(&out)
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(!comet_runtime::dealer::file::used_marker(&path).exists());
    }
    for p in [0, 1] {
        let path = dir.join(format!("party{p}.mat"));
        unused(&plan, &path, p).unwrap_or_else(|e| panic!("party {p}: {e}"));
    }
}

#[test]
fn a_forged_seq_with_its_digest_recomputed_fails_the_handshake() {
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-rehashed", "6", "2");
    const SEQ_AT: usize = 8 + 4 + 1 + 4 * 32 + 8 + 4;
    let mut bytes = std::fs::read(dir.join("party0.mat")).unwrap();
    bytes[SEQ_AT..SEQ_AT + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let n = bytes.len() - 32;
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes[..n]).into();
    bytes[n..].copy_from_slice(&sha);
    let forged = dir.join("forged0.mat");
    std::fs::write(&forged, &bytes).unwrap();
    let addr = free_port();
    // the server refuses the client's handshake (another session's key) and keeps
    // listening for the right peer until its timeout
    let s = server(&plan, &forged, &addr, &["--timeout", "8"]);
    let c = client(
        &plan,
        &dir.join("party1.mat"),
        &addr,
        &["--prompt-ids", PROMPT, "--timeout", "20"],
    );
    let start = Instant::now();
    let (c, s) = (
        wait(c, Duration::from_secs(60)),
        wait(s, Duration::from_secs(60)),
    );
    assert_eq!(s.status.code(), Some(1), "{}", stderr(&s));
    assert_eq!(c.status.code(), Some(1), "{}", stderr(&c));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(stderr(&s).contains("session"), "{}", stderr(&s));
    unused(&plan, &dir.join("party1.mat"), 1).unwrap();
    unused(&plan, &forged, 0).unwrap();
}

#[test]
fn a_port_scan_or_a_failed_handshake_leaves_the_material_unused_and_a_copy_of_used_material_is_refused()
 {
    let plan = glassllm_plan();
    let dir = deal(&plan, "two-process-scan", "6", "1");
    let addr = free_port();
    let s = server(&plan, &dir.join("party0.mat"), &addr, &["--timeout", "5"]);
    // a scanner connects and leaves
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(scan) = TcpStream::connect(&addr) {
            drop(scan);
            break;
        }
        assert!(Instant::now() < deadline, "the server listens");
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = wait(s, Duration::from_secs(30));
    assert_eq!(s.status.code(), Some(1), "{}", stderr(&s));
    unused(&plan, &dir.join("party0.mat"), 0).unwrap();
    // the same material then serves a real session, after which a copy is refused
    let addr = free_port();
    let s = server(&plan, &dir.join("party0.mat"), &addr, &[]);
    let c = client(
        &plan,
        &dir.join("party1.mat"),
        &addr,
        &["--prompt-ids", PROMPT],
    );
    let (c, s) = (
        wait(c, Duration::from_secs(300)),
        wait(s, Duration::from_secs(60)),
    );
    assert!(c.status.success(), "client: {}", stderr(&c));
    assert!(s.status.success(), "server: {}", stderr(&s));
    let copy = temp_path("two-process-scan-copy.mat");
    std::fs::copy(dir.join("party1.mat"), &copy).unwrap();
    let again = client(&plan, &copy, &free_port(), &["--prompt-ids", PROMPT]);
    let again = wait(again, Duration::from_secs(30));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already used"),
        "{}",
        stderr(&again)
    );
}

/// The client's reveal policy: a plan with an extra `reveal` of the client's values to the
/// server (material dealt for that very plan) is refused by `comet run --party 1` before it
/// connects or uses its material; a sparse plan needs `--accept-leakage sparse-masks`.
#[test]
fn the_client_refuses_a_plan_that_reveals_its_input_to_the_server() {
    let original =
        comet_runtime::load_plan(&std::fs::read_to_string(glassllm_plan()).unwrap()).unwrap();
    let edited = common::with_extra_reveal_to_server(original);
    let plan = temp_path("two-process-extra-reveal.plan");
    std::fs::write(&plan, comet_ir::plan::write_plan_json(&edited).unwrap()).unwrap();
    let dir = deal(&plan, "two-process-extra-reveal", "6", "1");
    let material = dir.join("party1.mat");
    // nobody listens: the client must stop before connecting
    let addr = free_port();
    for accept in ["none", "sparse-masks"] {
        let started = Instant::now();
        let out = wait(
            client(
                &plan,
                &material,
                &addr,
                &[
                    "--prompt-ids",
                    PROMPT,
                    "--generate",
                    "1",
                    "--accept-leakage",
                    accept,
                ],
            ),
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "party 1: the plan opens more of the client's input to the server than \
                 --accept-leakage {accept} allows"
            )),
            "{err}"
        );
        assert!(
            err.contains(
                "reveal [seq, 1024] reveals a value computed from the client's input to the server"
            ),
            "{err}"
        );
        assert!(!err.contains("connect"), "refused before connecting: {err}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    unused(&plan, &material, 1).expect("the refused run left the material unused");

    // a sparse plan: refused without the flag, accepted (then fails to connect) with it
    let sparse = sparse_plan("two-process-sparse-policy.plan");
    let dir = deal(&sparse, "two-process-sparse-policy", "6", "1");
    let material = dir.join("party1.mat");
    let run = |extra: &[&str]| {
        let args = [
            &["--prompt-ids", PROMPT, "--generate", "1", "--timeout", "1"][..],
            extra,
        ]
        .concat();
        wait(
            client(&sparse, &material, &addr, &args),
            Duration::from_secs(60),
        )
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("pass --accept-leakage sparse-masks (here 88 bits per token)"),
        "{err}"
    );
    let out = run(&["--accept-leakage", "sparse-masks:80"]);
    assert!(
        stderr(&out).contains("88 bits per token in all, more than 80"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--accept-leakage", "sparse-masks"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "opens 4 permuted block masks of sparse FFNs to the server, 88 bits per token"
        ),
        "{err}"
    );
    assert!(!err.contains("refuses"), "{err}");
    unused(&sparse, &material, 1).expect("no connection: the material stays unused");
}

/// The same policy in one process: `comet run` without `--party` holds the client's role
/// and refuses the revealing plan before reading the checkpoint.
#[test]
fn an_in_process_run_applies_the_clients_reveal_policy() {
    let original =
        comet_runtime::load_plan(&std::fs::read_to_string(glassllm_plan()).unwrap()).unwrap();
    let edited = common::with_extra_reveal_to_server(original);
    let plan = temp_path("in-process-extra-reveal.plan");
    std::fs::write(&plan, comet_ir::plan::write_plan_json(&edited).unwrap()).unwrap();
    let out = comet(&[
        "run",
        plan.to_str().unwrap(),
        "--weights",
        "no-such-checkpoint.safetensors",
        "--prompt-ids",
        PROMPT,
        "--generate",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "the client (in process): the plan opens more of the client's input to the server \
             than --accept-leakage none allows"
        ) && !err.contains("no-such-checkpoint"),
        "{err}"
    );
}
