//! `comet calibrate MODEL (--weights FILE | --synthetic PRESET)`: derive a sparsity
//! predictor for every FFN of a model (rank-r SVD of its activation-side projection, or a
//! predictor file), choose each layer's block threshold on sample inputs to reach a target
//! block recall, print per layer the recall, the predicted and the true sparsity, and
//! optionally the agreement-vs-sparsity curve; write the predictor file.
//!
//! Definitions: `comet_runtime::sparsity` (module docs). The model runs in f64 on its
//! semantic-stage program (after `lower`).
//!
//! - **Samples** (`--samples N --sample-len L`, default 8 × 32): with `--weights`,
//!   sequences written by the model itself (a random first token, then tokens sampled
//!   from its softmax, seeded by `--seed`); with `--synthetic`, uniformly random ids. Or
//!   `--prompts FILE`: one sequence of token ids per line (spaces or commas; `#` comments).
//! - **Evaluation prompts** of the curve (`--eval FILE`): a reference JSON like
//!   `reference-greedy.json` (its `cases[].prompt_ids`; `greedy_ids` sets the steps), or a
//!   token-id file; by default `reference-greedy.json` beside the weights if present,
//!   else 3 random prompts of 8 tokens. The dense f64 model's greedy continuation
//!   (`--steps`, default 16) is the reference the masked runs are compared with.
//! - **Synthetic** models (`--synthetic opt-125m|opt-350m|opt-1.3b`, ReLU FFN models such
//!   as `examples/opt-1.3b.model`): the model's dims are rewritten to the preset's (the
//!   vocabulary is 512 and the position table 256 + 2 rows, to save memory; `--layers`
//!   keeps fewer layers) and its weights are random with clustered ~90% FFN sparsity
//!   (`comet_runtime::sparsity::synthetic`).

use clap::{Args, ValueEnum};
use comet_compiler::CompileError;
use comet_compiler::driver::lower_only;
use comet_ir::Program;
use comet_ir::ffn::PredictorInput;
use comet_runtime::sparsity::calibrate::{
    Agreement, EvalSet, MaskMode, random_sequences, sampled_sequences,
};
use comet_runtime::sparsity::svd::SvdOptions;
use comet_runtime::sparsity::synthetic::{SyntheticOptions, relu_model_weights};
use comet_runtime::sparsity::train::{TrainOptions, train};
use comet_runtime::sparsity::{
    Activity, Calibration, LayerReport, Predictor, PredictorOptions, Score, TokenModel, Weights,
    capture, n_blocks,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `comet calibrate`.
#[derive(Args, Debug, Clone)]
pub struct CalibrateArgs {
    /// The `.model` file.
    pub model: PathBuf,
    /// The checkpoint (safetensors).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    pub weights: Option<PathBuf>,
    /// Random weights with realistic ReLU sparsity, the model's dims rewritten to a size
    /// like OPT-125M, OPT-350M or OPT-1.3B (vocabulary 512, 256 positions).
    #[arg(long, value_enum, value_name = "PRESET")]
    pub synthetic: Option<Preset>,
    /// With `--synthetic`: keep only this many layers.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub layers: Option<u64>,
    /// Neurons per block [default: 16].
    #[arg(long, value_name = "B", conflicts_with = "predictor",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub block: Option<u64>,
    /// Rank of the SVD predictor [default: 32].
    #[arg(long, value_name = "R", conflicts_with = "predictor",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rank: Option<u64>,
    /// Block score: `max` (max of the approximate pre-activations) or `max-abs`
    /// [default: max].
    #[arg(long, value_enum, conflicts_with = "predictor")]
    pub score: Option<ScoreArg>,
    /// Use the factors of this predictor file instead of the SVD (thresholds are
    /// calibrated again).
    #[arg(long, value_name = "FILE")]
    pub predictor: Option<PathBuf>,
    /// Train the predictors by ridge least squares on sampled activations instead of the
    /// SVD (`comet_runtime::sparsity::train`); they score blocks by their sum.
    #[arg(long, conflicts_with_all = ["predictor", "rank"])]
    pub train: bool,
    /// What the predictors read: `attention` (the layer input after the pre-attention
    /// norm: 0 added rounds in two parties; needs --train) or `ffn` (the FFN's input)
    /// [default: attention with --train, else ffn].
    #[arg(long, value_enum, conflicts_with = "predictor")]
    pub input: Option<InputArg>,
    /// With --train: training sequences (of --sample-len tokens; random or model-written
    /// like the calibration samples, seeded by --seed + 1).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub train_samples: u64,
    /// Target block recall on the samples, in (0, 1].
    #[arg(long, value_name = "T", default_value_t = 0.95)]
    pub recall: f64,
    /// For GeLU/SiLU FFNs: the neuron (magnitude) sparsity that defines active neurons,
    /// in [0, 1). ReLU FFNs use exact zeros.
    #[arg(long, value_name = "S", default_value_t = 0.9)]
    pub sparsity: f64,
    /// Number of sample sequences.
    #[arg(long, value_name = "N", default_value_t = 8, conflicts_with = "prompts",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: u64,
    /// Tokens per sample sequence.
    #[arg(long, value_name = "L", default_value_t = 32, conflicts_with = "prompts",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_len: u64,
    /// Sample sequences: one line of token ids each.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Write the calibrated predictor (safetensors) here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also measure output agreement against sparsity (masked f64 runs).
    #[arg(long)]
    pub curve: bool,
    /// Evaluation prompts of the curve (reference JSON or token-id lines).
    #[arg(long, value_name = "FILE")]
    pub eval: Option<PathBuf>,
    /// Greedy tokens per evaluation prompt (a reference JSON sets it).
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: Option<u64>,
    /// Seed of the samples, the SVD sketch and the synthetic weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Calibrate the head predictor instead (attention KV groups; `--recall` is the
    /// target group recall): per-layer head recall and sparsity, and with `--curve` the
    /// greedy tokens and KV misses per recall (src/calibrate_heads.rs).
    #[arg(long)]
    pub heads: bool,
    /// With `--heads`: the head magnitude sparsity that defines active KV groups, in
    /// [0, 1).
    #[arg(long, value_name = "S", default_value_t = 0.5, requires = "heads")]
    pub head_sparsity: f64,
}

/// Sizes of synthetic models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// d 768, 12 heads, ff 3072, 12 layers.
    #[value(name = "opt-125m")]
    Opt125m,
    /// d 1024, 16 heads, ff 4096, 24 layers.
    #[value(name = "opt-350m")]
    Opt350m,
    /// d 2048, 32 heads, ff 8192, 24 layers (about 9.7 GB of f64 weights: use --layers).
    #[value(name = "opt-1.3b")]
    Opt1_3b,
    /// d 64, 4 heads, ff 256, 2 layers (for tests).
    #[value(name = "tiny")]
    Tiny,
}

