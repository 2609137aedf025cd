//! The session scenarios, each run in its own process so that each reports its own peak
//! memory: both parties and the dealer in one process ([`in_process`]); and over loopback
//! TCP, the dealer service ([`dealer`]) and each party in a process of its own
//! ([`party`]), as three machines would run them. A session is a prefill of `--prefill`
//! tokens into an empty KV cache (with the once-per-session setup), then `--steps` decode
//! steps.

use comet_ir::{DimEnv, Party, Program};
use comet_runtime::dealer::{DealerService, DealerStream, plan_digest, service::Event};
use comet_runtime::interp::{InProcess, Measured, PartyState, RemoteParty, deal_call};
use comet_runtime::transport::{
    Channel, ChannelKey, DealerAuth, DealerIdentity, Hello, Security, TcpChannel,
    TcpListenerHandle, TcpOptions,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::model;
use super::{RuntimeArgs, mem};
use crate::generate::estimate;
use crate::report::bytes;

/// A call's figures as JSON: its sizes, time, CPU, measured and estimated costs, the
/// setup's seconds, and the process's resident memory before and at its peak.
fn call_json(
    program: &Program,
    env: DimEnv,
    m: &Measured,
    t: &Timing,
    state: &PartyState,
) -> Value {
    let (online, rounds, offline) = estimate(program, env);
    json!({
        "seq": env.seq,
        "past": env.past,
        "seconds": t.seconds,
        "cpu_seconds": t.cpu_seconds,
        "setup_seconds": state.last_setup_seconds,
        "measured": {
            "online_bits": m.online_bits,
            "rounds": m.rounds,
            "offline_bits": m.offline_bits,
            "setup_bits": m.setup_bits,
        },
        "estimated": { "online_bits": online, "rounds": rounds, "offline_bits": offline },
        "rss_before_bytes": t.rss_before,
        "peak_bytes": t.peak,
    })
}

/// What one call took.
struct Timing {
    seconds: f64,
    cpu_seconds: f64,
    rss_before: u64,
    peak: u64,
}

/// Runs `call` with the process's memory peak reset before it, and times it.
fn timed<T>(call: impl FnOnce() -> Result<T, String>) -> Result<(T, Timing), String> {
    mem::trim();
    let rss_before = mem::rss();
    mem::reset_peak();
    let (start, cpu) = (Instant::now(), mem::cpu_seconds());
    let out = call()?;
    let timing = Timing {
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: mem::cpu_seconds() - cpu,
        rss_before,
        peak: mem::peak(),
    };
    Ok((out, timing))
}

fn progress(who: &str, k: usize, n: usize, env: DimEnv, t: &Timing, m: &Measured) {
    eprintln!(
        "{who}: call {}/{n} (seq {}, past {}{}): {:.3} s (cpu {:.2} s), {} rounds, {} online, \
         {} dealer; peak {:.2} GB",
        k + 1,
        env.seq,
        env.past,
        if k == 0 { ", with the setup" } else { "" },
        t.seconds,
        t.cpu_seconds,
        m.rounds,
        bytes(m.online_bits),
        bytes(m.offline_bits),
        t.peak as f64 / 1e9
    );
}

/// Both parties and the dealer in this process.
pub fn in_process(args: &RuntimeArgs) -> Result<Value, String> {
    let program = model::compile(args)?;
    let envs = args.calls();
    let (weights, params) = model::random_weights("in process", &program, args.seed, None);
    let mut session = InProcess::from_owned(&program, weights, args.seed);
    let before_calls = mem::peak();
    let mut calls = Vec::new();
    for (k, &env) in envs.iter().enumerate() {
        let inputs = model::token_input(env.seq);
        let ((out, measured), t) = timed(|| {
            (session.call(&inputs, env))
                .map_err(|e| format!("in process, call {} (past {}): {e}", k + 1, env.past))
        })?;
        model::check_logits(&out, env.seq)?;
        progress("in process", k, envs.len(), env, &t, &measured);
        calls.push(call_json(
            &program,
            env,
            &measured,
            &t,
            &session.states()[1],
        ));
    }
    Ok(json!({
        "model": program.info.name,
        "params": params,
        "fixed_elements": session.states()[0].fixed_elements(),
        "peak_bytes_before_calls": before_calls,
        "rss_after_calls": mem::rss(),
        "calls": calls,
    }))
}

/// The TCP session's timeouts: long, for GPT-2 on a busy machine.
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

/// Prints `listening ADDR` first, for the parent to pass on.
fn announce(addr: SocketAddr) -> Result<(), String> {
    println!("listening {addr}");
    std::io::stdout().flush().map_err(|e| e.to_string())
}

/// The dealer service for one session, on a port of the OS's choosing: streams every
/// call's material to both parties as they reach it.
pub fn dealer(args: &RuntimeArgs) -> Result<Value, String> {
    let program = model::compile(args)?;
    let plain = DealerIdentity::InsecurePlaintext;
    let service = DealerService::bind("127.0.0.1:0", plan_digest(&program), &tcp_options(), plain)
        .map_err(|e| e.to_string())?
        .with_mask_budget(args.mask_cache.saturating_mul(1 << 20));
    announce(service.local_addr())?;
    let n = args.calls().len();
    let mut last = Instant::now();
    let mut last_cpu = mem::cpu_seconds();
    let mut seconds = Vec::new();
    let mut on = |e: Event<'_>| {
        if let Event::Call(c) = e {
            let cpu = mem::cpu_seconds();
            seconds.push((last.elapsed().as_secs_f64(), cpu - last_cpu));
            last = Instant::now();
            last_cpu = cpu;
            eprintln!(
                "dealer: call {}/{n} streamed: party 0 {}, party 1 {}",
                c.call + 1,
                bytes(8 * c.streamed[0]),
                bytes(8 * c.streamed[1])
            );
        }
    };
    let mut deal =
        |env, d: &mut _, set_up| deal_call(&program, env, d, set_up).map_err(|e| e.to_string());
    mem::reset_peak();
    let report = (service.serve_session(&mut deal, &mut on)).map_err(|e| e.to_string())?;
    report
        .outcome
        .map_err(|e| format!("the dealer's session failed: {e}"))?;
    let calls: Vec<Value> = (report.calls.iter().zip(&seconds))
        .map(|(c, (s, cpu))| {
            json!({
                "seq": c.env.seq,
                "past": c.env.past,
                "seconds": s,
                "cpu_seconds": cpu,
                "dealt_bits": 8 * c.offline_bytes,
                "estimated_bits": estimate(&program, c.env).2,
                "streamed_bytes": c.streamed,
            })
        })
        .collect();
    Ok(json!({
        "calls": calls,
        "peak_bytes": mem::peak(),
        "cpu_seconds": mem::cpu_seconds(),
        "mask_cache_bytes": args.mask_cache.saturating_mul(1 << 20),
    }))
}

