//! `comet dealer --listen ADDR PLAN`: the dealer as a service, serving only the parties
//! whose keys it pins (`--party-key`; `--any-party`: whoever connects). Both parties of a session
//! connect to it (`comet run --party P --dealer ADDR`); it deals each call's material as
//! they reach the call and streams each party's half into its socket
//! (`comet_runtime::dealer::service`), session after session. Progress and a summary per
//! session go to stderr (`--quiet`: errors only). In the library so that the Python
//! package's `comet.dealer` and `comet.keygen` run the same code ([`serve`], [`keygen`]).

use clap::Args;
use comet_ir::Program;
use comet_runtime::dealer::service::{DEFAULT_MASK_BUDGET, DEFAULT_MAX_TOKENS, Event};
use comet_runtime::dealer::{CallReport, DealerService, SessionReport, plan_digest};
use comet_runtime::interp::deal_call;
use comet_runtime::transport::{DealerIdentity, DealerKeypair, PartyKey, TcpOptions};
use std::path::PathBuf;
use std::time::Duration;

use crate::generate::estimate;
use crate::report::bytes;
use crate::run::load_plan;

/// Arguments of `comet dealer`.
#[derive(Args)]
pub struct DealerArgs {
    /// The plan file (JSON, from `comet compile -o`): the parties must run the same plan.
    pub plan: PathBuf,
    /// The address to listen on (e.g. `127.0.0.1:7071`).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Stop after serving N sessions (default: serve until killed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sessions: Option<u64>,
    /// Seconds to wait for a party (its hello, its partner, its next request, each write).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub timeout: f64,
    /// The largest call (`seq + past` tokens) the dealer deals.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: u64,
    /// MiB of the weights' masks the dealer keeps in memory per session; the rest is
    /// re-derived from the party seeds at every call (slower calls, bounded memory).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MASK_BUDGET >> 20)]
    pub mask_cache: u64,
    /// The dealer's static key file (Noise NK; the parties pin its public key with
    /// `--dealer-key`). Created (mode 0600) with a fresh key if it does not exist.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "insecure_plaintext"
    )]
    pub key: Option<PathBuf>,
    /// A party's public key (`P=HEX|FILE`: party index 0 or 1, then 64 hex digits or the
    /// `.pub` file of `comet keygen`), repeatable: only the holders of the pinned keys are
    /// served, each as the party index its key is pinned for (Noise KK; the party runs with
    /// `--key FILE`). Required for both parties unless --any-party.
    #[arg(long, value_name = "P=KEY", value_parser = PartyKey::parse)]
    pub party_key: Vec<PartyKey>,
    /// Serve whoever connects (Noise NK: the dealer is authenticated, the parties are not):
    /// anyone who reaches the port can take a party's slot. Only on a network that only the
    /// parties can reach.
    #[arg(long, conflicts_with = "party_key")]
    pub any_party: bool,
    /// No encryption or authentication of the parties' connections: tests and debugging
    /// only; the parties must say so too.
    #[arg(long, conflicts_with_all = ["key", "party_key"])]
    pub insecure_plaintext: bool,
    /// Print errors only.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `comet keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// The key file to create (mode 0600, never overwritten); the public key also goes to
    /// `FILE.pub` and to stdout.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `comet keygen`: a static key pair (the dealer's, or a party's for `comet run --key`).
pub fn keygen(args: &KeygenArgs) -> Result<(), String> {
    println!("{}", write_keypair(&args.out)?);
    Ok(())
}

/// Creates the key file `out` (mode 0600, never over an existing file) and `out.pub`;
/// returns the public key (64 hex digits).
pub fn write_keypair(out: &std::path::Path) -> Result<String, String> {
    let k = DealerKeypair::generate()?;
    k.write_new(out)?;
    let public = out.with_extension("pub");
    std::fs::write(&public, format!("{}\n", k.public()))
        .map_err(|e| format!("cannot write `{}`: {e}", public.display()))?;
    Ok(k.public().to_string())
}

/// The dealer's identity: the key file read (or created), or plaintext.
fn identity(args: &DealerArgs) -> Result<DealerIdentity, String> {
    let Some(path) = &args.key else {
        return Ok(DealerIdentity::InsecurePlaintext);
    };
    if !path.exists() {
        let k = DealerKeypair::generate()?;
        k.write_new(path)?;
        eprintln!("dealer: created the key file {}", path.display());
    }
    let key = DealerKeypair::read(path)?;
    if args.any_party {
        return Ok(DealerIdentity::Key(key));
    }
    for p in [0u8, 1] {
        if !args.party_key.iter().any(|k| k.party == p) {
            return Err(format!(
                "the dealer serves only parties whose keys it pins, and none is pinned for party \
                 {p}: pass --party-key {p}=KEY (its `comet keygen` public key), or --any-party \
                 to serve whoever connects"
            ));
        }
    }
    Ok(DealerIdentity::Pinning {
        key,
        parties: args.party_key.clone(),
    })
}