impl Preset {
    /// (d, heads, ff, layers).
    fn dims(self) -> (u64, u64, u64, u64) {
        match self {
            Preset::Opt125m => (768, 12, 3072, 12),
            Preset::Opt350m => (1024, 16, 4096, 24),
            Preset::Opt1_3b => (2048, 32, 8192, 24),
            Preset::Tiny => (64, 4, 256, 2),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Preset::Opt125m => "opt-125m",
            Preset::Opt350m => "opt-350m",
            Preset::Opt1_3b => "opt-1.3b",
            Preset::Tiny => "tiny",
        }
    }
}

/// `--score`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScoreArg {
    /// max z over the block.
    Max,
    /// max |z| over the block.
    MaxAbs,
    /// Σ z over the block (linear: what the two-party predictor computes).
    Sum,
}

/// `--input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputArg {
    /// The FFN's own input.
    Ffn,
    /// The layer input after the pre-attention norm.
    Attention,
}

/// Vocabulary and position rows of synthetic models.
const SYNTHETIC_VOCAB: u64 = 512;
const SYNTHETIC_POSITIONS: u64 = 256;

/// Recall targets of the curve.
const RECALLS: [f64; 7] = [0.80, 0.85, 0.90, 0.95, 0.97, 0.99, 1.0];
/// Neuron sparsities of the magnitude curve.
const SPARSITIES: [f64; 7] = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// Runs the command: prints the report to standard output.
pub fn run(args: &CalibrateArgs) -> Result<(), String> {
    print!("{}", report(args)?);
    Ok(())
}