/// Party `p` over loopback TCP with its material from the dealer service at `dealer`:
/// party 0 listens on a port of the OS's choosing and prints `listening ADDR` first;
/// party 1 connects to `connect`.
pub fn party(
    args: &RuntimeArgs,
    p: u8,
    dealer: &str,
    connect: Option<SocketAddr>,
) -> Result<Value, String> {
    let who = format!("party {p}");
    let opts = tcp_options();
    let listener = match p {
        0 => {
            let (l, addr) = TcpListenerHandle::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            announce(addr)?;
            Some(l)
        }
        _ => None,
    };
    let program = model::compile(args)?;
    let digest = plan_digest(&program);
    let (weights, params) = model::random_weights(&who, &program, args.seed, Some(usize::from(p)));
    // the dealer's link is plaintext here (its key would have to travel from the dealer's
    // process); the parties' channel is encrypted, as in `comet run`
    let plain = DealerAuth::InsecurePlaintext;
    let (mut stream, replay) = (DealerStream::connect(dealer, p, digest, &opts, &plain))
        .map_err(|e| format!("{who}: {e}"))?;
    let key = ChannelKey::derive(&replay.channel_secret(), &digest, &stream.session());
    let security = Security::Psk(key);
    let mut ch = match (listener, connect) {
        (Some(l), _) => l.accept(&opts, &security),
        (None, Some(addr)) => TcpChannel::connect(addr, &opts, &security),
        (None, None) => return Err("party 1 needs --connect ADDR".into()),
    }
    .map_err(|e| format!("{who}: {e}"))?;
    let party = if p == 0 { Party::Server } else { Party::Client };
    (ch.handshake(&Hello::new(party, digest, stream.session()))).map_err(|e| e.to_string())?;
    let mut session = RemoteParty::from_owned(&program, weights, replay, ch);
    let envs = args.calls();
    let before_calls = mem::peak();
    let mut calls = Vec::new();
    for (k, &env) in envs.iter().enumerate() {
        let inputs = match p {
            1 => model::token_input(env.seq),
            _ => HashMap::new(),
        };
        let ((out, measured), t) = timed(|| {
            stream.begin_call(env).map_err(|e| e.to_string())?;
            let r = (session.call(&inputs, env))
                .map_err(|e| format!("{who}, call {} (past {}): {e}", k + 1, env.past))?;
            stream.end_call().map_err(|e| e.to_string())?;
            Ok(r)
        })?;
        if p == 1 {
            model::check_logits(&out, env.seq)?;
        }
        progress(&who, k, envs.len(), env, &t, &measured);
        calls.push(call_json(&program, env, &measured, &t, session.state()));
    }
    Ok(json!({
        "party": p,
        "params": params,
        "fixed_elements": session.state().fixed_elements(),
        "peak_bytes_before_calls": before_calls,
        "rss_after_calls": mem::rss(),
        "calls": calls,
    }))
}
