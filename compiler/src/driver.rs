//! The driver: parse, then run the passes in order, verifying after each one.
//!
//! Reads as a straight list of steps (cranelift's `Context::optimize` shape). The verifier
//! runs after every pass when [`Options::verify`] is set, which is the default in debug
//! builds and tests; `--verify` turns it on in release.

use crate::diag::{Diagnostic, SourceError};
use crate::front::parse::parse_model;
use crate::passes::{
    PIPELINE, approximate, cache_openings, cost, expand, faithful_trunc, fold_biases, fold_gains,
    fuse_selects, fuse_trunc_openings, head_mask_rounds, head_sparsify, insert_conversions, lower,
    narrow_comparisons, narrow_openings, schedule, sparsify,
};
use comet_ir::{ApproxConfig, Comparison, Program, SparsityOptions, VerifyError, verify};
use std::time::{Duration, Instant};

/// A pass over the IR (some capture the options).
type Pass<'a> = dyn Fn(&mut Program) + 'a;

/// How to compile.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run the verifier after every pass.
    pub verify: bool,
    /// Capture the printed IR after this pass.
    pub print_after: Option<String>,
    /// The comparison protocol the plan uses.
    pub comparison: Comparison,
    /// The approximation profile of each op kind (pass `approximate`); the plan records
    /// what is applied ([`approximate::effective`]).
    pub approx: ApproxConfig,
    /// Block-sparse FFNs (pass `sparsify`); `None`: dense.
    pub sparsity: Option<SparsityOptions>,
    /// Head-sparse attention (pass `head-sparsify`); `None`: dense attention.
    pub heads: Option<head_sparsify::HeadSparsityOptions>,
    /// Products with the KV cache open each cached row once, when it is written (pass
    /// `cache-openings`); `false`: every call re-opens the whole cache in Beaver products.
    pub cache_openings: bool,
    /// FSS comparisons work on the widths the range analysis proves (pass
    /// `narrow-comparisons`, from the truncation policy's weight bound); `false`: every
    /// comparison on the whole 64-bit ring.
    pub narrow_comparisons: bool,
    /// Products whose value is read modulo 2^w only open their operands modulo 2^w, packed
    /// at w bits (pass `narrow-openings`); `false`: every opening on the whole ring.
    pub narrow_openings: bool,
    /// A comparison of a stochastic truncation reads the truncation's opening instead of
    /// opening its own (pass `fuse-trunc-openings`); `false`: every comparison opens.
    pub fuse_trunc_openings: bool,
    /// A `lut` norm read only by weight products leaves its gain and bias to them (pass
    /// `fold-norm-gains`), and a product whose bias feeds a `lut` activation takes it as a
    /// row of its fixed operand (pass `fold-biases`); `false`: neither.
    pub fold_gains: bool,
    /// Which truncations are faithful (pass `faithful-trunc`); `None`: every truncation
    /// local, as before the pass.
    pub truncation: Option<comet_ir::TruncationPolicy>,
    /// Declared statistics of the weights (`comet compile --weights`), by weight name;
    /// the range analysis bounds products by them.
    pub weight_stats: Option<std::collections::BTreeMap<String, comet_ir::WeightStats>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify: cfg!(debug_assertions),
            print_after: None,
            comparison: Comparison::default(),
            approx: ApproxConfig::default(),
            sparsity: None,
            heads: None,
            cache_openings: true,
            narrow_comparisons: true,
            narrow_openings: true,
            fuse_trunc_openings: true,
            fold_gains: true,
            truncation: Some(faithful_trunc::default_policy()),
            weight_stats: None,
        }
    }
}