/// Everything `run` prints.
pub fn report(args: &CalibrateArgs) -> Result<String, String> {
    check_args(args)?;
    let program = load_program(args)?;
    let weights = load_weights(args, &program)?;
    let model = TokenModel::new(&program, &weights).map_err(|e| e.to_string())?;
    if args.heads {
        return crate::calibrate_heads::report(args, &model);
    }
    let mut out = String::new();
    let f0 = &model.ffns[0];
    let func = f0.func;
    let activity = Activity::for_activation(func, args.sparsity);
    let (mut predictor, trained) = if args.train {
        let (p, text) = trained(args, &model)?;
        (p, Some(text))
    } else {
        (predictor(args, &program, &model, &weights)?, None)
    };
    let _ = writeln!(
        out,
        "model `{}`: {} FFNs ({}{}, d {}, ff {}), blocks of {} ({} per FFN), rank {}, score {}",
        program.info.name,
        model.ffns.len(),
        if f0.is_gated() { "gated " } else { "" },
        func.name(),
        f0.d,
        f0.ff,
        predictor.block,
        n_blocks(f0.ff as usize, predictor.block),
        predictor.rank,
        predictor.score.name(),
    );
    let _ = writeln!(
        out,
        "predictor input: {}",
        match predictor.input {
            PredictorInput::Ffn => "the FFN's input (2 added rounds per FFN in two parties)",
            PredictorInput::Attention =>
                "the layer input after the pre-attention norm (beside attention: 0 added rounds)",
        }
    );
    if let Some(text) = trained {
        out.push_str(&text);
    }
    if let Some(p) = args.synthetic {
        let _ = writeln!(
            out,
            "weights: synthetic, sized like {} (vocabulary {SYNTHETIC_VOCAB}, {} positions, \
             {} layers), seed {}: clustered ReLU sparsity (comet_runtime::sparsity::synthetic)",
            p.name(),
            SYNTHETIC_POSITIONS,
            model.ffns.len(),
            args.seed
        );
    }
    let (samples, how) = samples(args, &model)?;
    let tokens: usize = samples.iter().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "calibration: {} sequences, {tokens} tokens ({how}); active neuron: {}",
        samples.len(),
        activity_text(activity)
    );
    let captured = capture(&model, &samples).map_err(|e| e.to_string())?;
    let cal = Calibration::new(&model, &predictor, &captured).map_err(|e| e.to_string())?;
    let reports = cal
        .solve(activity, args.recall)
        .map_err(|e| e.to_string())?;
    Calibration::apply(&mut predictor, &reports, activity, args.recall);
    let _ = writeln!(out, "\nper layer, target block recall {}:", args.recall);
    out.push_str(&layer_table(&reports));
    if let Some(path) = &args.out {
        predictor
            .save(path, &model.ffns)
            .map_err(|e| e.to_string())?;
        let _ = writeln!(out, "\nwrote {}", path.display());
    }
    if args.curve {
        out.push('\n');
        out.push_str(&curve(args, &model, &predictor, &cal, activity)?);
    }
    Ok(out)
}

fn check_args(args: &CalibrateArgs) -> Result<(), String> {
    if args.input == Some(InputArg::Attention) && !args.train {
        return Err(
            "--input attention needs --train: the SVD predictor approximates x·W_act for the \
             FFN's own input x"
                .into(),
        );
    }
    if args.train && matches!(args.score, Some(ScoreArg::Max | ScoreArg::MaxAbs)) {
        return Err("--train fits block sums: use --score sum (or leave --score out)".into());
    }
    if args.layers.is_some() && args.synthetic.is_none() {
        return Err("--layers applies to --synthetic models only".into());
    }
    if !(args.recall > 0.0 && args.recall <= 1.0) {
        return Err(format!("--recall must be in (0, 1], not {}", args.recall));
    }
    if !(0.0..1.0).contains(&args.sparsity) {
        return Err(format!(
            "--sparsity must be in [0, 1), not {}",
            args.sparsity
        ));
    }
    Ok(())
}

fn activity_text(a: Activity) -> String {
    match a {
        Activity::Nonzero => "hidden > 0 (ReLU)".into(),
        Activity::Magnitude(s) => format!(
            "|hidden| > τ, τ per layer the {:.0}% quantile of |hidden| on the samples",
            100.0 * s
        ),
    }
}

fn compile_error(e: CompileError) -> String {
    match e {
        CompileError::Source(d) => format!("{:?}", miette::Report::new(*d)),
        other => other.to_string(),
    }
}

/// The semantic-stage program (dims rewritten for `--synthetic`).
fn load_program(args: &CalibrateArgs) -> Result<Program, String> {
    let path = &args.model;
    let source = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read model `{}`: {e}", path.display()))?;
    let source = match args.synthetic {
        None => source,
        Some(p) => {
            let (d, heads, ff, layers) = p.dims();
            let layers = args.layers.unwrap_or(layers);
            let dims = [
                ("vocab", SYNTHETIC_VOCAB),
                ("d", d),
                ("heads", heads),
                ("ff", ff),
                ("n_layers", layers),
                ("max_pos", SYNTHETIC_POSITIONS),
            ];
            rewrite_dims(&source, &dims, &path.display().to_string())?
        }
    };
    lower_only(&source, &path.display().to_string()).map_err(compile_error)
}

