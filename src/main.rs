//! `comet`: compile `.model` files to protocol plans, show them and inspect their costs.
//!
//! The CLI is thin: each subcommand reads its inputs, calls the library crates and prints.
//! Every failure is a message naming the place and what was expected, with exit status 1
//! (usage mistakes: 2, from clap).

mod bench;
mod bench_approx;
mod bench_heads;
mod bench_kv;
mod bench_sparsity;
mod calibrate;
mod calibrate_heads;
mod deal;
mod demo;
mod distill;
mod import;

use clap::{Args, Parser, Subcommand, ValueEnum};
use comet::{dealer, generate, progress, report, run};
use comet_compiler::inspect::{self, InspectOptions, NetProfile, Report};
use comet_compiler::{CompileError, Options, compile};
use comet_ir::{ApproxConfig, Comparison, Program};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "comet",
    version,
    about = "Protocol compiler and two-party runtime for private LLM inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plan for two parties on real weights and generate text: both in this process,
    /// or one party per process over TCP (`--party 0 --listen ADDR` / `--party 1 --connect
    /// ADDR`, with material from `comet deal` or from `comet dealer`).
    Run(run::RunArgs),
    /// Deal a session's correlated randomness ahead of time: one material file per party.
    Deal(deal::DealArgs),
    /// Run the dealer as a service: both parties connect (`comet run --party P --dealer
    /// ADDR`) and it streams each call's material to them as they reach it.
    Dealer(dealer::DealerArgs),
    /// Create a static key pair: the dealer's (`comet dealer --key FILE`; the parties pin
    /// the public key it prints with `--dealer-key`) or a party's (`comet run --key FILE`;
    /// the dealer pins it with `--party-key P=FILE.pub`).
    Keygen(dealer::KeygenArgs),
    /// Benchmarks: `comet bench runtime` (share matmul against f64, a GPT-2-small decode
    /// step in process and over loopback TCP, peak memory) and `comet bench approx` (the
    /// approximation profiles' accuracy and cost).
    Bench(bench::BenchArgs),
    /// Fine-tune (distil) a checkpoint so that an approximation profile (`--approx pcf`,
    /// `mpcformer`, a per-kind mix) keeps the model's accuracy: the approximated model
    /// learns the original's outputs on sequences the original samples itself.
    Distill(distill::DistillArgs),
    /// The main job in one command: compile the shipped model, run it for two parties on
    /// secret shares, and print its text beside the reference, with measured and
    /// estimated costs.
    Demo(demo::DemoArgs),
    /// Write a `.model` file from a Hugging Face checkpoint folder (`config.json` of a
    /// llama, mistral, qwen2, gpt2, opt or bert model, and its safetensors).
    Import(import::ImportArgs),
    /// Compile a `.model` file to a protocol plan.
    Compile {
        /// The `.model` file.
        model: PathBuf,
        /// What to write: the IR, the plan's text form, or the plan file (JSON).
        /// Default: `json` with `-o`, `plan` on standard output.
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// Print the IR after this pass to standard error (passes: lower, sparsify,
        /// approximate, expand, insert-conversions, cache-openings, schedule, cost).
        #[arg(long, value_name = "PASS")]
        print_after: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Run the IR verifier after every pass (always on in debug builds).
        #[arg(long)]
        verify: bool,
        /// Print the time spent in each pass to standard error.
        #[arg(long)]
        timings: bool,
        /// The comparison (DReLU) protocol: `fss` (function secret sharing, 1 round) or
        /// `gmw` (prefix adder, 7 rounds: the CrypTen/SPU baseline).
        #[arg(long, value_enum, default_value = "fss")]
        comparison: ComparisonArg,
        /// MPC-friendly approximations (pass `approximate`; docs/approximations.md): a
        /// profile for the whole model (`lut`, the default: FSS lookup tables; `exact`,
        /// the precise baseline; `pcf`, `puma`, `bolt`, `bumblebee`, `mpcformer`), or
        /// `kind=profile` pairs for the kinds `gelu`, `silu`, `softmax`, `norm`
        /// (`softmax=pcf,gelu=bolt`), or both (`puma,softmax=exact`). Kinds a profile
        /// does not define stay exact.
        #[arg(long, value_name = "PROFILES", default_value = "lut")]
        approx: ApproxConfig,
        /// Block-sparse FFNs (pass `sparsify`; docs/sparsity.md): `off`, or `ffn` with
        /// optional `:block=B,rank=R,recall=T,density=D,input=I` (defaults 16, 32, 0.95,
        /// density 1 — every block active — until `comet calibrate` gives it, one value or
        /// one per FFN separated by `/`; input `ffn`, the FFN's input, or `attention`, the
        /// layer input after the pre-attention norm, for a predictor trained by `comet
        /// calibrate --train`: no added round). The runtime then needs `--predictor FILE`.
        /// `heads[:recall=T,density=D]` makes attention head-sparse (pass
        /// `head-sparsify`; the runtime needs `--head-predictor FILE`); `ffn…+heads…`
        /// both.
        #[arg(long, value_name = "SPEC", default_value = "off",
              value_parser = parse_sparsity)]
        sparsity: SparsityArg,
        /// Products with the KV cache: `cached` opens each cached key/value row once,
        /// in the call that writes it (pass `cache-openings`); `reopened` opens the whole
        /// cache again in every call's Beaver products (the baseline).
        #[arg(long, value_enum, default_value = "cached")]
        kv_openings: KvOpenings,
        /// FSS comparisons: `narrow` works each on the signed width the range analysis
        /// proves its values fit (pass `narrow-comparisons`, from `--weight-bound`; fewer
        /// key, dealer and online bytes); `full` compares on the whole 64-bit ring.
        #[arg(long, value_enum, default_value = "narrow")]
        comparison_width: ComparisonWidth,
        /// Openings of products (pass `narrow-openings`): `narrow` opens a product's
        /// operands modulo 2^w when its value is read at w bits only (by a narrowed
        /// truncation, comparison or table), packed at w bits; exact whatever the inputs.
        /// `full` opens every one on the whole 64-bit ring.
        #[arg(long, value_enum, default_value = "narrow")]
        open_width: ComparisonWidth,
        /// Norm gains and biases (passes `fold-norm-gains` and `fold-biases`, the `lut`
        /// profile): `true` leaves the gain and bias of a norm read only by weight products
        /// to those products (`x̂·(diag(g)·W) + β·W`, computed once by the weights' owner),
        /// one product and truncation less per entry, and moves a product's bias into its
        /// fixed operand when a `lut` activation reads it (`[x, 1]·[W; b]`, so that the
        /// activation reads the product's truncation opening); `false` keeps both as
        /// written.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        fold_gains: bool,
        /// Comparisons of stochastic truncations (pass `fuse-trunc-openings`): `true` reads
        /// the truncation's opening (`t + ⌊r / 2^s⌋`, free with it) instead of opening the
        /// comparison's own input, no bytes and no round of its own (the truncation is
        /// widened to the comparison's width plus its shift where needed); `false`: every
        /// comparison opens its input.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        fuse_trunc_openings: bool,
        /// Truncations (pass `faithful-trunc`): `auto` keeps a truncation local (SecureML,
        /// no communication, may fail) only while the range analysis bounds the plan's
        /// failure probability per call within `--trunc-failure`, and makes the others
        /// faithful (no wrap failure, 1 round); `always`: every one faithful; `never`:
        /// every one local (may fail silently).
        #[arg(long, value_enum, default_value = "auto")]
        faithful_trunc: FaithfulArg,
        /// The gate of faithful truncations: `stochastic` (the floor or one more, rounded
        /// stochastically: `x + r` opened, 16 dealer bytes per element) or `exact` (the
        /// floor, bit for bit the fixed-point backend's, by a DCF key per element: 396–404
        /// dealer bytes at 16 bits).
        #[arg(long, value_enum, default_value = "stochastic")]
        faithful_gate: FaithfulGateArg,
        /// The budget of `--faithful-trunc auto`: union bound on the probability that some
        /// local truncation of a call fails (`2^-40`, `1e-12`).
        #[arg(long, value_name = "P", default_value = "2^-40",
              value_parser = comet_compiler::passes::faithful_trunc::parse_probability)]
        trunc_failure: f64,
        /// Declared bound on |w| for every weight entry, which the range analysis assumes
        /// (`comet run` checks the checkpoint against the plan's bound at setup).
        #[arg(long, value_name = "W", default_value_t = comet_compiler::range::DEFAULT_WEIGHT_BOUND)]
        weight_bound: f64,
        /// The design context of `--faithful-trunc auto`: the budget holds for a prefill of
        /// N tokens and a decode step after N − 1 cached ones.
        #[arg(long, value_name = "N", default_value_t = comet_compiler::passes::faithful_trunc::DEFAULT_CONTEXT,
              value_parser = clap::value_parser!(u64).range(1..))]
        trunc_context: u64,
        /// The checkpoint the plan will run on (safetensors file or folder): its server
        /// weights' statistics — max |w|, row and column norms, spectral norms, rounded
        /// up to powers of 2^(1/4) — are declared in the plan, and the range analysis
        /// bounds every product by them (narrower comparisons and truncations; `comet
        /// inspect --leakage` lists them: the client learns them). The runtime refuses a
        /// checkpoint that exceeds them. `random` or `random:SEED` declares instead the
        /// statistics of the random initialisation `comet bench runtime --seed SEED`
        /// draws at the model's real shapes (uniform, standard deviation 0.02, gains
        /// 1 ± 0.02): a plan to inspect at scale without a trained checkpoint.
        #[arg(long, value_name = "CKPT")]
        weights: Option<PathBuf>,
    },
    /// Pick each FFN's sparsity-predictor threshold on sample inputs to reach a target
    /// block recall, and report recall and sparsity per layer (docs/sparsity.md).
    Calibrate(calibrate::CalibrateArgs),
    /// Read a plan file and print its text form.
    Show {
        /// The plan file (JSON, as written by `comet compile -o`).
        plan: PathBuf,
        /// `plan` (declarations and graph) or `ir` (graph only).
        #[arg(long, value_enum, default_value = "plan")]
        emit: Emit,
    },
    /// Rounds, online and offline bytes and projected latency of a compiled plan, per
    /// layer, per op kind and per protocol, for a prompt and a generation.
    #[command(long_about = inspect::ABOUT)]
    Inspect(InspectArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// The plan file (JSON, as written by `comet compile -o`); it must have been compiled
    /// through the `cost` pass.
    plan: PathBuf,
    /// Prompt length N in tokens.
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..))]
    prompt: u64,
    /// Tokens to generate M: the prefill, then M − 1 decode steps.
    #[arg(long, value_name = "M", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    generate: u64,
    /// Network: `lan` (10 Gbit/s, 0.1 ms per round), `wan` (100 Mbit/s, 40 ms) or
    /// BANDWIDTH:LATENCY such as `1gbit:5ms`, `100mbit:40ms` (gbit, mbit, kbit; s, ms, us).
    #[arg(long, value_name = "PROFILE", default_value = "lan")]
    net: NetProfile,
    /// Assumed ring multiplications per second and party, for the compute estimate.
    #[arg(long, value_name = "OPS_PER_S", default_value_t = inspect::DEFAULT_COMPUTE_RATE)]
    compute_rate: f64,
    /// Declared bound on |w| for every weight entry, from which the truncation failure
    /// bound per call is derived (the runtime can check a checkpoint against it).
    #[arg(long, value_name = "W", default_value_t = comet_compiler::range::DEFAULT_WEIGHT_BOUND)]
    weight_bound: f64,
    /// Print one JSON object with every figure (stable field names) instead of tables.
    #[arg(long)]
    json: bool,
    /// Compare with another plan: totals and per-op-kind rows side by side, with ratios
    /// this / other.
    #[arg(long, value_name = "OTHER.plan")]
    compare: Option<PathBuf>,
    /// Also write the per-layer and per-op-kind online bytes, rounds and dealer bytes as
    /// bar charts to this SVG file (the prefill and the last decode step; with --compare,
    /// both plans' bars side by side).
    #[arg(long, value_name = "FILE", conflicts_with = "leakage")]
    svg: Option<PathBuf>,
    /// Instead of costs, what the plan reveals, from its graph: every node that opens a
    /// value (outputs; for sparse FFNs, each layer's block mask, opened to both parties in
    /// a secret permuted order), per layer what a mask reveals with bounds in bits, and the
    /// trust assumptions. A dense plan reveals nothing beyond its outputs. Needs no cost
    /// annotations; with --json, one JSON object.
    #[arg(long, conflicts_with = "compare")]
    leakage: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ComparisonArg {
    Fss,
    Gmw,
}

