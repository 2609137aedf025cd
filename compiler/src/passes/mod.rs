//! The pass pipeline. One pass per file (or folder), each with the name `--print-after`
//! takes. Passes run in [`PIPELINE`] order; the verifier runs after each one in debug
//! builds and tests (see [`crate::driver`]).

pub mod approximate;
mod builder;
pub mod cache_openings;
pub mod cost;
pub mod expand;
pub mod faithful_trunc;
pub mod fold_biases;
pub mod fold_gains;
pub mod fuse_selects;
pub mod fuse_trunc_openings;
pub mod head_mask_rounds;
pub mod head_sparsify;
pub mod insert_conversions;
pub mod lower;
pub mod narrow_comparisons;
pub mod narrow_openings;
pub mod schedule;
pub mod sparsify;

/// Names of the passes, in pipeline order.
pub const PIPELINE: &[&str] = &[
    "lower",
    "sparsify",
    "head-sparsify",
    "fold-norm-gains",
    "fold-biases",
    "approximate",
    "expand",
    "insert-conversions",
    "fuse-selects",
    "cache-openings",
    "faithful-trunc",
    "narrow-comparisons",
    "narrow-openings",
    "fuse-trunc-openings",
    "head-mask-rounds",
    "schedule",
    "cost",
];