/// `source` with the values of the `dims` it declares replaced (`dim a = 1, b = 2;` lines);
/// `vocab`, `d`, `ff` and `n_layers` must be declared.
pub fn rewrite_dims(source: &str, dims: &[(&str, u64)], path: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut seen = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        if !code.trim_start().starts_with("dim ") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let body = code.trim_start()["dim ".len()..]
            .trim_end()
            .trim_end_matches(';');
        let items: Vec<String> = body
            .split(',')
            .map(|item| {
                let name = item.split('=').next().unwrap_or("").trim();
                match dims.iter().find(|(n, _)| *n == name) {
                    Some((n, v)) if item.contains('=') => {
                        seen.push(*n);
                        format!("{n} = {v}")
                    }
                    _ => item.trim().to_string(),
                }
            })
            .collect();
        out.push_str(&format!("  dim {};\n", items.join(", ")));
    }
    for need in ["vocab", "d", "ff", "n_layers"] {
        if !seen.contains(&need) {
            return Err(format!(
                "--synthetic rewrites the dims vocab, d, heads, ff, n_layers and max_pos of \
                 the model; `{path}` declares no `dim {need} = …`"
            ));
        }
    }
    Ok(out)
}

fn load_weights(args: &CalibrateArgs, program: &Program) -> Result<Weights, String> {
    match (&args.weights, args.synthetic) {
        (Some(path), _) => {
            comet_runtime::weights::load(path, &program.info.weights).map_err(|e| e.to_string())
        }
        (None, Some(_)) => {
            let opts = SyntheticOptions {
                seed: args.seed,
                ..SyntheticOptions::default()
            };
            relu_model_weights(program, &opts).map_err(|e| format!("--synthetic: {e}"))
        }
        (None, None) => Err("give --weights FILE or --synthetic PRESET".into()),
    }
}

fn predictor(
    args: &CalibrateArgs,
    program: &Program,
    model: &TokenModel,
    weights: &Weights,
) -> Result<Predictor, String> {
    if let Some(path) = &args.predictor {
        return Predictor::load(path, &program.info.name, &model.ffns).map_err(|e| e.to_string());
    }
    let func = model.ffns[0].func;
    let opts = PredictorOptions {
        block: args.block.unwrap_or(16) as usize,
        rank: args.rank.unwrap_or(32) as usize,
        score: match args.score {
            None => Score::for_activation(func),
            Some(ScoreArg::Max) => Score::Max,
            Some(ScoreArg::MaxAbs) => Score::MaxAbs,
            Some(ScoreArg::Sum) => Score::Sum,
        },
        svd: SvdOptions {
            seed: args.seed,
            ..SvdOptions::default()
        },
    };
    Predictor::from_weights(program, &model.ffns, weights, &opts).map_err(|e| e.to_string())
}

/// A predictor trained on `--train-samples` sequences (seed `--seed + 1`), and what it
/// was trained on.
fn trained(args: &CalibrateArgs, model: &TokenModel) -> Result<(Predictor, String), String> {
    let input = match args.input {
        Some(InputArg::Ffn) => PredictorInput::Ffn,
        None | Some(InputArg::Attention) => PredictorInput::Attention,
    };
    let train_args = CalibrateArgs {
        samples: args.train_samples,
        prompts: None,
        seed: args.seed.wrapping_add(1),
        ..args.clone()
    };
    let (seqs, how) = samples(&train_args, model)?;
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let captured = capture(model, &seqs).map_err(|e| e.to_string())?;
    let opts = TrainOptions {
        block: args.block.unwrap_or(16) as usize,
        input,
        ..TrainOptions::default()
    };
    let p = train(model, &captured, &opts).map_err(|e| format!("--train: {e}"))?;
    let text = format!(
        "trained by ridge least squares (relative ridge {}) on {} sequences, {tokens} tokens \
         ({how}); thresholds calibrated on the separate samples below\n",
        opts.ridge,
        seqs.len()
    );
    Ok((p, text))
}

