//! `comet bench kv`: decode steps with the KV cache's rows opened once (`cache_matmul`,
//! the default) against re-opened in every call's Beaver products (`--kv-openings
//! reopened`), on the shipped model with its trained weights, both parties and the dealer
//! in this process. For each context length: the cache is filled by a prefill in chunks
//! (each chunk one call, as a chunked prefill would run), then `--steps` greedy decode
//! steps; per step the measured online bytes, rounds and dealer bytes (each checked
//! against the plan's estimate), the wall time, and the greedy tokens and the last
//! prefill call's logits, compared between the two plans (the same fixed-point
//! computation up to the local truncations, which differ with the shares).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use clap::Args;
use comet_ir::{ApproxConfig, ApproxProfile, DimEnv, Program};
use comet_runtime::interp::InProcess;
use ndarray::{ArrayD, Axis, IxDyn};
use serde_json::{Value, json};

use comet_compiler::inspect::units;

/// Arguments of `comet bench kv`.
#[derive(Args)]
pub struct BenchKvArgs {
    /// Context lengths: the decode steps run after this many cached tokens.
    #[arg(long, value_name = "N,..", value_delimiter = ',', default_values_t = [32, 128, 512])]
    past: Vec<u64>,
    /// Tokens per prefill call while filling the cache.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    chunk: u64,
    /// Greedy decode steps measured after the cache is filled.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Seed of the dealer and the input shares.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tiny sizes for tests: contexts 4 and 8, chunks of 4, one decode step.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &BenchKvArgs) -> Result<(), String> {
    let root = crate::demo::root();
    let path = root.join("examples/glassllm.model");
    let source = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run from the checkout)", path.display()))?;
    let weights_path = root.join("models/glassllm-en/model.safetensors");
    let (pasts, chunk, steps) = if args.quick {
        (vec![4, 8], 4, 1)
    } else {
        (args.past.clone(), args.chunk, args.steps)
    };
    let mut rows = Vec::new();
    for &past in &pasts {
        let mut tokens: Vec<Vec<u64>> = Vec::new();
        let mut logits: Vec<Vec<f64>> = Vec::new();
        // the baseline first: the first session of the process also builds the lookup
        // tables, which the later one finds ready
        for cached in [false, true] {
            let program = compile(&source, &path, cached)?;
            let weights = comet_runtime::weights::load(&weights_path, &program.info.weights)
                .map_err(|e| e.to_string())?;
            let run = decode_after(&program, &weights, past, chunk, steps, args.seed)?;
            eprintln!(
                "past {past}, {}: {} online per step, {} rounds, {:.3} s per step",
                mode(cached),
                units::bits_as_bytes(run.online_bits),
                run.rounds,
                run.seconds
            );
            tokens.push(run.tokens.clone());
            logits.push(run.logits.clone());
            rows.push(run.to_json(past, cached));
        }
        let same = tokens[0] == tokens[1];
        // the last prefill call's logits: both plans saw the same tokens there
        let vocab = logits[0].len() / (steps as usize + 1);
        let diff = (logits[0].iter().zip(&logits[1]))
            .take(vocab)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        if let Some(Value::Object(last)) = rows.last_mut() {
            last.insert("tokens_equal_to_reopened".into(), json!(same));
            last.insert("max_logits_diff_to_reopened".into(), json!(diff));
        }
    }
    let report = json!({ "model": "glassllm", "chunk": chunk, "steps": steps, "rows": rows });
    if args.json {
        println!("{report}");
    } else {
        print!("{}", render(&report));
    }
    let all_exact = rows
        .iter()
        .all(|r| r["measured_is_estimate"] == json!(true));
    if !all_exact {
        return Err("a measured cost differs from the plan's estimate".into());
    }
    Ok(())
}

fn mode(cached: bool) -> &'static str {
    if cached { "cached" } else { "reopened" }
}

fn compile(source: &str, path: &Path, cached: bool) -> Result<Program, String> {
    let opts = comet_compiler::Options {
        approx: ApproxConfig::uniform(ApproxProfile::Lut),
        cache_openings: cached,
        ..Default::default()
    };
    let path = path.display().to_string();
    comet_compiler::compile(source, &path, &opts)
        .map(|c| c.program)
        .map_err(|e| format!("{path}: {e}"))
}

/// The decode steps of one plan after `past` cached tokens.
struct DecodeRun {
    /// Per step, averaged: online bits, rounds, dealer bits, wall seconds.
    online_bits: u64,
    rounds: u64,
    offline_bits: u64,
    seconds: f64,
    measured_is_estimate: bool,
    tokens: Vec<u64>,
    /// The last-position logits of the last prefill call and of each decode step.
    logits: Vec<f64>,
}

impl DecodeRun {
    fn to_json(&self, past: u64, cached: bool) -> Value {
        json!({
            "past": past,
            "kv_openings": mode(cached),
            "online_bits_per_step": self.online_bits,
            "rounds_per_step": self.rounds,
            "offline_bits_per_step": self.offline_bits,
            "seconds_per_step": self.seconds,
            "measured_is_estimate": self.measured_is_estimate,
            "tokens": self.tokens,
        })
    }
}

