//! The blocked products against a naive triple loop, on awkward shapes and full-range
//! values (every product wraps).

use ndarray::{Array2, ArrayD, ArrayView2, IxDyn, s};
use proptest::prelude::*;

use super::kernel::{Isa, Portable};
use super::*;
use crate::ring::tests::{SplitMix, fixed_seed};

fn naive(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>) -> Array2<u64> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        a.row(i)
            .iter()
            .zip(b.column(j))
            .fold(0u64, |s, (&x, &y)| s.wrapping_add(x.wrapping_mul(y)))
    })
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<u64> {
    let mut rng = SplitMix(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.next_u64())
}

/// Shapes around every boundary: 1 row (decode), `SMALL_M` and one more, `MR` multiples
/// and not, `n` below and not a multiple of `NR`, `k` across `KC` slabs.
const SHAPES: [(usize, usize, usize); 17] = [
    (1, 1, 1),
    (1, 768, 13),
    (1, 5, 3),
    (2, 9, 8),
    (3, 17, 9),
    (4, 31, 37),
    (5, 64, 4),
    (8, 300, 33),
    (9, 257, 5),
    (6, 256, 12),
    (12, 512, 16),
    (13, 513, 70),
    (64, 64, 64),
    (67, 130, 2),
    (130, 260, 131),
    (200, 600, 45),
    (37, 1, 3),
];

fn check_all_routes(m: usize, k: usize, n: usize, seed: u64) {
    let (a, b) = (random(m, k, seed), random(k, n, seed + 1));
    let want = naive(a.view(), b.view());
    assert_eq!(matmul(a.view(), b.view()), want, "matmul {m}×{k}·{k}×{n}");
    let packed = PackedRhs::new(b.view());
    assert_eq!(
        matmul_packed(a.view(), &packed),
        want,
        "packed {m}×{k}·{k}×{n}"
    );
    let portable = with_portable(a.view(), &packed);
    assert_eq!(portable, want, "portable {m}×{k}·{k}×{n}");
}

fn with_portable(a: ArrayView2<'_, u64>, b: &PackedRhs) -> Array2<u64> {
    product(Portable, a, Rhs::Packed(b))
}

#[test]
fn ring_matmul_matches_naive_on_awkward_shapes() {
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        check_all_routes(m, k, n, 100 + 2 * i as u64);
    }
}

#[test]
fn ring_matmul_uses_a_vector_kernel_where_the_cpu_has_one() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert!(matches!(Isa::detect(), Isa::Avx2(_)));
        return;
    }
    assert!(matches!(Isa::detect(), Isa::Portable(_)));
}

#[test]
fn ring_matmul_is_the_same_on_any_number_of_threads() {
    let (a, b) = (random(77, 99, 1), random(99, 50, 2));
    let want = naive(a.view(), b.view());
    for threads in [1, 3, 5] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert_eq!(
            pool.install(|| matmul(a.view(), b.view())),
            want,
            "{threads} threads"
        );
        let a1 = a.slice(s![..3, ..]);
        assert_eq!(pool.install(|| matmul(a1, b.view())), naive(a1, b.view()));
    }
}

#[test]
fn ring_matmul_reads_views_of_any_layout() {
    let (a, b) = (random(40, 30, 3), random(50, 60, 4));
    let at = a.t(); // 30 × 40, column-major
    let bs = b.slice(s![..40;1, ..;3]); // 40 × 20, strided columns
    assert_eq!(matmul(at, bs), naive(at, bs));
    let row = a.slice(s![5..6, ..]);
    let bt = random(17, 30, 5);
    assert_eq!(matmul(row, bt.t()), naive(row, bt.t()));
}

#[test]
fn ring_matmul_of_empty_shapes_is_zero() {
    for (m, k, n) in [(0, 5, 3), (3, 0, 4), (3, 4, 0), (20, 0, 9)] {
        let c = matmul(random(m, k, 1).view(), random(k, n, 2).view());
        assert_eq!(c, Array2::<u64>::zeros((m, n)));
    }
}

#[test]
#[should_panic(expected = "inner dimensions differ")]
fn ring_matmul_rejects_mismatched_inner_dimensions() {
    matmul(random(2, 3, 1).view(), random(4, 2, 2).view());
}

#[test]
fn ring_matmul_is_linear_over_shares() {
    let (x, w) = (random(10, 20, 8), random(20, 7, 9));
    let x0 = random(10, 20, 10);
    let x1 = Array2::from_shape_fn(x.dim(), |ij| x[ij].wrapping_sub(x0[ij]));
    let (y0, y1) = (matmul(x0.view(), w.view()), matmul(x1.view(), w.view()));
    let y = Array2::from_shape_fn(y0.dim(), |ij| y0[ij].wrapping_add(y1[ij]));
    assert_eq!(y, naive(x.view(), w.view()));
}

fn dyn_random(shape: &[usize], seed: u64) -> ArrayD<u64> {
    let mut rng = SplitMix(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.next_u64())
}

#[test]
fn ring_matmul_batched_shares_or_batches_the_right_operand() {
    let a = dyn_random(&[2, 3, 5, 7], 1);
    let b = dyn_random(&[7, 9], 2);
    let c = matmul_batched(a.view(), b.view()).unwrap();
    assert_eq!(c.shape(), &[2, 3, 5, 9]);
    let b2 = b.view().into_dimensionality().unwrap();
    let a4 = a.view().into_dimensionality::<ndarray::Ix4>().unwrap();
    assert_eq!(
        c.slice(s![1, 2, .., ..]),
        naive(a4.slice(s![1, 2, .., ..]), b2)
    );

    let bb = dyn_random(&[2, 3, 7, 4], 3);
    let cb = matmul_batched(a.view(), bb.view()).unwrap();
    assert_eq!(cb.shape(), &[2, 3, 5, 4]);
    let bb4 = bb.view().into_dimensionality::<ndarray::Ix4>().unwrap();
    for (i, j) in [(0, 0), (0, 2), (1, 1)] {
        let want = naive(a4.slice(s![i, j, .., ..]), bb4.slice(s![i, j, .., ..]));
        assert_eq!(cb.slice(s![i, j, .., ..]), want);
    }
}

#[test]
fn ring_matmul_batched_reports_bad_shapes() {
    let bad = |a: &[usize], b: &[usize]| {
        let err = matmul_batched(dyn_random(a, 1).view(), dyn_random(b, 2).view()).unwrap_err();
        (err.reason, err.to_string())
    };
    assert_eq!(bad(&[3], &[3, 2]).0, "both operands need rank 2 or more");
    assert_eq!(bad(&[2, 3], &[4, 2]).0, "inner dimensions differ");
    let (reason, text) = bad(&[2, 3, 4], &[3, 4, 5]);
    assert_eq!(reason, "leading (batch) axes differ");
    assert_eq!(
        text,
        "ring matmul: left is [2, 3, 4], right is [3, 4, 5]: leading (batch) axes differ"
    );
}

proptest! {
    #![proptest_config(fixed_seed(48))]

    #[test]
    fn ring_matmul_matches_naive_on_random_shapes(
        m in 1usize..40, k in 1usize..300, n in 1usize..40, seed: u64,
    ) {
        check_all_routes(m, k, n, seed);
    }
}

#[test]
fn packing_then_unpacking_gives_the_matrix_back() {
    for (k, n, seed) in [(1, 1, 1), (3, 5, 2), (7, 33, 3), (16, 64, 4)] {
        let b = random(k, n, seed);
        assert_eq!(PackedRhs::new(b.view()).to_dense(), b, "{k}×{n}");
    }
}