/// The calibration sequences and how they were made.
pub(crate) fn samples(
    args: &CalibrateArgs,
    model: &TokenModel,
) -> Result<(Vec<Vec<u32>>, String), String> {
    if let Some(path) = &args.prompts {
        let seqs = read_id_lines(path)?;
        return Ok((seqs, format!("token ids from `{}`", path.display())));
    }
    let (n, len) = (args.samples as usize, args.sample_len as usize);
    if let Some(m) = model.max_len
        && len > m
    {
        return Err(format!(
            "--sample-len {len} exceeds the model's {m} positions"
        ));
    }
    if args.synthetic.is_some() {
        let seqs = random_sequences(model.vocab, n, len, args.seed);
        Ok((seqs, format!("uniformly random ids, seed {}", args.seed)))
    } else {
        let seqs = sampled_sequences(model, n, len, args.seed).map_err(|e| e.to_string())?;
        Ok((
            seqs,
            format!(
                "written by the model: random first token, then sampled at temperature 1, \
                 seed {}",
                args.seed
            ),
        ))
    }
}

/// One sequence of token ids per non-empty line (spaces or commas, `#` comments).
pub fn read_id_lines(path: &Path) -> Result<Vec<Vec<u32>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    parse_id_lines(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// See [`read_id_lines`].
pub fn parse_id_lines(text: &str) -> Result<Vec<Vec<u32>>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        let ids = code
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<u32>().map_err(|_| {
                    format!(
                        "line {}: `{t}` is not a token id (a whole number ≥ 0)",
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<u32>, String>>()?;
        if !ids.is_empty() {
            out.push(ids);
        }
    }
    if out.is_empty() {
        return Err("no token ids (one sequence per line)".into());
    }
    Ok(out)
}

/// The per-layer table.
pub fn layer_table(reports: &[LayerReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<10} {:>7} {:>11} {:>11} {:>11} {:>10} {:>10}",
        "ffn", "layer", "recall", "pred. skip", "true block", "true neur.", "tau", "delta"
    );
    let _ = writeln!(
        out,
        "{:>4}  {:<10} {:>7} {:>11} {:>11} {:>11} {:>10} {:>10}",
        "", "", "", "(blocks)", "sparsity", "sparsity", "", ""
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:>4}  {:<10} {:>7.3} {:>10.1}% {:>10.1}% {:>10.1}% {:>10.4} {:>10.4}",
            r.ffn,
            r.label,
            r.recall,
            100.0 * r.predicted_block_sparsity,
            100.0 * r.true_block_sparsity,
            100.0 * r.true_neuron_sparsity,
            r.tau,
            r.threshold
        );
    }
    let n = reports.len() as f64;
    let mean = |f: fn(&LayerReport) -> f64| reports.iter().map(f).sum::<f64>() / n;
    let _ = writeln!(
        out,
        "{:>4}  {:<10} {:>7.3} {:>10.1}% {:>10.1}% {:>10.1}%",
        "",
        "mean",
        mean(|r| r.recall),
        100.0 * mean(|r| r.predicted_block_sparsity),
        100.0 * mean(|r| r.true_block_sparsity),
        100.0 * mean(|r| r.true_neuron_sparsity),
    );
    out
}

/// Evaluation prompts, greedy steps, how they were chosen, and the reference's greedy
/// tokens when the file has them.
pub(crate) struct EvalPrompts {
    pub(crate) prompts: Vec<Vec<u32>>,
    pub(crate) steps: usize,
    pub(crate) how: String,
    pub(crate) reference: Option<Vec<Vec<u32>>>,
}

