//! # The execution core
//!
//! What every backend of the runtime shares when it executes a program (docs/runtime.md,
//! "One execution core"): the f64 reference interpreter ([`crate::plain`]), the
//! fixed-point backend ([`crate::fixed`]) and each party of a two-party run
//! ([`crate::interp`]) number a call's nodes by one [`Layout`], keep the KV cache in one
//! [`Cache`] with validity, check inputs, weights and cache reads with the same functions
//! ([`sources`]) and report the same [`ExecError`]s, naming the place ([`At`]).
//!
//! The plaintext backends are [`Backend`]s of one walker ([`evaluate`]): topological
//! order, each value checked against its node's declared shape and dropped after its last
//! reader, an optional trace and [`Hook`], cache writes applied only when the call
//! succeeds. The parties walk the same layout round by round instead
//! ([`crate::interp::ExecPlan`] adds the round schedule to it), since their values are
//! shares that communicating nodes compute together.

mod cache;
mod error;
mod layout;
pub mod sources;
mod walk;

pub use cache::{Cache, CacheError};
pub use error::{At, ExecError};
pub use layout::{Layout, Pos};
pub use walk::{Backend, Call, Evaluation, Hook, OpNode, Value, evaluate};
