//! `comet distill`: fine-tune a checkpoint so that an approximation profile keeps the
//! model's accuracy (the library: `comet-distill`, docs/distill.md).

use clap::Args;
use comet_distill::state::State;
use comet_distill::{Config, DistillError, Models, Report, checkpoint};
use comet_ir::ApproxConfig;
use comet_runtime::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `comet distill`.
#[derive(Args, Debug, Clone)]
pub struct DistillArgs {
    /// The `.model` file.
    pub model: PathBuf,
    /// Its checkpoint (one safetensors file): the teacher's weights and the student's start.
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// The profile the student computes with: `pcf`, `mpcformer`, or a per-kind mix
    /// (`softmax=pcf,gelu=bolt`), as `comet compile --approx` takes it.
    #[arg(long, value_name = "PROFILE")]
    pub approx: ApproxConfig,
    /// Optimizer steps in total (a resumed run continues up to this).
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub steps: u64,
    /// Tokens per sampled training sequence.
    #[arg(long, value_name = "L", default_value_t = 64)]
    pub seq: usize,
    /// Sequences per step (run in parallel).
    #[arg(long, value_name = "B", default_value_t = 8)]
    pub batch: usize,
    /// Peak learning rate of Adam (warm-up over 5% of the steps, cosine decay to a tenth).
    #[arg(long, value_name = "X", default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the sampled sequences.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Temperature of the teacher's sampling.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub temperature: f64,
    /// Sample only among the teacher's K most likely next tokens (0: all).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: usize,
    /// Temperature τ of the distillation loss, τ²·KL(softmax(teacher/τ) ‖ softmax(student/τ))
    /// (1: the plain KL).
    #[arg(long, value_name = "TAU", default_value_t = 1.0)]
    pub kd_temperature: f64,
    /// A text file of prompts, one per line, that the sampled sequences continue (default:
    /// each sequence starts from one random token).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// The tokenizer of `--prompts` (default: `tokenizer.json` beside the weights).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Clip the batch gradient to this global L2 norm (0: no clipping).
    #[arg(long, value_name = "NORM", default_value_t = 1.0)]
    pub clip: f64,
    /// Weight of the residual stream's mean squared error against the teacher's, added to
    /// the KL divergence of the logits (0: logits only).
    #[arg(long, value_name = "WEIGHT", default_value_t = 0.0)]
    pub hidden_loss: f64,
    /// Continue from a state file written by `--save-state`.
    #[arg(long, value_name = "STATE")]
    pub resume: Option<PathBuf>,
    /// Write the training state (weights and optimizer in f64) here at the end, and every
    /// `--save-every` steps, for `--resume`.
    #[arg(long, value_name = "STATE")]
    pub save_state: Option<PathBuf>,
    /// Steps between state saves (with --save-state).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub save_every: u64,
    /// The distilled checkpoint: the input's tensor names, shapes and dtypes.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// A JSON report: options, loss curve, held-out accuracy before and after.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Held-out sequences for the report's accuracy (0: not measured).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub eval_sequences: usize,
    /// Start the student from the weights as they are: no folding of the teacher's mean
    /// normalisation into the gains of norms the profile makes affine (pcf).
    #[arg(long)]
    pub no_calibrate: bool,
    /// No progress bar and no summary on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Held-out sequence length of the report.
const EVAL_LEN: usize = 64;
/// Sampled sequences of the norms' calibration.
const CALIBRATION: usize = 16;
/// Greedy tokens per held-out prompt.
const EVAL_GREEDY: usize = 16;

/// Runs the command.
pub fn run(args: &DistillArgs) -> Result<(), String> {
    run_inner(args).map_err(|e| e.to_string())
}

fn run_inner(args: &DistillArgs) -> Result<(), DistillError> {
    let source = std::fs::read_to_string(&args.model).map_err(|e| DistillError::Model {
        model: args.model.display().to_string(),
        message: format!("cannot read it: {e}"),
    })?;
    let models = Models::new(&source, &args.model.display().to_string(), args.approx)?;
    if models.approx.is_exact() {
        return Err(DistillError::Usage(format!(
            "--approx {}: the model has no op the profile replaces, so the student would be the \
             teacher; name a profile that changes it (pcf, mpcformer, ...)",
            args.approx
        )));
    }
    let teacher = models.load(&args.weights)?;
    let prompts = match &args.prompts {
        Some(p) => read_prompts(p, args, models.vocab)?,
        None => Vec::new(),
    };
    let config = Config {
        steps: args.steps,
        seq: args.seq,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
        temperature: args.temperature,
        top_k: args.top_k,
        kd_temperature: args.kd_temperature,
        hidden_loss: args.hidden_loss,
        prompts,
        clip: args.clip,
    };
    config.check()?;
    if args.save_every == 0 {
        return Err(DistillError::Usage(
            "--save-every must be at least 1".into(),
        ));
    }
    checkpoint::probe(&args.output, "checkpoint")?;
    if let Some(r) = &args.report {
        checkpoint::probe(r, "report")?;
    }
    if let Some(s) = &args.save_state {
        checkpoint::probe(s, "state")?;
    }
    let approx = models.approx.to_string();
    let say = |m: String| {
        if !args.quiet {
            eprintln!("{m}");
        }
    };
    let state = match &args.resume {
        Some(p) => State::load(p, &config, &approx, &teacher)?,
        None if args.no_calibrate => State::new(&teacher),
        None => {
            let (start, factors) =
                comet_distill::train::calibrate(&models, &teacher, &config, CALIBRATION)?;
            for (name, f) in &factors {
                say(format!("calibrated `{name}`: gain × {f:.4}"));
            }
            State::new(&start)
        }
    };
    say(format!(
        "distilling {} for --approx {approx}: {} parameters, {} steps of {} sequences × {} \
         tokens, {} threads",
        args.model.display(),
        teacher.values().map(|w| w.len()).sum::<usize>(),
        config.steps,
        config.batch,
        config.seq,
        rayon::current_num_threads()
    ));
    let eval =
        |w: &comet_distill::Weights| -> Result<Option<comet_distill::Metrics>, DistillError> {
            if args.eval_sequences == 0 {
                return Ok(None);
            }
            comet_distill::evaluate(
                &models,
                &teacher,
                w,
                args.seed,
                args.eval_sequences,
                EVAL_LEN,
                EVAL_GREEDY,
            )
            .map(Some)
        };
    let before = eval(&teacher)?;
    if let Some(m) = &before {
        say(format!("before: {}", summary(m)));
    }
    let bar = (!args.quiet).then(|| {
        let bar = ProgressBar::with_draw_target(Some(config.steps), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed}, eta {eta}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_position(state.step);
        bar
    });
    let start = Instant::now();
    let first_step = state.step;
    let mut state = state;
    while state.step < config.steps {
        let until = match &args.save_state {
            Some(_) => (state.step / args.save_every + 1) * args.save_every,
            None => config.steps,
        }
        .min(config.steps);
        let mut progress = |log: &comet_distill::StepLog| {
            if let Some(b) = &bar {
                b.set_position(log.step);
                b.set_message(format!("loss {:.4}", log.loss));
            }
        };
        state = comet_distill::train::distill_until(
            &models,
            &teacher,
            &config,
            until,
            state,
            &mut progress,
        )?;
        if let Some(p) = &args.save_state {
            state.save(p, &config, &approx, &teacher)?;
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let seconds = start.elapsed().as_secs_f64();
    checkpoint::write(
        &args.weights,
        &models.teacher.info.weights,
        &state.params,
        &args.output,
    )?;
    let after = eval(&state.params)?;
    if let Some(m) = &after {
        say(format!("after:  {}", summary(m)));
    }
    let report = Report {
        config: config.clone(),
        curve: state.curve.clone(),
        before,
        after,
        threads: rayon::current_num_threads(),
    };
    say(format!(
        "wrote {} ({} steps this run, {:.1} s, {:.2} s per step; {} steps in all)",
        args.output.display(),
        state.step - first_step,
        seconds,
        seconds / (state.step - first_step).max(1) as f64,
        state.step
    ));
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report.to_json(&models)).expect("JSON");
        std::fs::write(path, text).map_err(|e| DistillError::Write {
            what: "report",
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

fn summary(m: &comet_distill::Metrics) -> String {
    format!(
        "held-out perplexity {:.3} (teacher {:.3}), KL {:.4}, max logits error {:.3}, greedy {}/{}",
        m.student_perplexity,
        m.teacher_perplexity,
        m.kl,
        m.max_logits_error,
        m.greedy_agree,
        m.greedy_total
    )
}

/// One prompt per non-empty line, encoded, each id below the vocabulary.
fn read_prompts(
    path: &Path,
    args: &DistillArgs,
    vocab: usize,
) -> Result<Vec<Vec<u64>>, DistillError> {
    let bad = |message: String| DistillError::Prompts {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let tok_path = match &args.tokenizer {
        Some(t) => t.clone(),
        None => args.weights.with_file_name("tokenizer.json"),
    };
    let tok = Tokenizer::from_file(&tok_path).map_err(|e| {
        bad(format!(
            "needs a tokenizer (--tokenizer, or tokenizer.json beside the weights): {e}"
        ))
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ids = tok
            .encode(line)
            .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if let Some(t) = ids.iter().find(|t| **t as usize >= vocab) {
            return Err(bad(format!(
                "line {}: token {t} is outside the model's vocabulary of {vocab}",
                i + 1
            )));
        }
        if !ids.is_empty() {
            out.push(ids);
        }
    }
    if out.is_empty() {
        return Err(bad("it has no prompt (one per non-empty line)".into()));
    }
    Ok(out)
}
