//! The decode-step scenarios, each run in its own process so that each reports its own
//! peak memory: both parties and the dealer in one process ([`in_process`]); and over
//! loopback TCP, the dealer writing the two material files ([`deal`]), then each party in
//! a process of its own ([`party`]), as two machines would run them.

use comet_ir::{DimEnv, Party, Program};
use comet_runtime::dealer::{file, plan_digest};
use comet_runtime::interp::{InProcess, Measured, RemoteParty, deal_to_files};
use comet_runtime::transport::{Channel, Hello, TcpChannel, TcpListenerHandle, TcpOptions};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::model::{self, rng};
use super::{RuntimeArgs, mem};
use crate::generate::estimate;
use crate::report::bytes;

/// A call's figures as JSON: its sizes, time, measured and estimated costs, and the peak
/// resident memory of the process during the call.
fn call_json(program: &Program, env: DimEnv, seconds: f64, m: &Measured, peak: u64) -> Value {
    let (online, rounds, offline) = estimate(program, env);
    json!({
        "seq": env.seq,
        "past": env.past,
        "seconds": seconds,
        "measured": {
            "online_bits": m.online_bits,
            "rounds": m.rounds,
            "offline_bits": m.offline_bits,
            "setup_bits": m.setup_bits,
        },
        "estimated": { "online_bits": online, "rounds": rounds, "offline_bits": offline },
        "peak_bytes": peak,
    })
}

fn progress(who: &str, k: usize, env: DimEnv, seconds: f64, m: &Measured) {
    eprintln!(
        "{who}: call {}/2 (seq {}, past {}{}): {seconds:.3} s, {} rounds, {} online, {} setup; \
         peak {:.2} GB",
        k + 1,
        env.seq,
        env.past,
        if k == 0 { ", with the setup" } else { "" },
        m.rounds,
        bytes(m.online_bits),
        bytes(m.setup_bits),
        mem::peak() as f64 / 1e9
    );
}

/// Both parties and the dealer in this process: the session's first call (with the
/// setup), then a second decode step.
pub fn in_process(args: &RuntimeArgs) -> Result<Value, String> {
    let program = model::compile(args)?;
    let envs = model::decode_envs(args.past());
    let (weights, params) = model::random_weights("in process", &program, args.seed, None);
    let mut session = InProcess::from_owned(&program, weights, args.seed);
    let contents = model::cache_contents(&program, envs[0], args.seed);
    let mut cache_bytes = 0;
    for (p, state) in session.states_mut().iter_mut().enumerate() {
        cache_bytes += model::fill_cache(state, p, &contents);
    }
    drop(contents);
    let before_calls = mem::peak();
    let mut calls = Vec::new();
    for (k, &env) in envs.iter().enumerate() {
        let rss_before = mem::rss();
        mem::trim();
        let rss_trimmed = mem::rss();
        mem::reset_peak();
        let (start, cpu) = (Instant::now(), mem::cpu_seconds());
        let (out, measured) = (session.call(&model::token_input(), env))
            .map_err(|e| format!("in process, call {} (past {}): {e}", k + 1, env.past))?;
        let (seconds, cpu) = (start.elapsed().as_secs_f64(), mem::cpu_seconds() - cpu);
        model::check_logits(&out)?;
        progress("in process", k, env, seconds, &measured);
        let mut c = call_json(&program, env, seconds, &measured, mem::peak());
        c["cpu_seconds"] = json!(cpu);
        c["rss_before_bytes"] = json!(rss_before);
        c["rss_before_trimmed_bytes"] = json!(rss_trimmed);
        calls.push(c);
    }
    Ok(json!({
        "model": program.info.name,
        "params": params,
        "cache_bytes": cache_bytes,
        "peak_bytes_before_calls": before_calls,
        "rss_after_calls": mem::rss(),
        "calls": calls,
    }))
}

/// The dealer's master seed and session id of the benchmark's TCP session.
fn session_seeds(seed: u64) -> ([u8; 32], [u8; 32]) {
    let mut r = rng(seed, 0x4000);
    let (mut master, mut session) = ([0u8; 32], [0u8; 32]);
    r.fill_bytes(&mut master);
    r.fill_bytes(&mut session);
    (master, session)
}

