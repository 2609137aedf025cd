//! `comet run --party N`: one party of a two-process run over TCP.
//!
//! Party 0 (the server) provides the weights and listens or connects; party 1 (the
//! client) provides the prompt, receives the logits and chooses the tokens. The material
//! comes from a file of `comet deal` (`--material`: checked whole before connecting, and
//! marked used after the handshake, before the first call, so that a failed connection
//! leaves it unused; the calls are the ones it was dealt for) or from the dealer service
//! (`--dealer ADDR`: each call is asked for and streamed as the party reaches it; the
//! calls are the prompt's and `--generate`'s, party 0 being told the prompt length with
//! `--prompt-len`). The handshake checks that both run the same plan with the two halves of
//! one dealer session.

use comet_ir::{DimEnv, Program};
use comet_runtime::dealer::{
    DealerStream, MaterialHeader, PartyReplay, UsedList, Verified, file, plan_digest,
};
use comet_runtime::interp::{Measured, Outputs, RemoteParty, RunOptions};

use crate::progress::Bars;
use comet_runtime::transport::{
    Channel, ChannelError, ChannelKey, DealerAuth, DealerKeypair, DealerPublicKey, Hello, Security,
    TcpChannel, TcpListenerHandle, TcpOptions,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::generate::{
    Call, Sampler, call_sizes, estimate_at, generate, is_encoder, most_counts, predict,
    session_calls,
};
use crate::report::{RunInfo, bytes};
use crate::run::{
    Generated, RunArgs, finish, open_checkpoint, prompt, tokenizer, with_head_predictor,
    with_predictor,
};

/// Where this party's material comes from.
enum Source {
    /// A material file (marked used).
    File,
    /// The dealer service.
    Dealer(DealerStream),
}

/// The material source before the handshake: a file checked but not yet marked used, or
/// the dealer's stream.
enum Opened {
    /// A checked material file and the list that will mark it used.
    File(Box<(Verified, UsedList)>),
    /// The dealer service's stream and the replay of its body.
    Dealer(Box<(DealerStream, PartyReplay)>),
}

impl Opened {
    fn session(&self) -> [u8; 32] {
        match self {
            Opened::File(f) => f.0.header().session,
            Opened::Dealer(d) => d.0.session(),
        }
    }

    /// The secret the parties' channel key is derived from.
    fn channel_secret(&self) -> [u8; 32] {
        match self {
            Opened::File(f) => f.0.channel_secret(),
            Opened::Dealer(d) => d.1.channel_secret(),
        }
    }

    /// After a successful handshake: marks a file used, and returns the source and the
    /// replay of its material.
    fn start(self) -> Result<(Source, PartyReplay), String> {
        match self {
            Opened::File(f) => {
                let (v, used) = *f;
                let (_, replay) = v.mark_used(&used).map_err(|e| e.to_string())?;
                Ok((Source::File, replay))
            }
            Opened::Dealer(d) => {
                let (stream, replay) = *d;
                Ok((Source::Dealer(stream), replay))
            }
        }
    }
}

/// Runs this process's party and prints what it did.
pub fn run(program: &Program, args: &RunArgs) -> Result<(), String> {
    let (tokens, done, tokenizer, info) = party(program, args)?;
    finish(&tokens, tokenizer.as_ref(), &done, &info, args.json)
}

/// Runs this process's party (`args.party`): the client's tokens (none for the server),
/// every call's figures, the tokenizer and how it ran.
pub fn party(program: &Program, args: &RunArgs) -> Result<Generated, String> {
    crate::encode::check_logits(program)?;
    let party = args.party.expect("checked by the caller");
    if party == 1 {
        // before anything else: no file read, no connection, no material used
        crate::run::check_reveal_policy(program, args.accept_leakage, "party 1")?;
    }
    let digest = plan_digest(program);
    let checkpoint = open_checkpoint(program, args.weights.as_deref(), Some(usize::from(party)))
        .map_err(|e| format!("party {party}: {e}"))?;
    let weights = match party {
        0 => {
            let w = with_predictor(program, HashMap::new(), args.predictor.as_deref())?;
            with_head_predictor(program, w, args.head_predictor.as_deref())?
        }
        _ => HashMap::new(),
    };
    let client = if party == 1 {
        let t = tokenizer(args)?;
        let p = prompt(args, t.as_ref(), program)?;
        Some((t, p))
    } else {
        None
    };
    let opts = tcp_options(args)?;
    let prompt_len = client.as_ref().map(|(_, p)| p.len() as u64);
    let (opened, calls) = open_material(program, args, party, digest, prompt_len, &opts)?;
    let security = match args.insecure_plaintext {
        true => Security::InsecurePlaintext,
        false => Security::Psk(ChannelKey::derive(
            &opened.channel_secret(),
            &digest,
            &opened.session(),
        )),
    };
    let mut ch = connect(args, party, &opts, &security)?;
    let hello = Hello::new(party_of(party), digest, opened.session());
    ch.handshake(&hello).map_err(|e| e.to_string())?;
    // only now is the material used: a failed connection or handshake leaves it unused
    let (mut source, replay) = opened.start()?;
    eprintln!(
        "party {party}: connected to {} ({}), same plan and dealer session; {} calls",
        ch.peer_addr(),
        match ch.is_encrypted() {
            true => "encrypted and authenticated by the session's key",
            false => "INSECURE PLAINTEXT",
        },
        calls.len()
    );
    let bars = Bars::new(args.quiet || args.json);
    let options = RunOptions {
        progress: bars.runtime(party),
        naive_refill: args.kv_refill == crate::run::KvRefill::Naive,
        ..RunOptions::default()
    };
    let mut session = RemoteParty::from_owned(program, weights, replay, ch).with_options(options);
    if let Some(c) = checkpoint {
        session = session.with_checkpoint(c);
    }
    let start = Instant::now();
    let mut call = |inputs: &Outputs, env| {
        let (setup, round) = message_caps(program, env);
        session.channel_mut().limit_messages(setup, round);
        call_with(&mut session, &mut source, inputs, env)
    };
    let encoder = is_encoder(program);
    let mut encoder_prompt = None;
    let (tokens, done, tokenizer) = match client {
        Some((tokenizer, prompt)) => {
            let mut sampler = Sampler::new(args.temperature, args.sample_seed)?;
            let (tokens, done) = match encoder {
                true => predict(program, &prompt, &mut sampler, call)?,
                false => generate(program, &prompt, calls.len(), &mut sampler, &bars, call)?,
            };
            encoder_prompt = encoder.then_some(prompt);
            (tokens, done, tokenizer)
        }
        None => (Vec::new(), serve(program, &calls, &mut call)?, None),
    };
    check_leftover(&mut session, &source, args)?;
    let info = RunInfo {
        mode: match &args.dealer {
            Some(addr) => format!("party {party} over TCP, material from the dealer at {addr}"),
            None => format!("party {party} over TCP"),
        },
        material_read: true,
        setup_bits: done.first().map_or(0, |c| c.measured.setup_bits),
        setup_offline_bits: done.first().map_or(0, |c| c.measured.setup_offline_bits),
        seconds: start.elapsed().as_secs_f64(),
        encoder_prompt,
    };
    Ok((tokens, done, tokenizer, info))
}

/// This party's material source and the session's calls: from the file (checked whole
/// and against the client's prompt and `--generate`, not yet marked used), or from the
/// dealer (the prompt length of the client, or `--prompt-len` for the server).
fn open_material(
    program: &Program,
    args: &RunArgs,
    party: u8,
    digest: [u8; 32],
    prompt_len: Option<u64>,
    opts: &TcpOptions,
) -> Result<(Opened, Vec<DimEnv>), String> {
    if let Some(addr) = &args.dealer {
        let len = match (prompt_len, args.prompt_len) {
            (Some(len), _) => len,
            (None, Some(len)) => len,
            (None, None) => {
                return Err("--dealer: party 0 needs the prompt length of the client's \
                            first call, --prompt-len N"
                    .into());
            }
        };
        let auth = match (&args.dealer_key, args.insecure_plaintext) {
            (_, true) => DealerAuth::InsecurePlaintext,
            (Some(key), false) => {
                let dealer = DealerPublicKey::parse(key)?;
                match &args.key {
                    Some(path) => DealerAuth::Mutual {
                        dealer,
                        own: DealerKeypair::read(path).map_err(|e| format!("--key: {e}"))?,
                    },
                    None => DealerAuth::Pinned(dealer),
                }
            }
            (None, false) => {
                return Err(
                    "--dealer needs the dealer's public key, --dealer-key HEX|FILE \
                            (printed by `comet dealer --key FILE` and `comet keygen`)"
                        .into(),
                );
            }
        };
        let calls = session_calls(program, len, args.generate)?;
        let (stream, replay) = DealerStream::connect(addr, party, digest, opts, &auth)
            .map_err(|e| format!("party {party}: {e}"))?;
        return Ok((Opened::Dealer(Box::new((stream, replay))), calls));
    }
    let Some(path) = &args.material else {
        return Err(
            "--party needs --material FILE (from `comet deal`) or --dealer ADDR \
                    (`comet dealer`)"
                .into(),
        );
    };
    let used = UsedList::for_user().map_err(|e| e.to_string())?;
    let verified = file::open(path, party, &digest, &used).map_err(|e| e.to_string())?;
    if let Some(len) = prompt_len {
        check_calls(program, verified.header(), len, args.generate)?;
    }
    let calls = verified.header().calls.clone();
    Ok((Opened::File(Box::new((verified, used))), calls))
}

/// One call, its material asked for and ended with the dealer when it streams it.
fn call_with<C: Channel>(
    session: &mut RemoteParty<'_, C>,
    source: &mut Source,
    inputs: &Outputs,
    env: DimEnv,
) -> Result<(Outputs, Measured), String> {
    if let Source::Dealer(d) = source {
        d.begin_call(env).map_err(|e| e.to_string())?;
    }
    let result = session.call(inputs, env).map_err(|e| e.to_string())?;
    if let Source::Dealer(d) = source {
        d.end_call().map_err(|e| e.to_string())?;
    }
    Ok(result)
}

/// A material file must have no bytes left after the last call (the dealer's stream was
/// checked call by call).
fn check_leftover<C: Channel>(
    session: &mut RemoteParty<'_, C>,
    source: &Source,
    args: &RunArgs,
) -> Result<(), String> {
    let (Source::File, Some(path)) = (source, &args.material) else {
        return Ok(());
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
    Ok(())
}

fn party_of(p: u8) -> comet_ir::Party {
    if p == 0 {
        comet_ir::Party::Server
    } else {
        comet_ir::Party::Client
    }
}

/// The server's calls: no inputs of its own, at the sizes of `calls`.
fn serve(
    program: &Program,
    calls: &[DimEnv],
    call: &mut impl FnMut(&Outputs, DimEnv) -> Result<(Outputs, Measured), String>,
) -> Result<Vec<Call>, String> {
    let none: Outputs = HashMap::new();
    let n = calls.len();
    let mut done = Vec::new();
    for (k, &env) in calls.iter().enumerate() {
        let (_, measured) = (call(&none, env))
            .map_err(|e| format!("call {k} (seq {}, past {}): {e}", env.seq, env.past))?;
        eprintln!(
            "call {:>3}/{n}: seq {}, past {}  ({} rounds, {} online)",
            k + 1,
            env.seq,
            env.past,
            measured.rounds,
            bytes(measured.online_bits)
        );
        done.push(Call {
            env,
            estimated: estimate_at(program, env, &measured),
            measured,
            logits: None,
        });
    }
    Ok(done)
}

/// The client's prompt and `--generate` must be what the material was dealt for.
fn check_calls(
    program: &Program,
    header: &MaterialHeader,
    prompt_len: u64,
    generate: Option<usize>,
) -> Result<(), String> {
    if is_encoder(program) {
        // one call over the prompt; --generate other than 1 is refused
        session_calls(program, prompt_len, generate)?;
    }
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

/// The largest message the peer may send in a setup exchange and in a round of the call
/// at `env`, from the plan: a setup exchange is one chunk of `W − B` or, in a sparse plan,
/// one of the two block-shuffle exchanges (every permuted operand at once); no round
/// carries more than the call's online bytes (the dense estimate: every block active).
fn message_caps(program: &Program, env: DimEnv) -> (u64, u64) {
    let chunk = RunOptions::default().chunk_bytes as u64;
    // the weights' `W − B` in chunks, and a sparse plan's two shuffle exchanges
    let setup = chunk.max(comet_runtime::interp::shuffle_setup_bytes(program));
    let online_bits = estimate_at(program, env, &most_counts(program, env)).0;
    (setup, online_bits.div_ceil(8).max(1))
}

/// `--timeout` for every wait: on the peer, and on the dealer; `--call-timeout` for a
/// whole exchange.
fn tcp_options(args: &RunArgs) -> Result<TcpOptions, String> {
    for (flag, secs) in [
        ("--timeout", args.timeout),
        ("--call-timeout", args.call_timeout),
    ] {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(format!(
                "{flag} must be a positive number of seconds, not {secs}"
            ));
        }
    }
    let t = Duration::from_secs_f64(args.timeout);
    Ok(TcpOptions {
        read_timeout: t,
        write_timeout: t,
        connect_timeout: t,
        accept_timeout: t,
        connect_attempts: u32::MAX,
        call_timeout: Duration::from_secs_f64(args.call_timeout),
        handshake_timeout: t.min(Duration::from_secs(10)),
        ..TcpOptions::default()
    })
}

fn connect(
    args: &RunArgs,
    party: u8,
    opts: &TcpOptions,
    security: &Security,
) -> Result<TcpChannel, String> {
    match (args.listen, args.connect) {
        (Some(addr), _) => {
            eprintln!("party {party}: listening on {addr}");
            let (handle, _) = TcpListenerHandle::bind(addr).map_err(|e| e.to_string())?;
            let mut refused = |peer, e: &ChannelError| {
                eprintln!("party {party}: refused a connection from {peer}: {e}; still listening")
            };
            handle.accept_reporting(opts, security, &mut refused)
        }
        (None, Some(addr)) => TcpChannel::connect(addr, opts, security),
        (None, None) => return Err("--party needs --listen ADDR or --connect ADDR".into()),
    }
    .map_err(|e| format!("party {party}: {e}"))
}
