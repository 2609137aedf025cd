//! # comet-runtime: the two-party runtime
//!
//! Layered bottom up (docs/runtime.md): Z_2^64 fixed-point arithmetic, shares, message
//! packing, local truncation and the share matrix product ([`ring`]); function secret
//! sharing for comparisons ([`fss`]); the protocols, one file each with its material, its
//! dealing and its replay, and one dispatch ([`protocols`]); the dealer's streams, material
//! files and the dealer service ([`dealer`]); the execution core that every backend
//! shares: a call's layout, the KV cache with validity, the checks of inputs, weights and
//! cache reads, their errors, and the plaintext backends' walker ([`exec`]); the two-party
//! execution plan of a call, its walker and sessions, in one process or one party per
//! process ([`interp`]); channels that count rounds and payload bytes, in memory and over
//! TCP ([`transport`]). Beside them: the f64
//! and fixed-point plaintext backends of [`exec`] ([`plain`], [`fixed`]), the references
//! every two-party run is compared against; weights from safetensors checkpoints, whole or
//! memory-mapped ([`weights`]); the sparsity predictors ([`sparsity`]); the tokenizer. The
//! crate depends on `comet-ir` (to read plans) and never on the compiler.
#![deny(missing_docs)]

pub mod dealer;
pub mod exec;
pub mod fixed;
pub mod fss;
pub mod interp;
pub mod movement;
pub mod plain;
pub mod protocols;
pub mod ring;
pub mod sparsity;
pub mod tokenizer;
pub mod transport;
pub mod weights;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_entry;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod redaction_tests;

pub use comet_ir::plan::read_plan_json as load_plan;
