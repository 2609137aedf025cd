//! The range analysis's view of the runtime agrees with the runtime.

/// `causal_mask` adds the same offset in the compiler's analysis and in the runtime.
#[test]
fn causal_mask_offset_matches_the_runtime() {
    assert_eq!(
        comet_ir::range::CAUSAL_MASK_OFFSET,
        comet_runtime::fixed::MASK_OFFSET
    );
}
