//! `comet deal PLAN --out DIR`: the trusted dealer, ahead of time. Writes one material file
//! per party (`party0.mat`, `party1.mat`) for one session: the setup (fixed-operand masks)
//! and the calls of a generation with a prompt of `--prompt-len` tokens and `--generate`
//! tokens. Each file carries its party's seeds and what cannot be derived from them; the
//! dealer's randomness comes from the operating system, so no two sessions share material.

use clap::Args;
use comet_runtime::dealer::{MaterialHeader, SessionDealer, file, plan_digest};
use comet_runtime::interp::deal_session;
use rand::Rng;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::generate::{call_sizes, estimate};
use crate::report::bytes;
use crate::run::load_plan;

/// Arguments of `comet deal`.
#[derive(Args)]
pub struct DealArgs {
    /// The plan file (JSON, from `comet compile -o`).
    plan: PathBuf,
    /// The folder to write `party0.mat` and `party1.mat` to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Prompt length in tokens of the session's first call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    prompt_len: u64,
    /// Tokens the session generates: the prefill, then one decode step per further token.
    #[arg(long, value_name = "M", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..))]
    generate: u64,
}

/// Runs the command.
pub fn run(args: &DealArgs) -> Result<(), String> {
    let program = load_plan(&args.plan)?;
    if program.analyses.costs.is_none() || program.analyses.rounds.is_none() {
        return Err("the plan has no schedule or costs: compile it with `comet compile`".into());
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let calls = call_sizes(args.prompt_len, args.generate as usize);
    let mut os = rand::rng();
    let (mut master, mut session) = ([0u8; 32], [0u8; 32]);
    os.fill_bytes(&mut master);
    os.fill_bytes(&mut session);
    let dealer = SessionDealer::new(master);
    let digest = plan_digest(&program);
    let paths = [0, 1].map(|p| args.out.join(format!("party{p}.mat")));
    let mut sinks = Vec::new();
    for (p, path) in paths.iter().enumerate() {
        let p = p as u8;
        let header = MaterialHeader::new(
            p,
            digest,
            session,
            calls.clone(),
            dealer.party_seed(p),
            dealer.common_seed(),
        );
        let w = file::create(path, &header).map_err(|e| e.to_string())?;
        // a fresh file is unused: forget a marker left by an earlier session's file
        let _ = std::fs::remove_file(file::used_marker(path));
        sinks.push(Box::new(w) as Box<dyn Write + Send>);
    }
    let sinks: [Box<dyn Write + Send>; 2] = sinks.try_into().map_err(|_| "two sinks")?;
    let mut dealer = dealer.recording(sinks);
    let start = Instant::now();
    let n = calls.len();
    let per_call = deal_session(&program, &calls, &mut dealer, |k, b| {
        eprintln!("dealt call {:>3}/{n}: {}", k + 1, bytes(8 * b));
    })
    .map_err(|e| e.to_string())?;
    let headers = dealer.header_bytes();
    dealer
        .finish()
        .map_err(|e| format!("writing material: {e}"))?;
    let mut sizes = [0u64; 2];
    for (p, path) in paths.iter().enumerate() {
        sizes[p] = file::seal(path).map_err(|e| e.to_string())?;
    }
    println!("{:<18} {:>14} {:>14}", "call", "dealt", "(estimate)");
    let mut exact = true;
    for (env, b) in calls.iter().zip(&per_call) {
        let est = estimate(&program, *env).2;
        exact &= 8 * b == est;
        let name = format!("seq {}, past {}", env.seq, env.past);
        println!("{name:<18} {:>14} {:>14}", bytes(8 * b), bytes(est));
    }
    println!(
        "wrote {} ({}) and {} ({}) in {:.2} s; {} of DReLU key headers beyond the estimate",
        paths[0].display(),
        bytes(8 * sizes[0]),
        paths[1].display(),
        bytes(8 * sizes[1]),
        start.elapsed().as_secs_f64(),
        bytes(8 * headers)
    );
    println!(
        "dealt = estimated for every call: {}",
        if exact { "yes" } else { "NO" }
    );
    Ok(())
}