/// The result of a compilation.
#[derive(Debug)]
pub struct Compiled {
    /// The program after the last pass.
    pub program: Program,
    /// The text printed after `print_after`, if asked.
    pub printed: Option<String>,
    /// Time spent in each pass, in pipeline order (parsing first).
    pub timings: Vec<(&'static str, Duration)>,
}

/// Why compilation failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A mistake in the source, with its place.
    #[error("{0}")]
    Source(Box<SourceError>),
    /// A pass produced invalid IR: a compiler bug, reported with the pass's name.
    #[error("internal error: pass `{pass}` produced invalid IR\n{error}")]
    Internal {
        /// The pass.
        pass: &'static str,
        /// What the verifier found.
        error: VerifyError,
    },
    /// `--sparsity` does not fit the model.
    #[error(transparent)]
    Sparsify(#[from] sparsify::SparsifyError),
    /// `--sparsity heads` does not fit the model.
    #[error(transparent)]
    HeadSparsify(#[from] head_sparsify::HeadSparsifyError),
    /// `--print-after` names no pass.
    #[error("unknown pass `{0}`: expected one of {passes}", passes = PIPELINE.join(", "))]
    UnknownPass(String),
}

/// Compiles `.model` source text; `path` names it in diagnostics.
pub fn compile(source: &str, path: &str, opts: &Options) -> Result<Compiled, CompileError> {
    if let Some(p) = &opts.print_after
        && !PIPELINE.contains(&p.as_str())
    {
        return Err(CompileError::UnknownPass(p.clone()));
    }
    let in_source = |d: Diagnostic| CompileError::Source(Box::new(d.with_source(path, source)));
    let mut timings = Vec::new();
    let start = Instant::now();
    let ast = parse_model(source).map_err(in_source)?;
    timings.push(("parse", start.elapsed()));

    let start = Instant::now();
    let mut program = lower::lower(&ast).map_err(in_source)?;
    program.options.comparison = opts.comparison;
    program.options.approx = approximate::effective(opts.approx);
    program.options.truncation = opts.truncation;
    program.options.weight_stats = opts.weight_stats.clone();
    timings.push(("lower", start.elapsed()));
    let mut printed = after_pass("lower", &program, opts)?;
    if let Some(s) = &opts.sparsity {
        let start = Instant::now();
        sparsify::run(&mut program, s)?;
        timings.push(("sparsify", start.elapsed()));
        printed = after_pass("sparsify", &program, opts)?.or(printed);
    }
    if let Some(h) = &opts.heads {
        let start = Instant::now();
        head_sparsify::run(&mut program, h)?;
        timings.push(("head-sparsify", start.elapsed()));
        printed = after_pass("head-sparsify", &program, opts)?.or(printed);
    }
    let skip: fn(&mut Program) = |_| {};
    let narrow = |p: &mut Program| {
        if opts.narrow_comparisons {
            narrow_comparisons::run(p);
        }
    };
    // a widened truncation reads more bits of the product before it
    let fuse = |p: &mut Program| {
        if opts.fuse_trunc_openings && fuse_trunc_openings::run(p) && opts.narrow_openings {
            narrow_openings::run(p);
        }
    };
    let passes: [(&'static str, &Pass<'_>); 14] = [
        (
            "fold-norm-gains",
            if opts.fold_gains {
                &fold_gains::run
            } else {
                &skip
            },
        ),
        (
            "fold-biases",
            if opts.fold_gains {
                &fold_biases::run
            } else {
                &skip
            },
        ),
        ("approximate", &approximate::run),
        ("expand", &expand::run),
        ("insert-conversions", &insert_conversions::run),
        ("fuse-selects", &fuse_selects::run),
        (
            "cache-openings",
            if opts.cache_openings {
                &cache_openings::run
            } else {
                &skip
            },
        ),
        ("faithful-trunc", &faithful_trunc::run),
        ("narrow-comparisons", &narrow),
        (
            "narrow-openings",
            if opts.narrow_openings {
                &narrow_openings::run
            } else {
                &skip
            },
        ),
        ("fuse-trunc-openings", &fuse),
        ("head-mask-rounds", &head_mask_rounds::run),
        ("schedule", &schedule::run),
        ("cost", &cost::run),
    ];
    for (name, pass) in passes {
        let start = Instant::now();
        pass(&mut program);
        timings.push((name, start.elapsed()));
        printed = after_pass(name, &program, opts)?.or(printed);
    }

    Ok(Compiled {
        program,
        printed,
        timings,
    })
}

/// Parses and lowers `.model` source text only: the semantic-stage program (no
/// approximation, expansion or conversions), verified. Analyses that read composite ops,
/// such as FFN detection ([`comet_ir::ffn`]), and the f64 interpreter run on it.
pub fn lower_only(source: &str, path: &str) -> Result<Program, CompileError> {
    let in_source = |d: Diagnostic| CompileError::Source(Box::new(d.with_source(path, source)));
    let ast = parse_model(source).map_err(in_source)?;
    let program = lower::lower(&ast).map_err(in_source)?;
    verify(&program).map_err(|error| CompileError::Internal {
        pass: "lower",
        error,
    })?;
    Ok(program)
}

/// Verifies (if enabled) and captures the text form (if asked) after `pass`.
fn after_pass(
    pass: &'static str,
    p: &Program,
    opts: &Options,
) -> Result<Option<String>, CompileError> {
    if opts.verify {
        verify(p).map_err(|error| CompileError::Internal { pass, error })?;
    }
    Ok((opts.print_after.as_deref() == Some(pass)).then(|| comet_ir::print::print_graph(p)))
}
