//! `comet bench sparsity`: dense against block-sparse FFNs in two-party runs on the same
//! model and inputs (COMET.md §5).
//!
//! - **Synthetic OPT** (`--preset opt-125m`, `--layers`): `examples/opt-1.3b.model` with
//!   its dims rewritten to the preset's (vocabulary 512), random weights with clustered
//!   ~90% ReLU sparsity (`comet_runtime::sparsity::synthetic`), a predictor calibrated on
//!   model-independent random samples (`comet calibrate --score sum`). One prefill of
//!   `--prompt` tokens, then `--decode` greedy steps, dense then sparse, both parties in
//!   this process (an in-memory channel: wall time is compute, not network).
//! - **The shipped model** (`models/glassllm-en`, gated SiLU): the same on the first
//!   reference prompt, for predictors calibrated at several target recalls at 90%
//!   magnitude sparsity: the agreement-vs-sparsity curve in two parties.
//!
//! Per run: online and offline bytes, rounds, wall time, projected LAN/WAN latency (rounds
//! × latency + online bytes / bandwidth), the FFN-only figures (the nodes of the FFNs and
//! their predictors, from the cost model at the realised masks, which equals the
//! measurement call by call), and output agreement with the dense run.

use crate::calibrate::{CalibrateArgs, InputArg, Preset, ScoreArg, rewrite_dims};
use clap::Args;
use comet_compiler::inspect::NetProfile;
use comet_compiler::passes::sparsify::parse_spec;
use comet_ir::{ApproxProfile, DimEnv, NodeId, Op, Program};
use comet_runtime::interp::{InProcess, Measured};
use comet_runtime::sparsity::synthetic::{SyntheticOptions, relu_model_weights};
use ndarray::ArrayD;
use rand::{RngExt, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `comet bench sparsity`.
#[derive(Args, Clone, Debug)]
pub struct BenchSparsityArgs {
    /// Layers of the synthetic OPT model (sized like OPT-125M per layer).
    #[arg(long, default_value_t = 4)]
    pub layers: u64,
    /// Prompt tokens of the prefill.
    #[arg(long, default_value_t = 16)]
    pub prompt: usize,
    /// Greedy decode steps after the prefill.
    #[arg(long, default_value_t = 4)]
    pub decode: usize,
    /// Neurons per block.
    #[arg(long, default_value_t = 16)]
    pub block: u64,
    /// Predictor rank for the synthetic model (at least its 48 clusters per FFN).
    #[arg(long, default_value_t = 64)]
    pub rank: u64,
    /// Target block recall for the synthetic model.
    #[arg(long, default_value_t = 0.95)]
    pub recall: f64,
    /// What the synthetic model's predictor reads: `attention` (trained by least squares
    /// on the layer input after the pre-attention norm, 0 added rounds) or `ffn` (the SVD
    /// predictor on the FFN's input, 2 added rounds per FFN).
    #[arg(long, value_enum, default_value = "attention")]
    pub input: InputArg,
    /// Tiny sizes for tests (d 64, ff 256, 2 layers, prompt 4, 2 decode steps).
    #[arg(long)]
    pub quick: bool,
    /// Skip the shipped model's curve.
    #[arg(long)]
    pub no_glassllm: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One model run for two parties: per call, what it cost and the last logits.
struct RunResult {
    /// Per call: its size, costs, and wall seconds without the session's setup.
    calls: Vec<(DimEnv, Measured, f64)>,
    /// Wall seconds of the session's setup (in the first call: shuffles, fixed operands).
    setup_seconds: f64,
    tokens: Vec<u64>,
    first_logits: Vec<f64>,
    ffn: Totals,
}

/// FFN-only figures summed over the calls.
#[derive(Default, Clone, Copy)]
struct Totals {
    online_bits: f64,
    offline_bits: f64,
}

/// Runs the command.
pub fn run(args: &BenchSparsityArgs) -> Result<(), String> {
    let tmp = std::env::temp_dir().join(format!("comet-bench-sparsity-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let mut out = String::new();
    let mut json = Vec::new();
    let (text, j) = synthetic(args, &tmp)?;
    out.push_str(&text);
    json.push(j);
    if !args.no_glassllm {
        let (text, j) = glassllm(args, &tmp)?;
        out.push_str(&text);
        json.push(j);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if args.json {
        println!("{}", serde_json::Value::Array(json));
    } else {
        print!("{out}");
    }
    Ok(())
}

/// The synthetic OPT comparison.
fn synthetic(args: &BenchSparsityArgs, tmp: &Path) -> Result<(String, serde_json::Value), String> {
    let path = PathBuf::from("examples/opt-1.3b.model");
    let source = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read model `{}`: {e}", path.display()))?;
    let (d, heads, ff, layers, prompt, decode) = match args.quick {
        true => (64, 4, 256, 2, 4, 2),
        false => (768, 12, 3072, args.layers, args.prompt, args.decode),
    };
    let dims = [
        ("vocab", 512),
        ("d", d),
        ("heads", heads),
        ("ff", ff),
        ("n_layers", layers),
        ("max_pos", 256),
    ];
    let source = rewrite_dims(&source, &dims, &path.display().to_string())?;
    let lowered =
        comet_compiler::driver::lower_only(&source, "opt-synthetic").map_err(|e| e.to_string())?;
    let seed = 1;
    let weights = relu_model_weights(
        &lowered,
        &SyntheticOptions {
            seed,
            ..SyntheticOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let pred = tmp.join("opt.pred");
    let rank = if args.quick { 16 } else { args.rank };
    let train = args.input == InputArg::Attention;
    let cal = calibrate(
        &path,
        None,
        Some((layers, args.quick)),
        args,
        (!train).then_some(rank),
        args.recall,
        0.9,
        &pred,
    )?;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let ids: Vec<u64> = (0..prompt).map(|_| rng.random_range(0..512)).collect();
    let label = format!("synthetic OPT (d {d}, ff {ff}, {layers} layers, ReLU, ~90% sparse)");
    eprintln!("bench sparsity: {label}: dense run");
    // `comet compile`'s default profile (the ReLU FFN has no table)
    let dense_p = compile_plan(&source, "off", &weights, ApproxProfile::Lut)?;
    let dense = run_model(&dense_p, &weights, &ids, decode)?;
    eprintln!("bench sparsity: {label}: sparse run");
    let spec = match train {
        true => format!("ffn:block={},input=attention", args.block),
        false => format!("ffn:block={},rank={rank}", args.block),
    };
    let sparse_p = compile_plan(&source, &spec, &weights, ApproxProfile::Lut)?;
    let mut w = weights.clone();
    w.extend(
        comet_runtime::sparsity::plan::plan_weights(&pred, &sparse_p).map_err(|e| e.to_string())?,
    );
    let sparse = run_model(&sparse_p, &w, &ids, decode)?;
    let mut text = format!("{label}: prefill {prompt} tokens, then {decode} decode steps\n");
    text.push_str(&cal);
    let (table, j) = compare(&label, &dense, &sparse, &sparse_p);
    text.push_str(&table);
    Ok((text, j))
}

/// The shipped model's agreement-vs-sparsity curve in two parties.
fn glassllm(args: &BenchSparsityArgs, tmp: &Path) -> Result<(String, serde_json::Value), String> {
    let model = PathBuf::from("examples/glassllm.model");
    let wpath = PathBuf::from("models/glassllm-en/model.safetensors");
    let source = std::fs::read_to_string(&model).map_err(|e| e.to_string())?;
    let lowered =
        comet_compiler::driver::lower_only(&source, "glassllm").map_err(|e| e.to_string())?;
    let weights = crate::run::load_weights(&lowered, Some(&wpath), None)?.unwrap_or_default();
    // the exact profile: `lut`'s SiLU (a three-threshold comparison) does not run in a
    // masked region yet, so its FFNs would stay dense
    let dense_p = compile_plan(&source, "off", &weights, ApproxProfile::Exact)?;
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("models/glassllm-en/reference-greedy.json")
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let case = &reference["cases"][0];
    let ids: Vec<u64> = (case["prompt_ids"].as_array().into_iter().flatten())
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let want: Vec<u64> = (case["greedy_ids"].as_array().into_iter().flatten())
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let decode = if args.quick { 2 } else { 8 };
    eprintln!("bench sparsity: glassllm: dense run");
    let dense = run_model(&dense_p, &weights, &ids, decode)?;
    let spec = format!("ffn:block={}", args.block);
    let sparse_p = compile_plan(&source, &spec, &weights, ApproxProfile::Exact)?;
    let mut text = format!(
        "\nglassllm (gated SiLU, 4 layers, ff 341): reference prompt 0, {} tokens, 90% magnitude sparsity\n",
        decode + 1
    );
    let _ = writeln!(
        text,
        "{:>7} {:>9} {:>10} {:>10} {:>8} {:>9} {:>11}",
        "recall", "skipped", "online", "vs dense", "rounds", "agree", "logits err"
    );
    let mut rows = Vec::new();
    let recalls: &[f64] = if args.quick {
        &[1.0]
    } else {
        &[0.9, 0.95, 0.99, 1.0]
    };
    for &recall in recalls {
        let pred = tmp.join(format!("glass-{recall}.pred"));
        calibrate(
            &model,
            Some(&wpath),
            None,
            args,
            Some(32),
            recall,
            0.9,
            &pred,
        )?;
        let mut w = weights.clone();
        w.extend(
            comet_runtime::sparsity::plan::plan_weights(&pred, &sparse_p)
                .map_err(|e| e.to_string())?,
        );
        eprintln!("bench sparsity: glassllm: sparse run at recall {recall}");
        let s = run_model(&sparse_p, &w, &ids, decode)?;
        let skipped = skipped(&sparse_p, &s);
        let agree = prefix_agreement(&s.tokens, &want);
        let err = max_abs(&s.first_logits, &dense.first_logits);
        let (on_s, on_d) = (online(&s), online(&dense));
        let _ = writeln!(
            text,
            "{recall:>7} {:>8.1}% {:>10} {:>9.2}× {:>8} {:>6}/{:<2} {:>11.2e}",
            100.0 * skipped,
            crate::report::bytes(on_s as u64),
            on_d / on_s.max(1.0),
            s.calls.iter().map(|c| c.1.rounds).sum::<u64>(),
            agree,
            s.tokens.len(),
            err
        );
        rows.push(serde_json::json!({"recall": recall, "skipped": skipped, "online_bits": on_s,
            "online_ratio": on_d / on_s.max(1.0), "agree": agree, "tokens": s.tokens.len(), "logits_err": err}));
    }
    let _ = writeln!(
        text,
        "dense: {} online, tokens equal to the reference: {}/{}",
        crate::report::bytes(online(&dense) as u64),
        prefix_agreement(&dense.tokens, &want),
        dense.tokens.len()
    );
    Ok((
        text,
        serde_json::json!({"model": "glassllm", "curve": rows}),
    ))
}

/// Calibrates a sum-scored predictor into `out`: the SVD one of `rank` on the FFN's
/// input, or without a rank one trained on the attention input; returns the per-layer
/// table.
#[allow(clippy::too_many_arguments)]
fn calibrate(
    model: &Path,
    weights: Option<&Path>,
    synthetic: Option<(u64, bool)>,
    args: &BenchSparsityArgs,
    rank: Option<u64>,
    recall: f64,
    sparsity: f64,
    out: &Path,
) -> Result<String, String> {
    let quick = synthetic.is_some_and(|s| s.1);
    let c = CalibrateArgs {
        model: model.to_path_buf(),
        weights: weights.map(Path::to_path_buf),
        synthetic: synthetic.map(|_| if quick { Preset::Tiny } else { Preset::Opt125m }),
        layers: synthetic.map(|s| s.0),
        block: Some(args.block),
        rank,
        score: Some(ScoreArg::Sum),
        predictor: None,
        train: rank.is_none(),
        input: None,
        train_samples: if quick { 8 } else { 64 },
        recall,
        sparsity,
        samples: if quick { 2 } else { 8 },
        sample_len: if quick { 8 } else { 32 },
        prompts: None,
        out: Some(out.to_path_buf()),
        curve: false,
        eval: None,
        steps: None,
        seed: 1,
        heads: false,
        head_sparsity: 0.5,
    };
    crate::calibrate::report(&c)
}

fn compile_plan(
    source: &str,
    spec: &str,
    weights: &Weights,
    approx: ApproxProfile,
) -> Result<Program, String> {
    let opts = comet_compiler::Options {
        sparsity: parse_spec(spec)?,
        // the checkpoint's statistics (`comet compile --weights`: the server compiles with
        // its checkpoint), so both plans get the widths their ranges prove
        weight_stats: Some(comet_runtime::weights::stats::declared_map(weights)),
        approx: comet_ir::ApproxConfig::uniform(approx),
        ..Default::default()
    };
    comet_compiler::compile(source, "bench.model", &opts)
        .map(|c| c.program)
        .map_err(|e| e.to_string())
}

/// A plan's weights by name.
type Weights = HashMap<String, ArrayD<f64>>;

/// Prefill then greedy decode for two parties in one process.
fn run_model(
    p: &Program,
    weights: &HashMap<String, ArrayD<f64>>,
    prompt: &[u64],
    decode: usize,
) -> Result<RunResult, String> {
    let mut session = InProcess::new(p, weights, 3);
    let ffn_nodes = ffn_nodes(p);
    let mut r = RunResult {
        calls: Vec::new(),
        setup_seconds: 0.0,
        tokens: Vec::new(),
        first_logits: Vec::new(),
        ffn: Totals::default(),
    };
    let (mut ids, mut past) = (prompt.to_vec(), 0u64);
    for _ in 0..=decode {
        let env = DimEnv {
            seq: ids.len() as u64,
            past,
        };
        let x = ArrayD::from_shape_vec(vec![ids.len()], ids.iter().map(|&i| i as f64).collect())
            .expect("a vector");
        let start = Instant::now();
        let (out, m) = session
            .call(&HashMap::from([("tokens".to_string(), x)]), env)
            .map_err(|e| e.to_string())?;
        let estimated = crate::generate::estimate_at(p, env, &m);
        if (m.online_bits, m.rounds, m.offline_bits) != estimated {
            return Err(format!(
                "call (seq {}, past {}): measured (online bits, rounds, dealer bits) {:?} \
                 differ from the estimate {estimated:?}",
                env.seq,
                env.past,
                (m.online_bits, m.rounds, m.offline_bits)
            ));
        }
        let setup = (session.states().iter())
            .map(|s| s.last_setup_seconds)
            .fold(0.0, f64::max);
        r.setup_seconds += setup;
        let seconds = (start.elapsed().as_secs_f64() - setup).max(0.0);
        let logits = out
            .get("logits")
            .ok_or("the model has no `logits` output")?;
        let rows = logits.shape()[0];
        let last: Vec<f64> = logits
            .index_axis(ndarray::Axis(0), rows - 1)
            .iter()
            .copied()
            .collect();
        if r.first_logits.is_empty() {
            r.first_logits = last.clone();
        }
        let next = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as u64;
        r.tokens.push(next);
        add_ffn(&mut r.ffn, p, &ffn_nodes, env, &m);
        r.calls.push((env, m, seconds));
        past += ids.len() as u64;
        ids = vec![next];
    }
    Ok(r)
}

/// The FFN nodes of a plan: every node between an FFN's input and its down projection
/// (the predictor included), found from the down projections (products whose right
/// operand derives from a weight whose name is an FFN's down projection).
fn ffn_nodes(p: &Program) -> HashSet<NodeId> {
    let source = p.graph.ids();
    let mut nodes = HashSet::new();
    for id in source {
        let is_down = match p.graph.node(id).op {
            Op::BlockMatMul { .. } => true,
            // the examples name the down projection `w2` (OPT's fc2, glassllm's W2)
            Op::MatMul => {
                weight_name(p, p.graph.operands(id)[1]).is_some_and(|n| n.ends_with(".w2"))
            }
            _ => false,
        };
        if is_down {
            nodes.extend(region(p, id));
        }
    }
    nodes
}

/// Ancestors of `down` that are not ancestors of its FFN's input (the norm before it).
fn region(p: &Program, down: NodeId) -> HashSet<NodeId> {
    let mut seen = HashSet::new();
    let mut stack = vec![down];
    while let Some(n) = stack.pop() {
        let op = &p.graph.node(n).op;
        let stop = matches!(op, Op::Weight { .. } | Op::Share { .. }) || is_norm_output(p, n);
        if stop || !seen.insert(n) {
            continue;
        }
        stack.extend(p.graph.operands(n));
    }
    seen
}

/// Whether `n` is the last node of a norm (the FFN's input): its scope origin is a norm
/// and one of its users is not.
fn is_norm_output(p: &Program, n: NodeId) -> bool {
    let norm = |id: NodeId| {
        let o = &p.graph.node(id).scope.origin;
        o == "layer_norm" || o == "rms_norm"
    };
    norm(n) && p.graph.users(n).iter().any(|&u| !norm(u))
}

/// The weight a (shared, permuted) operand derives from.
fn weight_name(p: &Program, mut id: NodeId) -> Option<String> {
    loop {
        match &p.graph.node(id).op {
            Op::Weight { name } => return Some(name.clone()),
            Op::Share { .. } | Op::BlockPermute { .. } | Op::Transpose => {
                id = p.graph.operands(id)[0];
            }
            _ => return None,
        }
    }
}

fn add_ffn(t: &mut Totals, p: &Program, nodes: &HashSet<NodeId>, env: DimEnv, m: &Measured) {
    let costs = p.analyses.costs.as_ref().expect("a compiled plan");
    for id in nodes {
        if let Some(c) = costs.get(*id) {
            t.online_bits += c.online_at(env, m);
            t.offline_bits += c.offline_bits.eval(env) as f64;
        }
    }
}

fn online(r: &RunResult) -> f64 {
    r.calls.iter().map(|c| c.1.online_bits as f64).sum()
}

/// The fraction of (token, block) pairs the masks skipped.
fn skipped(p: &Program, r: &RunResult) -> f64 {
    let s = p.options.sparsity.as_ref().expect("a sparse plan");
    let (mut active, mut all) = (0u64, 0u64);
    for (env, m, _) in &r.calls {
        active += m.active.iter().sum::<u64>();
        all += s.ffns.iter().map(|f| f.blocks * env.seq).sum::<u64>();
    }
    1.0 - active as f64 / all.max(1) as f64
}

fn prefix_agreement(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The dense/sparse table and its JSON.
fn compare(label: &str, d: &RunResult, s: &RunResult, sp: &Program) -> (String, serde_json::Value) {
    let sum =
        |r: &RunResult, f: &dyn Fn(&Measured) -> u64| r.calls.iter().map(|c| f(&c.1)).sum::<u64>();
    let secs = |r: &RunResult| r.calls.iter().map(|c| c.2).sum::<f64>();
    let first = |r: &RunResult| r.calls[0].2;
    let decode = |r: &RunResult| secs(r) - first(r);
    let (lan, wan) = (NetProfile::lan(), NetProfile::wan());
    let lat = |net: &NetProfile, r: &RunResult| {
        net.rounds_s(sum(r, &|m| m.rounds)) + net.transfer_s(sum(r, &|m| m.online_bits))
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<26} {:>12} {:>12} {:>8}",
        "", "dense", "sparse", "ratio"
    );
    let mut row = |name: &str, dv: f64, sv: f64, fmt: &dyn Fn(f64) -> String| {
        let _ = writeln!(
            t,
            "{name:<26} {:>12} {:>12} {:>7.2}×",
            fmt(dv),
            fmt(sv),
            dv / sv.max(1e-12)
        );
    };
    let b = |v: f64| crate::report::bytes(v as u64);
    let n = |v: f64| format!("{v:.0}");
    let sec = |v: f64| format!("{v:.2} s");
    row(
        "online (all calls)",
        sum(d, &|m| m.online_bits) as f64,
        sum(s, &|m| m.online_bits) as f64,
        &b,
    );
    row(
        "offline (dealer)",
        sum(d, &|m| m.offline_bits) as f64,
        sum(s, &|m| m.offline_bits) as f64,
        &b,
    );
    row(
        "rounds",
        sum(d, &|m| m.rounds) as f64,
        sum(s, &|m| m.rounds) as f64,
        &n,
    );
    row("time: setup (once)", d.setup_seconds, s.setup_seconds, &sec);
    row("time: prefill", first(d), first(s), &sec);
    row("time: decode steps", decode(d), decode(s), &sec);
    row("time: all calls", secs(d), secs(s), &sec);
    row("projected LAN latency", lat(&lan, d), lat(&lan, s), &sec);
    row("projected WAN latency", lat(&wan, d), lat(&wan, s), &sec);
    row("FFN-only online", d.ffn.online_bits, s.ffn.online_bits, &b);
    row(
        "FFN-only offline",
        d.ffn.offline_bits,
        s.ffn.offline_bits,
        &b,
    );
    let agree = prefix_agreement(&s.tokens, &d.tokens);
    let err = max_abs(&s.first_logits, &d.first_logits);
    let skipped = skipped(sp, s);
    let _ = writeln!(
        t,
        "blocks skipped {:.1}%; greedy tokens equal to dense: {agree}/{}; prefill logits max |Δ| {err:.2e}; setup: dense {} / sparse {} online, sparse dealer {} (shuffles)",
        100.0 * skipped,
        d.tokens.len(),
        b(d.calls[0].1.setup_bits as f64),
        b(s.calls[0].1.setup_bits as f64),
        b(s.calls[0].1.setup_offline_bits as f64),
    );
    let j = serde_json::json!({
        "model": label,
        "dense": {"online_bits": sum(d, &|m| m.online_bits), "offline_bits": sum(d, &|m| m.offline_bits),
                  "rounds": sum(d, &|m| m.rounds), "seconds": secs(d), "setup_seconds": d.setup_seconds, "lan_s": lat(&lan, d), "wan_s": lat(&wan, d),
                  "ffn_online_bits": d.ffn.online_bits, "ffn_offline_bits": d.ffn.offline_bits, "tokens": d.tokens},
        "sparse": {"online_bits": sum(s, &|m| m.online_bits), "offline_bits": sum(s, &|m| m.offline_bits),
                   "rounds": sum(s, &|m| m.rounds), "seconds": secs(s), "setup_seconds": s.setup_seconds, "lan_s": lat(&lan, s), "wan_s": lat(&wan, s),
                   "ffn_online_bits": s.ffn.online_bits, "ffn_offline_bits": s.ffn.offline_bits, "tokens": s.tokens,
                   "skipped": skipped, "setup_offline_bits": s.calls[0].1.setup_offline_bits},
        "agree": agree, "logits_err": err,
    });
    (t, j)
}
