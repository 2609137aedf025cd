//! `comet deal PLAN --out DIR`: the trusted dealer, ahead of time. Writes one material file
//! per party (`party0.mat`, `party1.mat`) for one session: the setup (fixed-operand masks)
//! and the calls of a generation with a prompt of `--prompt-len` tokens and `--generate`
//! tokens. Each file carries its party's seeds and what cannot be derived from them; the
//! dealer's randomness comes from the operating system, so no two sessions share material.
//! The files are created with mode 0600 and never overwrite existing ones.

use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

use crate::generate::{estimate, session_calls};
use crate::progress::Bars;
use crate::report::bytes;
use crate::run::{deal_files, load_plan};

/// Arguments of `comet deal`.
#[derive(Args)]
pub struct DealArgs {
    /// The plan file (JSON, from `comet compile -o`).
    plan: PathBuf,
    /// The folder to write `party0.mat` and `party1.mat` to (created if missing, mode
    /// 0700); existing files there are never overwritten.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Prompt length in tokens of the session's first call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    prompt_len: u64,
    /// Tokens the session generates: the prefill, then one decode step per further token
    /// (default 8). An encoder's plan (no KV cache) has one call, and refuses it.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    generate: Option<u64>,
    /// No progress bar and no per-call lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Runs the command.
pub fn run(args: &DealArgs) -> Result<(), String> {
    let program = load_plan(&args.plan)?;
    let calls = session_calls(&program, args.prompt_len, args.generate.map(|g| g as usize))?;
    let start = Instant::now();
    let n = calls.len();
    let bar = Bars::new(args.quiet).counter(n as u64, "calls dealt");
    let dealt = deal_files(&program, &calls, &args.out, |k, b| {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        if !args.quiet {
            eprintln!("dealt call {:>3}/{n}: {}", k + 1, bytes(8 * b));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (paths, sizes, headers) = (&dealt.paths, dealt.file_bytes, dealt.header_bytes);
    println!("{:<18} {:>14} {:>14}", "call", "dealt", "(estimate)");
    let mut exact = true;
    for (env, b) in calls.iter().zip(&dealt.per_call) {
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
    if dealt.setup_bytes > 0 {
        println!(
            "setup material (the block shuffles' corrections, once per session): {}",
            bytes(8 * dealt.setup_bytes)
        );
    }
    println!(
        "dealt = estimated for every call: {}",
        if exact { "yes" } else { "NO" }
    );
    Ok(())
}