/// Fills the cache with `past` prompt tokens in calls of `chunk`, then runs `steps` greedy
/// decode steps.
fn decode_after(
    program: &Program,
    weights: &HashMap<String, ArrayD<f64>>,
    past: u64,
    chunk: u64,
    steps: u64,
    seed: u64,
) -> Result<DecodeRun, String> {
    let vocab = vocabulary(program);
    let prompt: Vec<u64> = (0..past).map(|i| (i * 37 + 11) % vocab).collect();
    let mut session = InProcess::new(program, weights, seed);
    let mut exact = true;
    let mut call = |ids: &[u64],
                    env: DimEnv|
     -> Result<(u64, Vec<f64>, comet_runtime::interp::Measured, f64), String> {
        let start = Instant::now();
        let (out, m) = (session.call(&token_input(ids), env))
            .map_err(|e| format!("seq {}, past {}: {e}", env.seq, env.past))?;
        let seconds = start.elapsed().as_secs_f64();
        exact &=
            (m.online_bits, m.rounds, m.offline_bits) == crate::generate::estimate(program, env);
        let row = last_row(&out)?;
        Ok((argmax(&row), row, m, seconds))
    };
    let mut next = 0;
    let mut prefill_row = Vec::new();
    for (k, ids) in prompt.chunks(chunk as usize).enumerate() {
        let env = DimEnv {
            seq: ids.len() as u64,
            past: k as u64 * chunk,
        };
        let (t, row, ..) = call(ids, env)?;
        (next, prefill_row) = (t, row);
    }
    let (mut online, mut rounds, mut offline, mut seconds) = (0, 0, 0, 0.0);
    let mut tokens = Vec::new();
    let mut logits = prefill_row;
    for s in 0..steps {
        tokens.push(next);
        let env = DimEnv {
            seq: 1,
            past: past + s,
        };
        let (t, row, m, secs) = call(&[next], env)?;
        next = t;
        logits.extend(row);
        online += m.online_bits;
        rounds += m.rounds;
        offline += m.offline_bits;
        seconds += secs;
    }
    tokens.push(next);
    Ok(DecodeRun {
        online_bits: online / steps,
        rounds: rounds / steps,
        offline_bits: offline / steps,
        seconds: seconds / steps as f64,
        measured_is_estimate: exact,
        tokens,
        logits,
    })
}

fn vocabulary(p: &Program) -> u64 {
    (p.info.dims.iter())
        .find(|d| d.name == "vocab")
        .and_then(|d| d.value)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(1)
}

fn token_input(ids: &[u64]) -> HashMap<String, ArrayD<f64>> {
    let v = ArrayD::from_shape_vec(IxDyn(&[ids.len()]), ids.iter().map(|t| *t as f64).collect())
        .expect("1-D");
    HashMap::from([("tokens".to_string(), v)])
}

/// The last position's logits.
fn last_row(out: &HashMap<String, ArrayD<f64>>) -> Result<Vec<f64>, String> {
    let logits = out
        .get("logits")
        .ok_or("the model has no `logits` output")?;
    Ok(logits
        .index_axis(Axis(0), logits.shape()[0] - 1)
        .iter()
        .copied()
        .collect())
}

/// The greedy token: the largest logit (the first on ties).
fn argmax(row: &[f64]) -> u64 {
    let best =
        (row.iter().enumerate()).fold(
            (0, f64::NEG_INFINITY),
            |b, (i, &v)| {
                if v > b.1 { (i, v) } else { b }
            },
        );
    best.0 as u64
}

fn render(r: &Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "glassllm (trained weights), lut profile, in process: per decode step after `past` \
         cached tokens (the cache filled in prefill calls of {} tokens), mean of {} steps",
        r["chunk"].as_u64().unwrap_or(0),
        r["steps"].as_u64().unwrap_or(0)
    );
    let _ = writeln!(
        o,
        "{:>6}  {:<9} {:>11} {:>7} {:>11} {:>10}  {:<6} tokens equal",
        "past", "KV", "online", "rounds", "dealer", "time", "= est"
    );
    for row in r["rows"].as_array().into_iter().flatten() {
        let bits = |k: &str| units::bits_as_bytes(row[k].as_u64().unwrap_or(0));
        let equal = match (
            row.get("tokens_equal_to_reopened"),
            row.get("max_logits_diff_to_reopened"),
        ) {
            (Some(Value::Bool(b)), Some(d)) => format!(
                "{} (logits max |Δ| {:.1e})",
                if *b { "yes" } else { "no" },
                d.as_f64().unwrap_or(f64::NAN)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "{:>6}  {:<9} {:>11} {:>7} {:>11} {:>8.1} ms  {:<6} {}",
            row["past"].as_u64().unwrap_or(0),
            row["kv_openings"].as_str().unwrap_or("?"),
            bits("online_bits_per_step"),
            row["rounds_per_step"].as_u64().unwrap_or(0),
            bits("offline_bits_per_step"),
            row["seconds_per_step"].as_f64().unwrap_or(0.0) * 1e3,
            if row["measured_is_estimate"] == json!(true) {
                "yes"
            } else {
                "NO"
            },
            equal
        );
    }
    o
}
