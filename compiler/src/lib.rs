//! Comet's compiler: the `.model` front end and the pass pipeline.
#![deny(missing_docs)]

pub mod cost;
pub mod diag;
pub mod driver;
pub mod front;
pub mod import;
pub mod inspect;
pub mod passes;
pub mod range;

pub use driver::{CompileError, Compiled, Options, compile};
