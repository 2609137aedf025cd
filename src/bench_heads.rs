//! `comet bench heads`: decode steps of the shipped model (or, with `--synthetic`, of a
//! synthetic LLaMA-style model with realistic head sparsity,
//! `comet_runtime::sparsity::synthetic_heads`) with dense attention (its KV
//! cache re-opened in every call, the baseline, and its rows opened once) against
//! head-sparse attention (pass `head-sparsify`, rows opened once), both parties and the
//! dealer in this process. A head predictor is calibrated
//! first (`comet calibrate --heads` at `--recall`, 50% head magnitude sparsity). For each
//! context length the cache is filled by a prefill in chunks, then `--steps` greedy
//! decode steps; per step the measured online bytes, rounds, dealer bytes (each checked
//! against the plan's estimate at the opened masks' counts), the wall time, the KV groups
//! active (from the opened masks), and the greedy tokens against the dense plan's.
//!
//! The head-sparse plan's cache products compute the active (token, group) pairs only and
//! open a K/V row when its group is next active: the runs report per decode step the rows
//! opened, the missed rows among them and the miss requests, for the merged refill (the
//! misses travel in the product's round) and the naive one (an exchange per miss request
//! and slot, `RunOptions::naive_refill`), whose extra rounds are measured. The f64
//! model masked by the same predictor on the same tokens gives its own missed rows
//! (`comet_runtime::sparsity::heads`) beside them.

use std::collections::HashMap;
use std::time::Instant;

use clap::Args;
use comet_compiler::inspect::units;
use comet_compiler::passes::head_sparsify::HeadSparsityOptions;
use comet_ir::{ApproxConfig, ApproxProfile, DimEnv, Program};
use comet_runtime::interp::InProcess;
use comet_runtime::protocols::cache_masked::Refill;
use comet_runtime::sparsity::TokenModel;
use comet_runtime::sparsity::calibrate::sampled_sequences;
use comet_runtime::sparsity::heads::{
    HeadMode, attentions, calibrate_heads, capture_heads, greedy_heads,
};
use comet_runtime::sparsity::synthetic_heads::{HeadSyntheticOptions, head_model_weights};
use ndarray::{ArrayD, Axis, IxDyn};
use serde_json::{Value, json};