impl From<ComparisonArg> for Comparison {
    fn from(c: ComparisonArg) -> Comparison {
        match c {
            ComparisonArg::Fss => Comparison::Fss,
            ComparisonArg::Gmw => Comparison::Gmw,
        }
    }
}

/// `--comparison-width`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ComparisonWidth {
    Narrow,
    Full,
}

/// `--faithful-trunc`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FaithfulArg {
    Auto,
    Always,
    Never,
}

/// `--faithful-gate`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FaithfulGateArg {
    Stochastic,
    Exact,
}

/// `--kv-openings`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KvOpenings {
    Cached,
    Reopened,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    Ir,
    Plan,
    Json,
}

/// `--sparsity` (`None`: off): block-sparse FFNs and head-sparse attention.
#[derive(Clone)]
struct SparsityArg(
    Option<comet_ir::SparsityOptions>,
    Option<comet_compiler::passes::head_sparsify::HeadSparsityOptions>,
);

/// `off`, `ffn[:…]`, `heads[:…]`, or `ffn[:…]+heads[:…]`.
fn parse_sparsity(s: &str) -> Result<SparsityArg, String> {
    let mut out = SparsityArg(None, None);
    for part in s.split('+') {
        if part.trim_start().starts_with("heads") {
            if out.1.is_some() {
                return Err("`heads` is given twice".into());
            }
            out.1 = Some(comet_compiler::passes::head_sparsify::parse_spec(part)?);
        } else {
            if out.0.is_some() {
                return Err("`ffn` is given twice".into());
            }
            out.0 = comet_compiler::passes::sparsify::parse_spec(part)?;
        }
    }
    Ok(out)
}