/// The dealer: writes `party0.mat` and `party1.mat` to `dir` for the two decode steps.
pub fn deal(args: &RuntimeArgs, dir: &Path) -> Result<Value, String> {
    let program = model::compile(args)?;
    let calls = model::decode_envs(args.past()).to_vec();
    let (master, session) = session_seeds(args.seed);
    let mut seconds = Vec::new();
    let mut last = Instant::now();
    let dealt = deal_to_files(&program, &calls, dir, master, session, |k, b| {
        seconds.push(last.elapsed().as_secs_f64());
        eprintln!(
            "dealer: call {}/2 dealt, {} in {:.2} s{}",
            k + 1,
            bytes(8 * b),
            seconds[k],
            if k == 0 {
                " (with the setup masks)"
            } else {
                ""
            }
        );
        last = Instant::now();
    })
    .map_err(|e| e.to_string())?;
    let calls: Vec<Value> = (calls.iter().zip(&dealt.per_call).zip(&seconds))
        .map(|((&env, &b), &s)| {
            json!({
                "seq": env.seq,
                "past": env.past,
                "seconds": s,
                "dealt_bits": 8 * b,
                "estimated_bits": estimate(&program, env).2,
            })
        })
        .collect();
    Ok(json!({
        "calls": calls,
        "key_header_bytes": dealt.header_bytes,
        "file_bytes": dealt.file_bytes,
        "peak_bytes": mem::peak(),
    }))
}

fn tcp_options() -> TcpOptions {
    let long = Duration::from_secs(900);
    TcpOptions {
        read_timeout: long,
        write_timeout: long,
        accept_timeout: long,
        connect_timeout: Duration::from_secs(120),
        connect_attempts: u32::MAX,
        ..TcpOptions::default()
    }
}

/// Party `p` over loopback TCP with its material file in `dir`: party 0 listens on a port
/// of the OS's choosing and prints `listening ADDR` first; party 1 connects to `connect`.
pub fn party(
    args: &RuntimeArgs,
    p: u8,
    dir: &Path,
    connect: Option<SocketAddr>,
) -> Result<Value, String> {
    let who = format!("party {p}");
    let opts = tcp_options();
    let listener = if p == 0 {
        let (l, addr) = TcpListenerHandle::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        println!("listening {addr}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        Some(l)
    } else {
        None
    };
    let program = model::compile(args)?;
    let digest = plan_digest(&program);
    let (weights, params) = model::random_weights(&who, &program, args.seed, Some(usize::from(p)));
    let path = dir.join(format!("party{p}.mat"));
    let (header, replay) = file::open(&path, p, &digest).map_err(|e| e.to_string())?;
    let mut ch = match (listener, connect) {
        (Some(l), _) => l.accept(&opts),
        (None, Some(addr)) => TcpChannel::connect(addr, &opts),
        (None, None) => return Err("party 1 needs --connect ADDR".into()),
    }
    .map_err(|e| format!("{who}: {e}"))?;
    let party = if p == 0 { Party::Server } else { Party::Client };
    (ch.handshake(&Hello::new(party, digest, header.session))).map_err(|e| e.to_string())?;
    let mut session = RemoteParty::from_owned(&program, weights, replay, ch);
    let contents = model::cache_contents(&program, header.calls[0], args.seed);
    let cache_bytes = model::fill_cache(session.state_mut(), usize::from(p), &contents);
    drop(contents);
    let inputs = if p == 1 {
        model::token_input()
    } else {
        HashMap::new()
    };
    let before_calls = mem::peak();
    let mut calls = Vec::new();
    for (k, &env) in header.calls.iter().enumerate() {
        let rss_before = mem::rss();
        mem::trim();
        let rss_trimmed = mem::rss();
        mem::reset_peak();
        let (start, cpu) = (Instant::now(), mem::cpu_seconds());
        let (out, measured) = (session.call(&inputs, env))
            .map_err(|e| format!("{who}, call {} (past {}): {e}", k + 1, env.past))?;
        let (seconds, cpu) = (start.elapsed().as_secs_f64(), mem::cpu_seconds() - cpu);
        if p == 1 {
            model::check_logits(&out)?;
        }
        progress(&who, k, env, seconds, &measured);
        let mut c = call_json(&program, env, seconds, &measured, mem::peak());
        c["cpu_seconds"] = json!(cpu);
        c["rss_before_bytes"] = json!(rss_before);
        c["rss_before_trimmed_bytes"] = json!(rss_trimmed);
        calls.push(c);
    }
    if (session.replay_mut().has_leftover()).map_err(|e| e.to_string())? {
        return Err(format!("{who}: material left after the last call"));
    }
    Ok(json!({
        "party": p,
        "params": params,
        "cache_bytes": cache_bytes,
        "peak_bytes_before_calls": before_calls,
        "rss_after_calls": mem::rss(),
        "calls": calls,
    }))
}