/// Arguments of `comet bench heads`.
#[derive(Args)]
pub struct BenchHeadsArgs {
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
    /// Target group recall of the head predictor, in (0, 1].
    #[arg(long, value_name = "T", default_value_t = 0.95)]
    recall: f64,
    /// Seed of the calibration samples, the dealer and the input shares.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run on a synthetic LLaMA-style model with realistic head sparsity instead of the
    /// shipped one (`comet_runtime::sparsity::synthetic_heads`: d 256, 8 heads, 4 layers;
    /// each token belongs to `--active` of each layer's 8 groups).
    #[arg(long)]
    synthetic: bool,
    /// With `--synthetic`: the groups per token and layer that matter.
    #[arg(long, value_name = "K", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    active: u64,
    /// Tiny sizes for tests: contexts 4 and 8, chunks of 4, three decode steps.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &BenchHeadsArgs) -> Result<(), String> {
    if !(args.recall > 0.0 && args.recall <= 1.0) {
        return Err(format!("--recall must be in (0, 1], not {}", args.recall));
    }
    let (pasts, chunk, steps) = if args.quick {
        (vec![4, 8], 4, 3)
    } else {
        (args.past.clone(), args.chunk, args.steps)
    };
    let m = bench_model(args)?;
    let (source, name, lowered, base) = (&m.source, &m.name, &m.lowered, &m.weights);
    // the head predictor, calibrated on the f64 model
    let model = TokenModel::new(lowered, base).map_err(|e| e.to_string())?;
    let atts = attentions(&model).map_err(|e| e.to_string())?;
    let (n, len) = if args.quick { (2, 8) } else { (8, 32) };
    let samples = sampled_sequences(&model, n, len, args.seed).map_err(|e| e.to_string())?;
    let cap = capture_heads(&model, &atts, &samples).map_err(|e| e.to_string())?;
    let (pred, reports) =
        calibrate_heads(&atts, &cap, m.head_sparsity, args.recall).map_err(|e| e.to_string())?;
    let density: Vec<f64> = reports.iter().map(|r| 1.0 - r.predicted_sparsity).collect();
    let dense_p = compile(source, name, None, true)?;
    let reopened_p = compile(source, name, None, false)?;
    let heads = HeadSparsityOptions {
        recall: args.recall,
        density,
    };
    let sparse_p = compile(source, name, Some(heads), true)?;
    let dense_w: HashMap<String, ArrayD<f64>> = (dense_p.info.weights.iter())
        .filter_map(|w| Some((w.name.clone(), base.get(&w.name)?.clone())))
        .collect();
    let mut sparse_w = dense_w.clone();
    sparse_w.extend(pred.plan_weights());
    let mut rows = Vec::new();
    for &past in &pasts {
        let run = |p: &Program, w: &HashMap<String, ArrayD<f64>>, naive: bool| {
            decode_after(p, w, past, (chunk, steps), args.seed, naive)
        };
        let reopened = run(&reopened_p, &dense_w, false)?;
        let dense = run(&dense_p, &dense_w, false)?;
        let sparse = run(&sparse_p, &sparse_w, false)?;
        let naive = run(&sparse_p, &sparse_w, true)?;
        // the f64 model masked by the same predictor, on the same prompt: missed rows
        let prompt: Vec<u32> = prompt_ids(&dense_p, past)
            .iter()
            .map(|&t| t as u32)
            .collect();
        let (f64_tokens, stats) = greedy_heads(
            &model,
            &atts,
            std::slice::from_ref(&prompt),
            steps as usize + 1,
            Some(&pred),
            HeadMode::Predicted,
        )
        .map_err(|e| e.to_string())?;
        let decode: Vec<_> = stats.steps.iter().filter(|s| s.tokens == 1).collect();
        let missed =
            decode.iter().map(|s| s.missed_rows).sum::<u64>() as f64 / decode.len().max(1) as f64;
        let requests =
            decode.iter().map(|s| s.miss_requests).sum::<u64>() as f64 / decode.len().max(1) as f64;
        let same = (sparse.tokens.iter().zip(&dense.tokens))
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "past {past}: dense {} / head-sparse {} online per step",
            units::bits_as_bytes(dense.online_bits),
            units::bits_as_bytes(sparse.online_bits)
        );
        rows.push(json!({
            "past": past,
            "reopened": reopened.to_json(),
            "dense": dense.to_json(),
            "heads": sparse.to_json(),
            "heads_naive": naive.to_json(),
            "naive_tokens_equal_to_merged": naive.tokens == sparse.tokens,
            "reopened_tokens_equal_to_dense": (reopened.tokens.iter().zip(&dense.tokens))
                .take_while(|(a, b)| a == b)
                .count(),
            "groups": atts.iter().map(|a| a.kv_heads).sum::<u64>(),
            "sparse_tokens_equal_to_dense": same,
            "tokens": sparse.tokens.len(),
            "f64_masked_tokens_equal_to_two_party":
                f64_tokens[0].iter().map(|&t| u64::from(t)).collect::<Vec<_>>()
                    == sparse.tokens,
            "f64_missed_rows_per_step": missed,
            "f64_miss_requests_per_step": requests,
        }));
    }
    let report = json!({
        "model": m.label,
        "chunk": chunk,
        "steps": steps,
        "recall": args.recall,
        "rows": rows,
    });
    if args.json {
        println!("{report}");
    } else {
        print!("{}", render(&report));
    }
    let exact = rows.iter().all(|r| {
        r["dense"]["measured_is_estimate"] == json!(true)
            && r["reopened"]["measured_is_estimate"] == json!(true)
            && r["heads"]["measured_is_estimate"] == json!(true)
            && r["heads_naive"]["measured_is_estimate"] == json!(true)
    });
    if !exact {
        return Err("a measured cost differs from the plan's estimate".into());
    }
    Ok(())
}