/// A user-facing failure, already worded.
struct Failure(String);

/// Output piped into a reader that stops early (`comet compile m.model | head`) ends the
/// process quietly, as for any Unix tool, instead of a panic in `print!`: Rust's runtime
/// ignores SIGPIPE, so this restores the default action.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default at start-up, before any thread
    // exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile {
            model,
            emit,
            print_after,
            output,
            verify,
            timings,
            comparison,
            approx,
            sparsity,
            kv_openings,
            comparison_width,
            open_width,
            fold_gains,
            fuse_trunc_openings,
            faithful_trunc,
            faithful_gate,
            trunc_failure,
            weight_bound,
            trunc_context,
            weights,
        } => {
            let truncation = comet_ir::TruncationPolicy {
                mode: match faithful_trunc {
                    FaithfulArg::Auto => comet_ir::FaithfulMode::Auto,
                    FaithfulArg::Always => comet_ir::FaithfulMode::Always,
                    FaithfulArg::Never => comet_ir::FaithfulMode::Never,
                },
                max_failure: trunc_failure,
                weight_bound,
                context: trunc_context,
                gate: match faithful_gate {
                    FaithfulGateArg::Stochastic => comet_ir::FaithfulGate::Stochastic,
                    FaithfulGateArg::Exact => comet_ir::FaithfulGate::Exact,
                },
            };
            let opts = Options {
                truncation: Some(truncation),
                verify: verify || cfg!(debug_assertions),
                print_after,
                comparison: comparison.into(),
                approx,
                sparsity: sparsity.0,
                heads: sparsity.1,
                cache_openings: kv_openings == KvOpenings::Cached,
                narrow_comparisons: comparison_width == ComparisonWidth::Narrow,
                narrow_openings: open_width == ComparisonWidth::Narrow,
                fold_gains,
                fuse_trunc_openings,
                weight_stats: None,
            };
            if weight_bound.is_finite() && weight_bound > 0.0 {
                let out = output.as_deref();
                run_compile(&model, emit, out, opts, weights.as_deref(), timings)
            } else {
                Err(Failure(format!(
                    "error: --weight-bound {weight_bound}: expected a positive finite bound on |w|"
                )))
            }
        }
        Command::Show { plan, emit } => run_show(&plan, emit),
        Command::Inspect(args) => run_inspect(&args),
        Command::Import(args) => import::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Run(args) => run::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Deal(args) => deal::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Dealer(args) => dealer::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Keygen(args) => dealer::keygen(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Bench(args) => bench::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Distill(args) => distill::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Demo(args) => demo::run(&args).map_err(|e| Failure(format!("error: {e}"))),
        Command::Calibrate(args) => {
            calibrate::run(&args).map_err(|e| Failure(format!("error: {e}")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("{}", msg.trim_end());
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure(format!(
            "error: cannot read {what} `{}`: {e}",
            path.display()
        ))
    })
}

fn run_compile(
    model: &Path,
    emit: Option<Emit>,
    output: Option<&Path>,
    mut opts: Options,
    weights: Option<&Path>,
    timings: bool,
) -> Result<(), Failure> {
    let source = read(model, "model")?;
    let path = model.display().to_string();
    if let Some(ckpt) = weights {
        opts.weight_stats = Some(weight_stats(&source, &path, ckpt)?);
    }
    let opts = &opts;
    let compiled = compile(&source, &path, opts).map_err(compile_failure)?;
    if let Some(text) = &compiled.printed {
        eprint!(
            "; IR after `{}`\n{text}",
            opts.print_after.as_deref().unwrap_or_default()
        );
    }
    if timings {
        for (pass, t) in &compiled.timings {
            eprintln!("{pass:>20}  {:>10.3} ms", t.as_secs_f64() * 1e3);
        }
    }
    let emit = emit.unwrap_or(if output.is_some() {
        Emit::Json
    } else {
        Emit::Plan
    });
    let text = render(&compiled.program, emit)?;
    write_out(output, &text)
}

/// The declared statistics of the server's weights in `ckpt`, with progress on stderr.
fn weight_stats(
    source: &str,
    path: &str,
    ckpt: &Path,
) -> Result<std::collections::BTreeMap<String, comet_ir::WeightStats>, Failure> {
    let program = comet_compiler::driver::lower_only(source, path).map_err(compile_failure)?;
    if let Some(seed) = random_seed(ckpt)? {
        return Ok(bench::random_weight_stats(&program, seed));
    }
    let weights = &program.info.weights;
    let bar = indicatif::ProgressBar::new(weights.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("weight statistics {bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    let stats = comet_runtime::weights::stats::declared_for(ckpt, weights, |name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    })
    .map_err(|e| Failure(format!("error: --weights {}: {e}", ckpt.display())))?;
    bar.finish_and_clear();
    Ok(stats)
}

/// `random` (seed 1) or `random:SEED` for `--weights`: the benchmark's random weights.
fn random_seed(ckpt: &Path) -> Result<Option<u64>, Failure> {
    let spec = ckpt.to_string_lossy();
    let Some(rest) = spec.strip_prefix("random") else {
        return Ok(None);
    };
    if ckpt.exists() {
        return Ok(None);
    }
    match rest.strip_prefix(':').map(str::parse::<u64>) {
        None if rest.is_empty() => Ok(Some(1)),
        Some(Ok(seed)) => Ok(Some(seed)),
        _ => Err(Failure(format!(
            "error: --weights {spec}: expected a checkpoint, `random` or `random:SEED` (SEED a \
             non-negative integer)"
        ))),
    }
}

fn compile_failure(e: CompileError) -> Failure {
    match e {
        CompileError::Source(d) => Failure(format!("{:?}", miette::Report::new(*d))),
        other => Failure(format!("error: {other}")),
    }
}

fn render(p: &Program, emit: Emit) -> Result<String, Failure> {
    match emit {
        Emit::Ir => Ok(comet_ir::print::print_graph(p)),
        Emit::Plan => Ok(comet_ir::print::print_plan(p)),
        Emit::Json => {
            comet_ir::plan::write_plan_json(p).map_err(|e| Failure(format!("error: {e}")))
        }
    }
}

fn write_out(output: Option<&Path>, text: &str) -> Result<(), Failure> {
    match output {
        Some(path) => write_atomically(path, text)
            .map_err(|e| Failure(format!("error: cannot write `{}`: {e}", path.display()))),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Writes `text` to a fresh file beside `path`, then renames it over `path`: a reader of
/// `path` (a party loading the plan while it is compiled again) sees the old file or the
/// new one, never a partial one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.partial", std::process::id()));
    let partial = path.with_file_name(name);
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}

fn load_plan(plan: &Path) -> Result<Program, Failure> {
    let text = read(plan, "plan")?;
    comet_ir::plan::read_plan_json(&text)
        .map_err(|e| Failure(format!("error: cannot load plan `{}`: {e}", plan.display())))
}

fn run_show(plan: &Path, emit: Emit) -> Result<(), Failure> {
    write_out(None, &render(&load_plan(plan)?, emit)?)
}

fn inspect_plan(plan: &Path, opts: &InspectOptions) -> Result<Report, Failure> {
    let program = load_plan(plan)?;
    inspect::report(&program, &plan.display().to_string(), opts)
        .map_err(|e| Failure(format!("error: {e}")))
}

fn run_inspect(args: &InspectArgs) -> Result<(), Failure> {
    if args.leakage {
        let program = load_plan(&args.plan)?;
        let report = inspect::leakage::leakage(&program, &args.plan.display().to_string());
        return write_out(
            None,
            &match args.json {
                true => inspect::to_json(&report),
                false => inspect::leakage::render_leakage(&report),
            },
        );
    }
    let opts = InspectOptions {
        prompt: args.prompt,
        generate: args.generate,
        net: args.net.clone(),
        compute_rate: args.compute_rate,
        weight_bound: args.weight_bound,
    };
    let this = inspect_plan(&args.plan, &opts)?;
    let (text, svg) = match &args.compare {
        None => (
            match args.json {
                true => inspect::to_json(&this),
                false => inspect::render(&this),
            },
            args.svg.as_ref().map(|_| inspect::svg(&this)),
        ),
        Some(other) => {
            let both = inspect::compare(this, inspect_plan(other, &opts)?);
            (
                match args.json {
                    true => inspect::to_json(&both),
                    false => inspect::render_compare(&both),
                },
                args.svg.as_ref().map(|_| inspect::svg_compare(&both)),
            )
        }
    };
    if let (Some(path), Some(svg)) = (&args.svg, svg) {
        let svg = svg.map_err(|e| Failure(format!("error: {e}")))?;
        write_out(Some(path), &svg)?;
    }
    write_out(None, &text)
}
