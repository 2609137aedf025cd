//! # comet-runtime: the two-party runtime
//!
//! So far: the f64 plaintext interpreter ([`plain`]) and the fixed-point plaintext backend
//! ([`fixed`]), the references every two-party run is compared against; weight loading
//! from safetensors checkpoints ([`weights`]); Z_2^64 fixed-point arithmetic, local
//! truncation and the share matrix product ([`ring`]); channels that count rounds and
//! payload bytes, in memory and over TCP ([`transport`]); function secret sharing for
//! comparisons ([`fss`]); the arithmetic protocols as pure state machines ([`protocols`])
//! and the in-process dealer ([`dealer`]); the round-walking two-party interpreter
//! ([`interp`], in process). To come (docs/runtime.md): material files, runs over TCP and
//! generation. The crate depends on `comet-ir` (to read plans) and never on the compiler.
#![deny(missing_docs)]

pub mod dealer;
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

pub use comet_ir::plan::read_plan_json as load_plan;