/// The model a bench runs on: its source, path, lowered program, weights, label, and the
/// head magnitude sparsity its predictor is calibrated at.
struct BenchModel {
    source: String,
    name: String,
    lowered: Program,
    weights: HashMap<String, ArrayD<f64>>,
    label: String,
    head_sparsity: f64,
}

/// The shipped model with its trained weights (calibrated at 50% head magnitude
/// sparsity), or with `--synthetic` the synthetic LLaMA-style model at `1 − active/8`.
fn bench_model(args: &BenchHeadsArgs) -> Result<BenchModel, String> {
    let root = crate::demo::root();
    let file = match args.synthetic {
        true => "examples/llama2-7b.model",
        false => "examples/glassllm.model",
    };
    let path = root.join(file);
    let source = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run from the checkout)", path.display()))?;
    let name = path.display().to_string();
    if !args.synthetic {
        let lowered =
            comet_compiler::driver::lower_only(&source, &name).map_err(|e| e.to_string())?;
        let weights_path = root.join("models/glassllm-en/model.safetensors");
        let weights = comet_runtime::weights::load(&weights_path, &lowered.info.weights)
            .map_err(|e| e.to_string())?;
        return Ok(BenchModel {
            source,
            name,
            lowered,
            weights,
            label: "glassllm (trained weights)".into(),
            head_sparsity: 0.5,
        });
    }
    let (d, heads, layers, vocab) = match args.quick {
        true => (64, 8, 2, 64),
        false => (256, 8, 4, 512),
    };
    if args.active > heads {
        return Err(format!(
            "--active must be 1 to {heads}, not {}",
            args.active
        ));
    }
    let dims = [
        ("vocab", vocab),
        ("d", d),
        ("ff", 2 * d),
        ("n_layers", layers),
        ("heads", heads),
        ("kv_heads", heads),
    ];
    let source = crate::calibrate::rewrite_dims(&source, &dims, &name)?;
    let lowered = comet_compiler::driver::lower_only(&source, &name).map_err(|e| e.to_string())?;
    let opts = HeadSyntheticOptions {
        active: args.active as usize,
        seed: args.seed,
    };
    let weights = head_model_weights(&lowered, &opts).map_err(|e| e.to_string())?;
    Ok(BenchModel {
        source,
        name,
        lowered,
        weights,
        label: format!(
            "synthetic LLaMA-style model (d {d}, {heads} heads, {layers} layers, vocab {vocab}, \
             {} of {heads} groups per token and layer)",
            args.active
        ),
        head_sparsity: 1.0 - args.active as f64 / heads as f64,
    })
}

/// The lut plan, head-sparse with `heads`; `cached`: cache rows opened once (else every
/// call re-opens the whole cache, `--kv-openings reopened`).
fn compile(
    source: &str,
    path: &str,
    heads: Option<HeadSparsityOptions>,
    cached: bool,
) -> Result<Program, String> {
    let opts = comet_compiler::Options {
        approx: ApproxConfig::uniform(ApproxProfile::Lut),
        heads,
        cache_openings: cached,
        ..Default::default()
    };
    comet_compiler::compile(source, path, &opts)
        .map(|c| c.program)
        .map_err(|e| format!("{path}: {e}"))
}

/// The decode steps of one plan after `past` cached tokens.
struct DecodeRun {
    /// Per step, averaged: online bits, rounds, dealer bits, wall seconds, active groups.
    online_bits: u64,
    rounds: u64,
    offline_bits: u64,
    seconds: f64,
    active: f64,
    /// Per step, averaged over the attentions' sums: K/V rows opened per product, missed
    /// rows among them, miss requests, the naive refill's extra exchanges, the missed
    /// rows' bits (K and V, both parties).
    refill: [f64; 5],
    measured_is_estimate: bool,
    tokens: Vec<u64>,
}