/// Runs the command.
pub fn run(args: &DealerArgs) -> Result<(), String> {
    let program = load_plan(&args.plan)?;
    let reports = serve(&program, args)?;
    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
    match failed {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} sessions failed (see above)",
            reports.len()
        )),
    }
}

/// Serves `program` as `args` says (`args.plan` is not read): `args.sessions` sessions,
/// or until the process ends; each session's report, failed ones included.
pub fn serve(program: &Program, args: &DealerArgs) -> Result<Vec<SessionReport>, String> {
    if program.analyses.costs.is_none() || program.analyses.rounds.is_none() {
        return Err("the plan has no schedule or costs: compile it with `comet compile`".into());
    }
    let t = timeout(args.timeout)?;
    let opts = TcpOptions {
        read_timeout: t,
        write_timeout: t,
        accept_timeout: t,
        handshake_timeout: t.min(Duration::from_secs(10)),
        ..TcpOptions::default()
    };
    let digest = plan_digest(program);
    let identity = identity(args)?;
    match &identity {
        DealerIdentity::Key(k) => eprintln!(
            "dealer: public key {} (--dealer-key); serving ANY PARTY that connects (--any-party)",
            k.public()
        ),
        DealerIdentity::Pinning { key, parties } => eprintln!(
            "dealer: public key {} (--dealer-key); serving only the {} pinned party keys",
            key.public(),
            parties.len()
        ),
        DealerIdentity::InsecurePlaintext => {
            eprintln!(
                "dealer: INSECURE PLAINTEXT: the parties' material crosses the network in clear"
            )
        }
    }
    let service = DealerService::bind(args.listen.as_str(), digest, &opts, identity)
        .map_err(|e| e.to_string())?
        .with_max_tokens(args.max_tokens)
        .with_mask_budget(args.mask_cache.saturating_mul(1 << 20));
    if !args.quiet {
        eprintln!(
            "dealer: listening on {} for plan `{}` ({})",
            service.local_addr(),
            program.info.name,
            hex(&digest[..8])
        );
    }
    let mut reports = Vec::new();
    while args.sessions.is_none_or(|n| (reports.len() as u64) < n) {
        reports.push(serve_one(&service, program, args.quiet)?);
    }
    Ok(reports)
}

fn timeout(secs: f64) -> Result<Duration, String> {
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!(
            "--timeout must be a positive number of seconds, not {secs}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Serves the next session and prints its summary.
fn serve_one(
    service: &DealerService,
    program: &Program,
    quiet: bool,
) -> Result<SessionReport, String> {
    let mut deal = |env, dealer: &mut _, set_up| {
        deal_call(program, env, dealer, set_up).map_err(|e| e.to_string())
    };
    let mut on = |e: Event<'_>| print_event(program, &e, quiet);
    let report = (service.serve_session(&mut deal, &mut on)).map_err(|e| e.to_string())?;
    print_summary(&report, quiet);
    Ok(report)
}

fn print_event(program: &Program, e: &Event<'_>, quiet: bool) {
    match e {
        Event::Refused { peer, reason } => eprintln!("dealer: refused {peer}: {reason}"),
        _ if quiet => {}
        Event::Joined { party, peer } => {
            eprintln!(
                "dealer: party {party} joined from {peer}, waiting for party {}",
                1 - party
            )
        }
        Event::Paired { session, peers } => eprintln!(
            "session {}: party 0 at {}, party 1 at {}",
            hex(&session[..8]),
            peers[0],
            peers[1]
        ),
        Event::Call(c) => eprintln!("{}", call_line(program, c)),
    }
}

/// One call's line: bytes streamed per party, and the dealt bytes beside the estimate.
fn call_line(program: &Program, c: &CallReport) -> String {
    let est = estimate(program, c.env).2;
    let dealt = 8 * c.offline_bytes;
    let versus = match dealt == est {
        true => "= estimate".to_string(),
        false => format!("!= estimate {}", bytes(est)),
    };
    let setup = match c.setup_bytes {
        0 => String::new(),
        s => format!(" (+ setup {})", bytes(8 * s)),
    };
    format!(
        "  call {} (seq {}, past {}): streamed party 0 {}, party 1 {}; dealt {} {versus}{setup}",
        c.call,
        c.env.seq,
        c.env.past,
        bytes(8 * c.streamed[0]),
        bytes(8 * c.streamed[1]),
        bytes(dealt)
    )
}

fn print_summary(r: &SessionReport, quiet: bool) {
    let id = hex(&r.session[..8]);
    let total = |p: usize| r.calls.iter().map(|c| c.streamed[p]).sum::<u64>();
    match &r.outcome {
        Ok(()) if quiet => {}
        Ok(()) => eprintln!(
            "session {id}: {} calls, streamed party 0 {}, party 1 {} in {:.2} s",
            r.calls.len(),
            bytes(8 * total(0)),
            bytes(8 * total(1)),
            r.elapsed.as_secs_f64()
        ),
        Err(e) => eprintln!("session {id} failed after {} calls: {e}", r.calls.len()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
