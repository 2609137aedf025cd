//! The share matmul against the plaintext f64 matmul of the same shape.
//!
//! The share product is the one a plan runs for `X · W` with weights `W`
//! (`protocols::fixed`, `fixed_matmul`): after the session's setup opened `F = W − B`
//! (packed, with the party's `B_p`), a call has each party send `E_p = X_p − A_p` and, once
//! `E` is open, compute `C_p + E·B_p + (A_p + [p = 0]·E)·F`: two ring products against
//! packed operands. Timed: party 0's `matmul_start` and `finish` (the larger side: it
//! adds `E`), with the peer's message at hand, as one party computes it. The f64 side is
//! `ndarray`'s `dot` (matrixmultiply, one thread as ndarray builds it).

use comet_ir::NodeId;
use comet_runtime::dealer::Dealer;
use comet_runtime::protocols::{Share, fixed};
use comet_runtime::ring;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

use super::model::{rng, uniform};

/// One shape's figures (seconds: medians, and the fastest repetitions).
pub struct Row {
    /// `(m, k, n)`: `[m, k] · [k, n]`.
    pub shape: (usize, usize, usize),
    /// What the shape is in GPT-2 small.
    pub what: &'static str,
    /// One party's share product.
    pub share_s: f64,
    /// The f64 product.
    pub f64_s: f64,
    /// One ring product against a packed right operand (the share product makes two).
    pub product_s: f64,
    /// The fastest repetition of the share product.
    pub share_min_s: f64,
    /// The fastest repetition of the f64 product.
    pub f64_min_s: f64,
}

/// The shapes: GPT-2 small's projections at 128 tokens, and two decode-step products.
pub fn shapes(quick: bool) -> Vec<((usize, usize, usize), &'static str)> {
    if quick {
        return vec![
            ((16, 32, 32), "tiny"),
            ((16, 32, 96), "tiny"),
            ((1, 32, 1000), "tiny, one row"),
            ((1, 32, 96), "tiny, one row"),
        ];
    }
    vec![
        ((128, 768, 768), "prefill, attention output"),
        ((128, 768, 3072), "prefill, MLP up"),
        ((1, 768, 50257), "decode, LM head"),
        ((1, 768, 3072), "decode, MLP up"),
    ]
}

fn random_ring(shape: &[usize], r: &mut rand_chacha::ChaCha12Rng) -> ArrayD<u64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || r.next_u64())
}

/// `a + b` (wrapping) of two 2-D ring tensors.
fn sum([a, b]: &[ArrayD<u64>; 2]) -> Array2<u64> {
    let z = ndarray::Zip::from(a)
        .and(b)
        .map_collect(|&a, &b| a.wrapping_add(b));
    z.into_dimensionality().expect("2-D")
}

/// The median and the minimum of `reps` timings after one warm-up; `f` returns the time
/// of the timed part.
fn median(reps: usize, mut f: impl FnMut() -> Duration) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..reps).map(|_| f().as_secs_f64()).collect();
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

/// Measures one shape.
///
/// # Errors
/// If the share product does not reconstruct to `X · W` (the benchmark would time a wrong
/// product).
pub fn measure(
    (m, k, n): (usize, usize, usize),
    what: &'static str,
    reps: usize,
    seed: u64,
) -> Result<Row, String> {
    let mut r = rng(seed, 0x3000 + (m * 31 + k * 7 + n) as u64);
    let mut dealer = Dealer::from_u64(seed);
    // the session's setup: W's shares, its mask, and the opened F = W − B (packed)
    let w = [random_ring(&[k, n], &mut r), random_ring(&[k, n], &mut r)];
    let (mask, [mb0, mb1]) = dealer.fixed_mask(NodeId::from_index(0), &[k, n]);
    let (s0, f0) = fixed::setup_start(0, &Share(w[0].clone()), mb0);
    let (s1, f1) = fixed::setup_start(1, &Share(w[1].clone()), mb1);
    let ops = [
        fixed::setup_finish(s0, &f1).map_err(|e| e.to_string())?,
        fixed::setup_finish(s1, &f0).map_err(|e| e.to_string())?,
    ];
    // a call: X's shares and the dealer's material for X · W
    let x = [random_ring(&[m, k], &mut r), random_ring(&[m, k], &mut r)];
    let [c0, c1] = dealer.fixed_matmul(&mask, &[m, k]);
    let (st1, e1) = fixed::matmul_start(1, &Share(x[1].clone()), c1);
    // correctness, once: the two parties' shares add up to X · W
    let (st0, e0) = fixed::matmul_start(0, &Share(x[0].clone()), c0.clone());
    let z0 = fixed::finish(st0, &ops[0], &e1).map_err(|e| e.to_string())?;
    let z1 = fixed::finish(st1, &ops[1], &e0).map_err(|e| e.to_string())?;
    let expect = ring::matmul(sum(&x).view(), sum(&w).view());
    let got = sum(&[z0.0, z1.0]);
    if got != expect {
        return Err(format!(
            "share matmul {m}×{k} · {k}×{n}: the parties' shares do not add up to X · W"
        ));
    }
    let x0 = Share(x[0].clone());
    let (share_s, share_min_s) = median(reps, || {
        let material = c0.clone();
        let start = Instant::now();
        let (st, msg) = fixed::matmul_start(0, &x0, material);
        let z = fixed::finish(st, &ops[0], &e1).expect("the peer's message fits");
        let t = start.elapsed();
        black_box((z, msg));
        t
    });
    // one of the two ring products alone, against a right operand packed ahead
    let packed = ring::PackedRhs::new(w[0].view().into_dimensionality().expect("2-D"));
    let x2 = x[0].view().into_dimensionality().expect("2-D");
    let (product_s, _) = median(reps, || {
        let start = Instant::now();
        let z = ring::matmul_packed(black_box(x2), black_box(&packed));
        let t = start.elapsed();
        black_box(z);
        t
    });
    drop(packed);
    let a = Array2::from_shape_simple_fn((m, k), || uniform(&mut r));
    let b = Array2::from_shape_simple_fn((k, n), || uniform(&mut r));
    let (f64_s, f64_min_s) = median(reps, || {
        let start = Instant::now();
        let c = black_box(&a).dot(black_box(&b));
        let t = start.elapsed();
        black_box(c);
        t
    });
    eprintln!(
        "matmul {m}×{k} · {k}×{n}: share {:.3} ms (one packed ring product {:.3} ms), \
         f64 {:.3} ms",
        share_s * 1e3,
        product_s * 1e3,
        f64_s * 1e3
    );
    Ok(Row {
        shape: (m, k, n),
        what,
        share_s,
        f64_s,
        share_min_s,
        f64_min_s,
        product_s,
    })
}
