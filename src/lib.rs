//! The library half of the `comet` package: generation with a compiled plan (both parties
//! in one process, or one party of a two-process run), shared by the CLI (`src/main.rs`)
//! and the Python package (`python/`), so that both run the same code.
//!
//! - [`run`]: `comet run`'s arguments ([`run::RunArgs`]), the in-process run, plans,
//!   checkpoints, tokenizers and prompts;
//! - [`remote`]: one party over TCP (`comet run --party P`);
//! - [`dealer`]: the dealer service (`comet dealer`) and key pairs (`comet keygen`);
//! - [`generate`]: the generation loop, token choice and the plan's estimate per call;
//! - [`report`]: what a run prints (a summary, or one JSON object);
//! - [`progress`]: progress bars on a terminal.

pub mod dealer;
pub mod encode;
pub mod generate;
pub mod progress;
pub mod remote;
pub mod report;
pub mod run;
