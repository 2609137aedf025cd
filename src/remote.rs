//! `comet run --party N`: one party of a two-process run over TCP.
//!
//! Party 0 (the server) provides the weights and listens or connects; party 1 (the
//! client) provides the prompt, receives the logits and chooses the tokens. Each loads
//! its own material file from `comet deal` (checked whole and marked used before the
//! first call); the handshake checks that both run the same plan with the two halves of
//! one dealer session. The calls are the ones the material was dealt for.

use comet_ir::{DimEnv, Program};
use comet_runtime::dealer::{MaterialHeader, file, plan_digest};
use comet_runtime::interp::{Outputs, RemoteParty};
use comet_runtime::transport::{Channel, Hello, TcpChannel, TcpOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::generate::{Call, Sampler, call_sizes, estimate_at, generate};
use crate::report::{RunInfo, bytes};
use crate::run::{RunArgs, finish, load_weights, prompt, tokenizer, with_predictor};

/// Runs this process's party.
pub fn run(program: &Program, args: &RunArgs) -> Result<(), String> {
    let party = args.party.expect("checked by the caller");
    let path = args.material.as_ref().expect("clap requires --material");
    let digest = plan_digest(program);
    let weights = load_weights(program, args.weights.as_deref(), Some(usize::from(party)))
        .map_err(|e| format!("party {party}: {e}"))?
        .unwrap_or_default();
    let weights = match party {
        0 => with_predictor(program, weights, args.predictor.as_deref())?,
        _ => weights,
    };
    let client = if party == 1 {
        let t = tokenizer(args)?;
        let p = prompt(args, t.as_ref())?;
        Some((t, p))
    } else {
        None
    };
    let (header, replay) = file::open(path, party, &digest).map_err(|e| e.to_string())?;
    if let Some((_, p)) = &client {
        check_calls(&header, p.len() as u64, args.generate)?;
    }
    let ch = connect(args, party)?;
    let mut ch = ch;
    let hello = Hello::new(party_of(party), digest, header.session);
    ch.handshake(&hello).map_err(|e| e.to_string())?;
    eprintln!(
        "party {party}: connected to {}, same plan and dealer session; {} calls",
        ch.peer_addr(),
        header.calls.len()
    );
    let mut session = RemoteParty::from_owned(program, weights, replay, ch);
    let start = Instant::now();
    let (tokens, calls, tokenizer) = match client {
        Some((tokenizer, prompt)) => {
            let mut sampler = Sampler::new(args.temperature, args.sample_seed)?;
            let n = header.calls.len();
            let (tokens, calls) = generate(program, &prompt, n, &mut sampler, |inputs, env| {
                session.call(inputs, env).map_err(|e| e.to_string())
            })?;
            (tokens, calls, tokenizer)
        }
        None => (Vec::new(), serve(program, &header, &mut session)?, None),
    };
    if session
        .replay_mut()
        .has_leftover()
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "{}: material left after the last call: the file does not match its calls",
            path.display()
        ));
    }
    let info = RunInfo {
        mode: format!("party {party} over TCP"),
        material_read: true,
        setup_bits: calls.first().map_or(0, |c| c.measured.setup_bits),
        setup_offline_bits: calls.first().map_or(0, |c| c.measured.setup_offline_bits),
        seconds: start.elapsed().as_secs_f64(),
    };
    finish(&tokens, tokenizer.as_ref(), &calls, &info, args.json)
}

fn party_of(p: u8) -> comet_ir::Party {
    if p == 0 {
        comet_ir::Party::Server
    } else {
        comet_ir::Party::Client
    }
}

/// The server's calls: no inputs of its own, the sizes the material was dealt for.
fn serve<C: Channel>(
    program: &Program,
    header: &MaterialHeader,
    session: &mut RemoteParty<'_, C>,
) -> Result<Vec<Call>, String> {
    let none: Outputs = HashMap::new();
    let n = header.calls.len();
    let mut calls = Vec::new();
    for (k, &env) in header.calls.iter().enumerate() {
        let (_, measured) = (session.call(&none, env))
            .map_err(|e| format!("call {k} (seq {}, past {}): {e}", env.seq, env.past))?;
        eprintln!(
            "call {:>3}/{n}: seq {}, past {}  ({} rounds, {} online)",
            k + 1,
            env.seq,
            env.past,
            measured.rounds,
            bytes(measured.online_bits)
        );
        calls.push(Call {
            env,
            estimated: estimate_at(program, env, &measured.active),
            measured,
        });
    }
    Ok(calls)
}

/// The client's prompt and `--generate` must be what the material was dealt for.
fn check_calls(
    header: &MaterialHeader,
    prompt_len: u64,
    generate: Option<usize>,
) -> Result<(), String> {
    let n = header.calls.len();
    if let Some(g) = generate
        && g != n
    {
        return Err(format!(
            "--generate {g}, but the material was dealt for {n} calls: deal with `comet deal \
             --generate {g}` or drop --generate"
        ));
    }
    let expected: Vec<DimEnv> = call_sizes(prompt_len, n);
    if header.calls != expected {
        let first = header.calls.first().map_or(0, |c| c.seq);
        return Err(format!(
            "the prompt has {prompt_len} tokens, but the material was dealt for a prompt of \
             {first}: deal with `comet deal --prompt-len {prompt_len}`"
        ));
    }
    Ok(())
}

fn connect(args: &RunArgs, party: u8) -> Result<TcpChannel, String> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(format!(
            "--timeout must be a positive number of seconds, not {}",
            args.timeout
        ));
    }
    let t = Duration::from_secs_f64(args.timeout);
    let opts = TcpOptions {
        read_timeout: t,
        write_timeout: t,
        connect_timeout: t,
        accept_timeout: t,
        connect_attempts: u32::MAX,
        ..TcpOptions::default()
    };
    match (args.listen, args.connect) {
        (Some(addr), _) => {
            eprintln!("party {party}: listening on {addr}");
            TcpChannel::listen(addr, &opts)
        }
        (None, Some(addr)) => TcpChannel::connect(addr, &opts),
        (None, None) => return Err("--party needs --listen ADDR or --connect ADDR".into()),
    }
    .map_err(|e| format!("party {party}: {e}"))
}