impl DecodeRun {
    fn to_json(&self) -> Value {
        let [rows, missed, requests, exchanges, bits] = self.refill;
        json!({
            "online_bits_per_step": self.online_bits,
            "rounds_per_step": self.rounds,
            "offline_bits_per_step": self.offline_bits,
            "seconds_per_step": self.seconds,
            "groups_active_per_step": self.active,
            "kv_rows_opened_per_step": rows,
            "kv_missed_rows_per_step": missed,
            "kv_miss_requests_per_step": requests,
            "refill_exchanges_per_step": exchanges,
            "refill_bits_per_step": bits,
            "measured_is_estimate": self.measured_is_estimate,
            "tokens": self.tokens,
        })
    }
}

fn prompt_ids(p: &Program, past: u64) -> Vec<u64> {
    let vocab = (p.info.dims.iter())
        .find(|d| d.name == "vocab")
        .and_then(|d| d.value)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(1);
    (0..past).map(|i| (i * 37 + 11) % vocab).collect()
}

/// Fills the cache with `past` prompt tokens in calls of `chunk`, then runs `steps` greedy
/// decode steps (the refill `naive` or merged); every call's measured cost is compared
/// with the estimate at its opened masks' counts (plus the naive refill's exchanges).
fn decode_after(
    program: &Program,
    weights: &HashMap<String, ArrayD<f64>>,
    past: u64,
    (chunk, steps): (u64, u64),
    seed: u64,
    naive: bool,
) -> Result<DecodeRun, String> {
    let prompt = prompt_ids(program, past);
    let options = comet_runtime::interp::RunOptions {
        naive_refill: naive,
        ..Default::default()
    };
    let mut session = InProcess::new(program, weights, seed).with_options(options);
    let mut exact = true;
    let mut call =
        |ids: &[u64], env: DimEnv| -> Result<(u64, comet_runtime::interp::Measured, f64), String> {
            let start = Instant::now();
            let (out, m) = (session.call(&token_input(ids), env))
                .map_err(|e| format!("seq {}, past {}: {e}", env.seq, env.past))?;
            let seconds = start.elapsed().as_secs_f64();
            let (online, rounds, offline) = crate::generate::estimate_at(program, env, &m);
            let extra = m.kv_total().exchanges;
            exact &= (m.online_bits, m.rounds, m.offline_bits) == (online, rounds + extra, offline);
            Ok((argmax(&last_row(&out)?), m, seconds))
        };
    let mut next = 0;
    for (k, ids) in prompt.chunks(chunk as usize).enumerate() {
        let env = DimEnv {
            seq: ids.len() as u64,
            past: k as u64 * chunk,
        };
        next = call(ids, env)?.0;
    }
    let (mut online, mut rounds, mut offline, mut seconds, mut active) = (0, 0, 0, 0.0, 0);
    let mut refill = Refill::default();
    let mut tokens = Vec::new();
    for s in 0..steps {
        tokens.push(next);
        let env = DimEnv {
            seq: 1,
            past: past + s,
        };
        let (t, m, secs) = call(&[next], env)?;
        next = t;
        online += m.online_bits;
        rounds += m.rounds;
        offline += m.offline_bits;
        seconds += secs;
        active += m.active.iter().sum::<u64>();
        refill = refill.plus(&m.kv_total());
    }
    tokens.push(next);
    Ok(DecodeRun {
        online_bits: online / steps,
        rounds: rounds / steps,
        offline_bits: offline / steps,
        seconds: seconds / steps as f64,
        active: active as f64 / steps as f64,
        refill: [
            refill.rows,
            refill.missed,
            refill.requests,
            refill.exchanges,
            refill.missed_bits,
        ]
        .map(|v| v as f64 / steps as f64),
        measured_is_estimate: exact,
        tokens,
    })
}

