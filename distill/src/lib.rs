//! # comet-distill: fine-tuning a checkpoint for an approximation profile
//!
//! `comet distill` (issue 17) makes an approximated model (`--approx pcf`, `mpcformer`, a
//! per-kind mix) keep the accuracy of the original by knowledge distillation: the
//! **teacher** is the model as written (`lower` only, exact functions) on the original
//! weights; the **student** is the same model after the pass `approximate` (the forms the
//! two parties will compute), initialised from the same weights. Sequences are sampled
//! from the teacher itself (seeded, with a temperature; optionally continuing prompts from
//! a file), and the student is trained to match the teacher's next-token distribution at
//! every position (KL divergence), optionally its residual stream too (per-layer MSE).
//!
//! Forward passes are the runtime's f64 reference interpreter
//! ([`comet_runtime::plain`]); gradients are reverse mode over its trace ([`grad`]), so the
//! differentiated function is exactly the interpreted program. Training is Adam, seeded,
//! parallel over the sequences of a batch (rayon), resumable from a state file that holds
//! the weights and the optimizer's moments in f64 ([`state`]). The result is a safetensors
//! file with the input's tensor names, shapes and dtypes ([`checkpoint`]).
//!
//! The design and its measurements are in `docs/distill.md`.

pub mod checkpoint;
pub mod grad;
pub mod model;
pub mod state;
pub mod train;

pub use model::{Models, Weights};
pub use train::{Config, Metrics, Report, StepLog, distill, evaluate};

use std::path::PathBuf;

/// Why distillation could not run. Each names the place and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// The model does not compile.
    #[error("{0}")]
    Compile(String),
    /// The model is not a language model this command can train.
    #[error("model `{model}`: {message}")]
    Model {
        /// The model's path.
        model: String,
        /// What is missing.
        message: String,
    },
    /// The checkpoint does not fit the model (names, shapes, dtypes) or cannot be read.
    #[error("weights `{path}`: {message}")]
    Weights {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A gradient could not be computed.
    #[error(transparent)]
    Grad(#[from] grad::GradError),
    /// The interpreter failed on a sequence.
    #[error("evaluating the {which}: {message}")]
    Eval {
        /// `teacher` or `student`.
        which: &'static str,
        /// The interpreter's error.
        message: String,
    },
    /// A bad option.
    #[error("{0}")]
    Usage(String),
    /// The prompts file.
    #[error("prompts `{path}`: {message}")]
    Prompts {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A state file to resume from does not fit this run.
    #[error("state `{path}`: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {what} `{path}`: {message}")]
    Write {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// Training diverged.
    #[error(
        "training diverged at step {step}: the loss is {loss} (lower --lr, or check the \
         profile's forms on this model)"
    )]
    Diverged {
        /// The step.
        step: u64,
        /// The loss.
        loss: f64,
    },
}
