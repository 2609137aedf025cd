//! Three processes over loopback TCP, as a user runs them: `comet dealer --listen`, then
//! `comet run --party 0 --dealer` and `comet run --party 1 --dealer`. The client gets the
//! greedy tokens it gets with material files; per call both parties measure the estimated
//! online bits and rounds, the material they read together is the estimated dealer bits,
//! and the dealer reports dealt = estimated. Faults — a dealer unreachable, stalling or
//! vanishing mid-call (a proxy between dealer and client), serving another plan, parties
//! asking for other calls, a party index used twice — are clear errors with exit status
//! 1 within a bounded time.

mod common;

use comet_ir::DimEnv;
use comet_runtime::dealer::{DealerStream, plan_digest};
use comet_runtime::transport::{DealerAuth, DealerKeypair, TcpOptions};
use common::process::{
    assert_calls_match_estimate, compiled_glassllm, free_port, json, spawn, wait,
};
use common::stderr;
use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PROMPT: &str = "41,69,186,960,94,437";
const WEIGHTS: &str = "models/glassllm-en/model.safetensors";

/// The dealer's key of this test process: its file (for `comet dealer --key`) and the
/// key pair (its public half for the parties' `--dealer-key`).
fn dealer_key() -> &'static (PathBuf, DealerKeypair) {
    static KEY: std::sync::OnceLock<(PathBuf, DealerKeypair)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let path = common::temp_path(&format!("dealer-{}.key", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let k = DealerKeypair::generate().unwrap();
        k.write_new(&path).unwrap();
        (path, k)
    })
}

/// The parties' key files of this test process (`comet run --key`, pinned at the dealer
/// with `--party-key P=FILE.pub`): party 0's and party 1's path and key pair.
fn party_keys() -> &'static [(PathBuf, DealerKeypair); 2] {
    static KEYS: std::sync::OnceLock<[(PathBuf, DealerKeypair); 2]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        [0, 1].map(|p| {
            let path = common::temp_path(&format!("party{p}-{}.key", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let k = DealerKeypair::generate().unwrap();
            k.write_new(&path).unwrap();
            (path, k)
        })
    })
}

/// The dealer's `--party-key P=HEX` for both parties.
fn pinned_parties() -> [String; 2] {
    [0, 1].map(|p| format!("{p}={}", party_keys()[p].1.public()))
}

/// The parties' `--dealer-key HEX`.
fn pinned() -> String {
    dealer_key().1.public().to_string()
}

fn glassllm_plan() -> PathBuf {
    compiled_glassllm("dealer-service-glassllm.plan", "fss")
}

/// A process whose stderr is collected as it comes, to wait for a line.
struct Watched {
    child: Child,
    err: Arc<Mutex<String>>,
}