fn token_input(ids: &[u64]) -> HashMap<String, ArrayD<f64>> {
    let v = ArrayD::from_shape_vec(IxDyn(&[ids.len()]), ids.iter().map(|t| *t as f64).collect())
        .expect("1-D");
    HashMap::from([("tokens".to_string(), v)])
}

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
        "{}, lut profile (reopened: every call re-opens the KV cache; \
         else rows opened once), in process: per decode \
         step after `past` cached tokens (prefill calls of {} tokens), mean of {} steps; head \
         predictor at group recall {}",
        r["model"].as_str().unwrap_or(""),
        r["chunk"].as_u64().unwrap_or(0),
        r["steps"].as_u64().unwrap_or(0),
        r["recall"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        o,
        "{:>6}  {:<12} {:>11} {:>7} {:>11} {:>10} {:>7}  {:<5} {:>6} {:>6} {:>9} {:>7} {:>6}  {:>8}  {:>10}",
        "past",
        "plan",
        "online",
        "rounds",
        "dealer",
        "time",
        "groups",
        "= est",
        "rows",
        "missed",
        "refill",
        "misses",
        "extra",
        "tokens",
        "f64 missed"
    );
    for row in r["rows"].as_array().into_iter().flatten() {
        let groups = row["groups"].as_u64().unwrap_or(0);
        for (plan, key) in [
            ("reopened", "reopened"),
            ("dense", "dense"),
            ("heads merged", "heads"),
            ("heads naive", "heads_naive"),
        ] {
            let x = &row[key];
            let bits = |k: &str| units::bits_as_bytes(x[k].as_u64().unwrap_or(0));
            let num = |k: &str| format!("{:.1}", x[k].as_f64().unwrap_or(0.0));
            let sparse = key.starts_with("heads");
            let cell = |v: String| if sparse { v } else { String::new() };
            let (tokens, missed) = match sparse {
                true => (
                    format!(
                        "{}/{}",
                        row["sparse_tokens_equal_to_dense"].as_u64().unwrap_or(0),
                        row["tokens"].as_u64().unwrap_or(0)
                    ),
                    format!(
                        "{:.1} rows",
                        row["f64_missed_rows_per_step"].as_f64().unwrap_or(0.0)
                    ),
                ),
                false if key == "reopened" => (
                    format!(
                        "{}/{}",
                        row["reopened_tokens_equal_to_dense"].as_u64().unwrap_or(0),
                        row["tokens"].as_u64().unwrap_or(0)
                    ),
                    String::new(),
                ),
                false => (String::new(), String::new()),
            };
            let active = match sparse {
                true => format!(
                    "{:.1}/{groups}",
                    x["groups_active_per_step"].as_f64().unwrap_or(0.0)
                ),
                false => format!("{groups}/{groups}"),
            };
            let _ = writeln!(
                o,
                "{:>6}  {:<12} {:>11} {:>7} {:>11} {:>7.1} ms {:>7}  {:<5} {:>6} {:>6} {:>9} {:>7} {:>6}  {:>8}  {:>10}",
                row["past"].as_u64().unwrap_or(0),
                plan,
                bits("online_bits_per_step"),
                x["rounds_per_step"].as_u64().unwrap_or(0),
                bits("offline_bits_per_step"),
                x["seconds_per_step"].as_f64().unwrap_or(0.0) * 1e3,
                active,
                if x["measured_is_estimate"] == json!(true) {
                    "yes"
                } else {
                    "NO"
                },
                cell(num("kv_rows_opened_per_step")),
                cell(num("kv_missed_rows_per_step")),
                cell(units::bits_as_bytes(
                    x["refill_bits_per_step"].as_f64().unwrap_or(0.0).round() as u64
                )),
                cell(num("kv_miss_requests_per_step")),
                cell(num("refill_exchanges_per_step")),
                tokens,
                missed
            );
        }
    }
    let _ = writeln!(
        o,
        "(groups: KV groups active per decode step over all layers, from the opened masks; \
         rows: K/V rows each cache product opens per step (its new rows and its missed rows, \
         summed over the layers); missed: rows written while their group was inactive, opened \
         now; refill: their bytes (K and V, both parties, in the online bytes); misses: miss \
         requests (a layer's group with missed rows); extra: rounds the naive refill adds \
         (one per miss request and slot); tokens: the head-sparse (and the reopened) run's \
         greedy tokens equal to the dense run's before the first difference; f64 missed: the \
         rows the f64 model masked by the same predictor misses)"
    );
    o
}