/// Evaluation prompts and steps: `--eval`, or the reference beside the weights, or random.
pub(crate) fn eval_prompts(
    args: &CalibrateArgs,
    model: &TokenModel,
) -> Result<EvalPrompts, String> {
    let beside = args
        .weights
        .as_ref()
        .map(|w| w.with_file_name("reference-greedy.json"))
        .filter(|p| p.exists());
    let path = args.eval.clone().or(beside);
    let steps = args.steps.map(|s| s as usize);
    let Some(path) = path else {
        let prompts = random_sequences(model.vocab, 3, 8, args.seed.wrapping_add(1000));
        return Ok(EvalPrompts {
            prompts,
            steps: steps.unwrap_or(16),
            how: "3 random prompts of 8 tokens".into(),
            reference: None,
        });
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        let cases = json["cases"].as_array().ok_or_else(|| {
            format!(
                "`{}`: a JSON evaluation file needs `cases` with `prompt_ids`",
                path.display()
            )
        })?;
        let ids = |v: &serde_json::Value, what: &str| -> Result<Vec<u32>, String> {
            (v.as_array()
                .ok_or_else(|| format!("`{}`: {what} is not an array", path.display()))?)
            .iter()
            .map(|x| {
                x.as_u64().map(|x| x as u32).ok_or_else(|| {
                    format!("`{}`: {what} holds `{x}`, not a token id", path.display())
                })
            })
            .collect()
        };
        let mut prompts = Vec::new();
        let mut reference = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            prompts.push(ids(&c["prompt_ids"], &format!("cases[{i}].prompt_ids"))?);
            if !c["greedy_ids"].is_null() {
                reference.push(ids(&c["greedy_ids"], &format!("cases[{i}].greedy_ids"))?);
            }
        }
        let reference =
            (reference.len() == prompts.len() && !prompts.is_empty()).then_some(reference);
        let steps = steps
            .or_else(|| reference.as_ref().map(|r| r[0].len()))
            .unwrap_or(16);
        let how = format!("{} prompts of `{}`", prompts.len(), path.display());
        return Ok(EvalPrompts {
            prompts,
            steps,
            how,
            reference,
        });
    }
    let prompts = parse_id_lines(&text).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let how = format!("{} prompts of `{}`", prompts.len(), path.display());
    Ok(EvalPrompts {
        prompts,
        steps: steps.unwrap_or(16),
        how,
        reference: None,
    })
}

fn agreement_cells(a: &Agreement) -> String {
    format!(
        "{:>3}/{:<3} {:>9.2e}",
        a.total_matched(),
        a.steps * a.matched.len(),
        a.max_logits_error
    )
}