impl Watched {
    fn new(mut child: Child) -> Watched {
        let err = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), Arc::clone(&err));
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watched { child, err }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text`.
    fn wait_for(&self, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                start.elapsed() < limit,
                "no `{text}` within {limit:?}: {}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the end (at most `limit`, else kills it and fails); status and stderr.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the process did not end within {limit:?}: {}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().unwrap().code();
        thread::sleep(Duration::from_millis(100)); // the reader thread drains the pipe
        (status, self.stderr())
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dealer(plan: &Path, addr: &str, extra: &[&str]) -> Watched {
    let key = dealer_key().0.to_str().unwrap();
    let [k0, k1] = pinned_parties();
    let base = [
        "dealer",
        plan.to_str().unwrap(),
        "--listen",
        addr,
        "--key",
        key,
        "--party-key",
        &k0,
        "--party-key",
        &k1,
    ];
    Watched::new(spawn(&[&base[..], extra].concat()))
}

/// Party 0 listening on `peer`, material from the dealer at `dealer`.
fn server(plan: &Path, peer: &str, dealer: &str, extra: &[&str]) -> Child {
    let key = pinned();
    let base = [
        "run",
        plan.to_str().unwrap(),
        "--party",
        "0",
        "--listen",
        peer,
        "--dealer",
        dealer,
        "--dealer-key",
        &key,
        "--key",
        party_keys()[0].0.to_str().unwrap(),
        "--prompt-len",
        "6",
        "--weights",
        WEIGHTS,
        "--json",
    ];
    spawn(&[&base[..], extra].concat())
}

/// Party 1 connecting to `peer`, material from the dealer at `dealer`.
fn client(plan: &Path, peer: &str, dealer: &str, extra: &[&str]) -> Child {
    let key = pinned();
    let base = [
        "run",
        plan.to_str().unwrap(),
        "--party",
        "1",
        "--connect",
        peer,
        "--dealer",
        dealer,
        "--dealer-key",
        &key,
        "--key",
        party_keys()[1].0.to_str().unwrap(),
        "--json",
    ];
    spawn(&[&base[..], extra].concat())
}

#[test]
fn three_processes_give_the_reference_tokens_and_the_estimated_costs() {
    reference_session(&[]);
}

/// With a mask cache of 1 MiB the dealer keeps the first fixed operands' masks and
/// re-derives the others (8 MiB in all) at every call: the parties see the same material.
#[test]
fn a_dealer_that_re_derives_masks_gives_the_same_session() {
    reference_session(&["--mask-cache", "1"]);
}

/// Three greedy tokens of the reference prompt through the dealer service (run with
/// `dealer_args`): the reference tokens, and every call's costs as estimated.
fn reference_session(dealer_args: &[&str]) {
    let plan = glassllm_plan();
    let (dealer_addr, peer) = (free_port(), free_port());
    let d = dealer(
        &plan,
        &dealer_addr,
        &[&["--sessions", "1"], dealer_args].concat(),
    );
    let s = server(&plan, &peer, &dealer_addr, &["--generate", "3"]);
    let c = client(
        &plan,
        &peer,
        &dealer_addr,
        &[
            "--prompt-ids",
            PROMPT,
            "--generate",
            "3",
            "--tokenizer",
            "models/glassllm-en/tokenizer.json",
        ],
    );
    let (c, s) = (
        wait(c, Duration::from_secs(300)),
        wait(s, Duration::from_secs(60)),
    );
    let (status, dealer_err) = d.finish(Duration::from_secs(30));
    assert!(c.status.success(), "client: {}", stderr(&c));
    assert!(s.status.success(), "server: {}", stderr(&s));
    assert_eq!(status, Some(0), "dealer: {dealer_err}");
    let (cj, sj) = (json(&c), json(&s));
    // as with material files (tests/two_process.rs): the first three greedy tokens of
    // "Once upon a time" in ../shared/reference
    assert_eq!(cj["tokens"], serde_json::json!([4, 75, 78]));
    assert_eq!(cj["text"], serde_json::json!("\ntw"));
    assert_calls_match_estimate(&cj, &sj, 3);
    let dealt: Vec<&str> = (dealer_err.lines())
        .filter(|l| l.contains("streamed party 0") && l.contains("dealt"))
        .collect();
    assert_eq!(dealt.len(), 3, "{dealer_err}");
    assert!(
        dealt
            .iter()
            .all(|l| l.ends_with("= estimate") || l.contains("= estimate (+")),
        "the dealer dealt the estimate for every call: {dealer_err}"
    );
    assert!(dealer_err.contains("session ") && dealer_err.contains("3 calls"));
}

#[test]
fn an_unreachable_dealer_is_an_error_within_the_timeout() {
    let plan = glassllm_plan();
    let start = Instant::now();
    let c = client(
        &plan,
        &free_port(),
        &free_port(),
        &["--prompt-ids", PROMPT, "--timeout", "2"],
    );
    let c = wait(c, Duration::from_secs(30));
    assert_eq!(c.status.code(), Some(1), "{}", stderr(&c));
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(
        stderr(&c).contains("cannot reach the dealer at"),
        "{}",
        stderr(&c)
    );
}

#[derive(Clone, Copy)]
enum Fault {
    /// Forwards nothing more, keeping both connections open.
    Stall,
    /// Closes both connections.
    Disconnect,
}

/// A proxy to the dealer at `dealer` for one party: forwards the party's bytes, and the
/// dealer's first `after` bytes, then fails as `fault` says. Returns its address.
fn proxy(dealer: String, fault: Fault, after: u64) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (party, _) = l.accept().unwrap();
        let dealer = TcpStream::connect(&dealer).unwrap();
        let (mut from_party, mut to_dealer) =
            (party.try_clone().unwrap(), dealer.try_clone().unwrap());
        thread::spawn(move || io::copy(&mut from_party, &mut to_dealer));
        let (mut from_dealer, mut to_party) =
            (dealer.try_clone().unwrap(), party.try_clone().unwrap());
        io::copy(&mut (&mut from_dealer).take(after), &mut to_party).unwrap();
        match fault {
            Fault::Stall => thread::sleep(Duration::from_secs(40)),
            Fault::Disconnect => {
                let _ = party.shutdown(Shutdown::Both);
                let _ = dealer.shutdown(Shutdown::Both);
            }
        }
    });
    addr
}

/// Runs a session whose client reaches the dealer through a faulty proxy; the client's
/// error, and the time it took.
fn faulty_session(plan: &Path, fault: Fault) -> (String, Duration) {
    let (dealer_addr, peer) = (free_port(), free_port());
    // the dealer and the server wait long enough for the others to start on a loaded
    // machine; the client's 3 s is what must notice the stall
    let d = dealer(plan, &dealer_addr, &["--sessions", "1", "--timeout", "20"]);
    d.wait_for("listening on", Duration::from_secs(30));
    let via = proxy(dealer_addr.clone(), fault, 100_000);
    let s = server(plan, &peer, &dealer_addr, &["--timeout", "20"]);
    let start = Instant::now();
    let c = client(
        plan,
        &peer,
        &via,
        &["--prompt-ids", PROMPT, "--timeout", "3"],
    );
    let c = wait(c, Duration::from_secs(60));
    let took = start.elapsed();
    let s = wait(s, Duration::from_secs(30));
    assert_eq!(c.status.code(), Some(1), "client: {}", stderr(&c));
    assert_eq!(s.status.code(), Some(1), "server: {}", stderr(&s));
    // the dealer's writes to the stalled party end at its 20 s write timeout, however the
    // kernel trickles bytes into the proxy's buffers, well before the proxy lets go (40 s)
    let dealer_limit = Duration::from_secs(35);
    let (status, dealer_err) = d.finish(dealer_limit);
    println!(
        "client: {}\nserver: {}\ndealer: {dealer_err}",
        stderr(&c),
        stderr(&s)
    );
    assert_eq!(status, Some(1), "one failed session: {dealer_err}");
    assert!(dealer_err.contains("failed after 0 calls"), "{dealer_err}");
    if let Fault::Stall = fault {
        // whichever the dealer meets first: party 1's stalled socket at the write timeout,
        // or party 0 leaving after its peer (the client) failed
        assert!(
            dealer_err.contains("party 1 did not take our bytes for 20s")
                || dealer_err.contains("party 0 disconnected while streaming"),
            "{dealer_err}"
        );
    }
    (stderr(&c), took)
}

#[test]
fn a_dealer_that_stalls_mid_call_is_an_error_within_the_timeout() {
    let (e, took) = faulty_session(&glassllm_plan(), Fault::Stall);
    assert!(
        e.contains("call 0") && e.contains("the dealer sent no bytes for 3s"),
        "{e}"
    );
    assert!(took < Duration::from_secs(20), "bounded: {took:?}");
}

#[test]
fn a_dealer_that_disconnects_mid_call_is_an_error() {
    let (e, took) = faulty_session(&glassllm_plan(), Fault::Disconnect);
    assert!(
        e.contains("the dealer disconnected while reading call 0's material"),
        "{e}"
    );
    assert!(took < Duration::from_secs(20), "bounded: {took:?}");
}

#[test]
fn a_dealer_of_another_plan_or_parties_at_other_sizes_are_refused() {
    let plan = glassllm_plan();
    let other = compiled_glassllm("dealer-service-gmw.plan", "gmw");
    let dealer_addr = free_port();
    let d = dealer(&other, &dealer_addr, &[]);
    let c = client(&plan, &free_port(), &dealer_addr, &["--prompt-ids", PROMPT]);
    let c = wait(c, Duration::from_secs(30));
    assert_eq!(c.status.code(), Some(1));
    let e = stderr(&c);
    assert!(
        e.contains("the dealer refused: this dealer serves plan")
            && e.contains("party 1 runs plan"),
        "{e}"
    );
    d.kill();
    // the server expects a prompt of 6 tokens, the client sends 2
    let (dealer_addr, peer) = (free_port(), free_port());
    let d = dealer(&plan, &dealer_addr, &["--sessions", "1"]);
    let s = server(&plan, &peer, &dealer_addr, &[]);
    let c = client(&plan, &peer, &dealer_addr, &["--prompt-ids", "41,69"]);
    let (c, s) = (
        wait(c, Duration::from_secs(30)),
        wait(s, Duration::from_secs(30)),
    );
    for out in [&c, &s] {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(out).contains("the parties asked for call 0 at different sizes: party 0 at seq 6, past 0, party 1 at seq 2, past 0"),
            "{}",
            stderr(out)
        );
    }
    let (status, _) = d.finish(Duration::from_secs(30));
    assert_eq!(status, Some(1));
}

#[test]
fn a_party_index_used_twice_is_refused() {
    let plan = glassllm_plan();
    let dealer_addr = free_port();
    let d = dealer(&plan, &dealer_addr, &[]);
    let first = server(&plan, &free_port(), &dealer_addr, &[]);
    d.wait_for("party 0 joined", Duration::from_secs(30));
    let twice = server(&plan, &free_port(), &dealer_addr, &[]);
    let twice = wait(twice, Duration::from_secs(30));
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        stderr(&twice).contains("party 0 is already connected to this dealer"),
        "{}",
        stderr(&twice)
    );
    let mut first = first;
    assert!(first.try_wait().unwrap().is_none(), "the first still waits");
    first.kill().unwrap();
    let _ = first.wait();
    d.kill();
}

/// The parties' requests name the call: the dealer deals call k only when both ask for
/// call k, and refuses both otherwise, before any material of the call is dealt.
#[test]
fn parties_asking_for_different_calls_are_refused() {
    let plan = glassllm_plan();
    let text = std::fs::read_to_string(&plan).unwrap();
    let digest = plan_digest(&comet_ir::plan::read_plan_json(&text).unwrap());
    let dealer_addr = free_port();
    let d = dealer(&plan, &dealer_addr, &["--sessions", "1"]);
    let t = Duration::from_secs(10);
    let opts = TcpOptions {
        read_timeout: t,
        write_timeout: t,
        accept_timeout: t,
        connect_timeout: t,
        ..TcpOptions::default()
    };
    let ask = move |party: u8, call: u64, addr: String| {
        let opts = opts.clone();
        thread::spawn(move || {
            let auth = DealerAuth::Mutual {
                dealer: dealer_key().1.public(),
                own: party_keys()[usize::from(party)].1.clone(),
            };
            let (mut s, _replay) = DealerStream::connect(&addr, party, digest, &opts, &auth)?;
            let env = DimEnv { seq: 6, past: 0 };
            s.begin_call_at(call, env)?;
            s.end_call()
        })
    };
    let p1 = ask(1, 0, dealer_addr.clone());
    let p0 = ask(0, 1, dealer_addr);
    for p in [p0, p1] {
        let e = p.join().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("the dealer refused")
                && e.contains("party 0 asked for call 1, and the session's next call is 0"),
            "{e}"
        );
    }
    let (status, err) = d.finish(Duration::from_secs(30));
    assert_eq!(status, Some(1), "{err}");
}

/// A dealer serves only the parties whose keys it pins: a party with another key is
/// refused at the key exchange (exit 1, a clear error on both sides) and the dealer deals
/// nothing; a dealer pinning no key for a party does not start without --any-party.
#[test]
fn an_unknown_party_is_refused_by_the_dealer() {
    let plan = glassllm_plan();
    let dealer_addr = free_port();
    let d = dealer(&plan, &dealer_addr, &["--sessions", "1"]);
    let intruder = common::temp_path(&format!("intruder-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&intruder);
    DealerKeypair::generate()
        .unwrap()
        .write_new(&intruder)
        .unwrap();
    let key = pinned();
    for p in ["0", "1"] {
        let mut args = vec![
            "run",
            plan.to_str().unwrap(),
            "--party",
            p,
            "--dealer",
            &dealer_addr,
            "--dealer-key",
            &key,
            "--key",
            intruder.to_str().unwrap(),
            "--generate",
            "1",
            "--timeout",
            "10",
        ];
        match p {
            "0" => args.extend([
                "--listen",
                "127.0.0.1:0",
                "--prompt-len",
                "6",
                "--weights",
                WEIGHTS,
            ]),
            _ => args.extend(["--connect", "127.0.0.1:9", "--prompt-ids", PROMPT]),
        }
        let started = Instant::now();
        let out = wait(spawn(&args), Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("does it pin this party's key (--party-key)"),
            "{}",
            stderr(&out)
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        d.wait_for(
            "none of the party keys this dealer pins",
            Duration::from_secs(10),
        );
    }
    // and without a key of its own (Noise NK)
    let out = wait(
        spawn(&[
            "run",
            plan.to_str().unwrap(),
            "--party",
            "1",
            "--dealer",
            &dealer_addr,
            "--dealer-key",
            &key,
            "--connect",
            "127.0.0.1:9",
            "--prompt-ids",
            PROMPT,
            "--generate",
            "1",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the dealer authenticates the parties"),
        "{}",
        stderr(&out)
    );
    let err = d.stderr();
    assert!(
        !err.contains("joined from") && !err.contains(": party 0 at"),
        "nothing was dealt: {err}"
    );
    d.kill();

    let out = common::comet(&[
        "dealer",
        plan.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--key",
        dealer_key().0.to_str().unwrap(),
        "--party-key",
        &pinned_parties()[0],
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("none is pinned for party 1: pass --party-key 1=KEY"),
        "{}",
        stderr(&out)
    );
}