/// The curve tables.
fn curve(
    args: &CalibrateArgs,
    model: &TokenModel,
    predictor: &Predictor,
    cal: &Calibration,
    activity: Activity,
) -> Result<String, String> {
    let EvalPrompts {
        prompts,
        steps,
        how,
        reference,
    } = eval_prompts(args, model)?;
    let set = EvalSet::new(model, prompts, steps).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "agreement with the dense f64 model on {how}, {steps} greedy tokens each \
         (tokens equal before the first divergence; max |logits error| with the dense tokens \
         fed in)"
    );
    if let Some(r) = &reference {
        let same: usize = (set.dense_tokens.iter().zip(r))
            .map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count())
            .sum();
        let _ = writeln!(
            out,
            "dense f64 greedy tokens equal to the reference file: {same}/{}",
            r.iter().map(|c| c.len().min(steps)).sum::<usize>()
        );
    }
    let off = set
        .compare(model, Some(predictor), MaskMode::AllOff)
        .map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "every block skipped: agreement {}  (max |dense logits| {:.2})",
        agreement_cells(&off),
        off.max_logits
    );
    // the oracle mask depends on the activity definition only
    let oracle_of = |act: Activity| -> Result<Agreement, String> {
        let reports = cal.solve(act, 1.0).map_err(|e| e.to_string())?;
        let mut p = predictor.clone();
        Calibration::apply(&mut p, &reports, act, 1.0);
        set.compare(model, Some(&p), MaskMode::Oracle)
            .map_err(|e| e.to_string())
    };
    let row = |out: &mut String,
               label: String,
               act: Activity,
               t: f64,
               oracle: &Agreement|
     -> Result<(), String> {
        let reports = cal.solve(act, t).map_err(|e| e.to_string())?;
        let mut p = predictor.clone();
        Calibration::apply(&mut p, &reports, act, t);
        let n = reports.len() as f64;
        let calib_skip = reports
            .iter()
            .map(|r| r.predicted_block_sparsity)
            .sum::<f64>()
            / n;
        let calib_true = reports.iter().map(|r| r.true_block_sparsity).sum::<f64>() / n;
        let pred = set
            .compare(model, Some(&p), MaskMode::Predicted)
            .map_err(|e| e.to_string())?;
        let _ = writeln!(
            out,
            "{label:<18} {:>8.1}% {:>8.1}% | {:>7.3} {:>8.1}% {} | {:>8.1}% {}",
            100.0 * calib_skip,
            100.0 * calib_true,
            pred.stats.recall(),
            100.0 * pred.stats.skipped(),
            agreement_cells(&pred),
            100.0 * oracle.stats.skipped(),
            agreement_cells(oracle),
        );
        Ok(())
    };
    let header = |out: &mut String, first: &str| {
        let _ = writeln!(
            out,
            "{first:<18} {:>9} {:>9} | {:>7} {:>9} {:>7} {:>9} | {:>9} {:>7} {:>9}",
            "skip", "true", "recall", "skip", "agree", "logits", "skip", "agree", "logits"
        );
        let _ = writeln!(
            out,
            "{:<18} {:>19} | {:>35} | {:>27}",
            "", "(calibration)", "predicted mask (evaluation)", "oracle mask (true active)"
        );
    };
    match activity {
        Activity::Nonzero => {
            let _ = writeln!(out, "\nblock sparsity against target recall:");
            header(&mut out, "target recall");
            let oracle = oracle_of(activity)?;
            for t in RECALLS {
                row(&mut out, format!("{t:.2}"), activity, t, &oracle)?;
            }
        }
        Activity::Magnitude(s) => {
            let _ = writeln!(
                out,
                "\nmagnitude sparsity (fraction of neurons counted inactive), target recall {}:",
                args.recall
            );
            header(&mut out, "neuron sparsity");
            for s in SPARSITIES {
                let act = Activity::Magnitude(s);
                let oracle = oracle_of(act)?;
                row(
                    &mut out,
                    format!("{:.0}%", 100.0 * s),
                    act,
                    args.recall,
                    &oracle,
                )?;
            }
            let _ = writeln!(out, "\ntarget recall at {:.0}% neuron sparsity:", 100.0 * s);
            header(&mut out, "target recall");
            let oracle = oracle_of(activity)?;
            for t in RECALLS {
                row(&mut out, format!("{t:.2}"), activity, t, &oracle)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CalibrateArgs,
    }

    fn parse(args: &[&str]) -> Result<CalibrateArgs, String> {
        let mut all = vec!["comet"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    /// The per-layer rows of the report (they start with the FFN index).
    fn table_rows(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| {
                let mut t = l.split_whitespace();
                t.next().is_some_and(|t| t.parse::<usize>().is_ok()) && t.next() == Some("layer")
            })
            .collect()
    }

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn glassllm(extra: &[&str]) -> CalibrateArgs {
        let model = root().join("examples/glassllm.model");
        let weights = root().join("models/glassllm-en/model.safetensors");
        let mut a = vec![
            model.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        parse(&a).unwrap()
    }

    #[test]
    fn glassllm_reaches_the_recall_on_every_layer() {
        let text = report(&glassllm(&["--samples", "4", "--sample-len", "24"])).unwrap();
        assert!(
            text.contains(
                "model `glassllm`: 4 FFNs (gated silu, d 128, ff 341), blocks of 16 \
                           (22 per FFN), rank 32, score max"
            ),
            "{text}"
        );
        assert!(text.contains("calibration: 4 sequences, 96 tokens (written by the model"));
        let rows = table_rows(&text);
        assert_eq!(rows.len(), 4, "{text}");
        for r in rows {
            let recall: f64 = r.split_whitespace().nth(3).unwrap().parse().unwrap();
            assert!(recall >= 0.95, "{r}");
        }
    }

    #[test]
    fn the_synthetic_model_is_sparse_and_the_file_loads_back() {
        let out =
            std::env::temp_dir().join(format!("comet-cal-{}.safetensors", std::process::id()));
        let model = root().join("examples/opt-1.3b.model");
        let args = parse(&[
            model.to_str().unwrap(),
            "--synthetic",
            "opt-125m",
            "--layers",
            "2",
            "--samples",
            "2",
            "--sample-len",
            "16",
            "--block",
            "32",
            "--rank",
            "64",
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let text = report(&args).unwrap();
        assert!(
            text.contains("2 FFNs (relu, d 768, ff 3072), blocks of 32 (96 per FFN), rank 64"),
            "{text}"
        );
        for r in table_rows(&text) {
            let cols: Vec<&str> = r.split_whitespace().collect();
            let recall: f64 = cols[3].parse().unwrap();
            let neuron: f64 = cols[6].trim_end_matches('%').parse().unwrap();
            assert!(recall >= 0.95, "{r}");
            assert!((85.0..95.0).contains(&neuron), "{r}");
        }
        // the file fits this model and is refused by a deeper one
        let again = CalibrateArgs {
            predictor: Some(out.clone()),
            block: None,
            rank: None,
            out: None,
            ..args.clone()
        };
        assert!(report(&again).is_ok());
        let deeper = CalibrateArgs {
            layers: Some(3),
            ..again
        };
        let e = report(&deeper).unwrap_err();
        assert!(
            e.contains("it has predictors for 2 FFNs (metadata `ffns`), model `opt_1_3b` has 3"),
            "{e}"
        );
        std::fs::remove_file(out).ok();
    }

    #[test]
    fn wrong_inputs_are_clear_errors() {
        let e = report(&glassllm(&["--recall", "1.5"])).unwrap_err();
        assert_eq!(e, "--recall must be in (0, 1], not 1.5");
        let e = report(&glassllm(&["--sparsity", "1"])).unwrap_err();
        assert_eq!(e, "--sparsity must be in [0, 1), not 1");
        let e = report(&glassllm(&["--rank", "200"])).unwrap_err();
        assert!(
            e.starts_with("rank 200 must be between 1 and min(d, ff) = 128"),
            "{e}"
        );
        let e = report(&glassllm(&["--block", "400"])).unwrap_err();
        assert!(
            e.starts_with("block size 400 must be between 1 and the FFN width 341"),
            "{e}"
        );
        let e = report(&glassllm(&["--sample-len", "200", "--samples", "1"]));
        // glassllm has no position table: the model runs, only RoPE limits it
        assert!(e.is_ok() || e.unwrap_err().contains("200"));

        let dir = std::env::temp_dir();
        let ids = dir.join(format!("comet-cal-ids-{}.txt", std::process::id()));
        std::fs::write(&ids, "1 2 3\n4, 5, x\n").unwrap();
        let e = report(&glassllm(&["--prompts", ids.to_str().unwrap()])).unwrap_err();
        assert!(
            e.ends_with("line 2: `x` is not a token id (a whole number ≥ 0)"),
            "{e}"
        );
        std::fs::write(&ids, "1 2 3\n4 5 1024\n").unwrap();
        let e = report(&glassllm(&["--prompts", ids.to_str().unwrap()])).unwrap_err();
        assert_eq!(
            e,
            "calibration sample 1, token 2: id 1024 is outside the vocabulary [0, 1024)"
        );
        std::fs::write(&ids, "# nothing\n\n").unwrap();
        let e = report(&glassllm(&["--prompts", ids.to_str().unwrap()])).unwrap_err();
        assert!(e.ends_with("no token ids (one sequence per line)"), "{e}");
        // a weights file is not a predictor file
        let w = root().join("models/glassllm-en/model.safetensors");
        let e = report(&glassllm(&["--predictor", w.to_str().unwrap()])).unwrap_err();
        assert!(
            e.contains("no metadata `format` = `comet-sparsity-predictor`"),
            "{e}"
        );
        std::fs::remove_file(ids).ok();

        // --synthetic on a model without ReLU FFNs
        let model = root().join("examples/glassllm.model");
        let e = parse(&[
            model.to_str().unwrap(),
            "--synthetic",
            "opt-125m",
            "--layers",
            "1",
        ])
        .map(|a| report(&a));
        let e = e.unwrap().unwrap_err();
        assert!(
            e.contains("--synthetic rewrites") || e.contains("ReLU"),
            "{e}"
        );
        // clap: both weight sources, neither, a predictor with --rank
        assert!(parse(&["m", "--weights", "w", "--synthetic", "opt-125m"]).is_err());
        assert!(parse(&["m"]).is_err());
        assert!(parse(&["m", "--weights", "w", "--predictor", "p", "--rank", "4"]).is_err());
        assert!(parse(&["m", "--weights", "w", "--block", "0"]).is_err());
        let e = report(&glassllm(&["--layers", "2"])).unwrap_err();
        assert_eq!(e, "--layers applies to --synthetic models only");
    }

    #[test]
    fn dims_are_rewritten_in_place() {
        let src = "model m {\n  dim vocab = 50272, d = 2048, heads = 32, hd = d / heads, ff = 8192; // x\n  dim n_layers = 24;\n}\n";
        let out = rewrite_dims(
            src,
            &[
                ("vocab", 512),
                ("d", 64),
                ("ff", 256),
                ("n_layers", 2),
                ("heads", 4),
            ],
            "m",
        )
        .unwrap();
        assert!(
            out.contains("dim vocab = 512, d = 64, heads = 4, hd = d / heads, ff = 256;"),
            "{out}"
        );
        assert!(out.contains("dim n_layers = 2;"));
        let e = rewrite_dims("dim d = 3;", &[("d", 1)], "m.model").unwrap_err();
        assert!(e.ends_with("`m.model` declares no `dim vocab = …`"), "{e}");
    }
}
