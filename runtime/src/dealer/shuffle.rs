//! Material of the oblivious row shuffle ([`crate::protocols::shuffle`]): `π = π1∘π0`,
//! step `j` permuting by `π_j`, which only party `j` knows.
//!
//! Per step `j`, the other party (the masker) gets `a_j`, `b_j` from its own stream, and
//! party `j` (the permuter) gets `π_j`, drawn from its own stream at the first call that
//! names the permutation, and the correction `Δ_j = apply(π_j, a_j) − b_j`: the only
//! materialised bytes, `8·rows·k` per step, written to party `j`'s file (so party 0's file
//! carries the corrections of step 0). Each party's stream is drawn in the order
//! `π_p` (first use only), then its masks `a_{1−p}`, `b_{1−p}`, as [`PartyReplay`] does.
//!
//! [`PartyReplay`]: super::PartyReplay

use std::fmt;

use ndarray::ArrayD;
use rand::Rng;
use rand_chacha::ChaCha12Rng;

use super::{Dealer, MaterialError, expand};
use crate::protocols::PartyId;
use crate::protocols::ring_ops;
use crate::protocols::shuffle::apply;

/// One party's side of one step of a shuffle.
#[derive(Clone, PartialEq, Eq)]
pub enum ShuffleStep {
    /// This party permutes (step `j` = this party).
    Permuter {
        /// This party's permutation `π_j` of the rows.
        pi: Vec<u32>,
        /// `apply(π_j, a_j) − b_j`, `[rows, k]` (the materialised correction).
        delta: ArrayD<u64>,
    },
    /// This party masks its share and keeps `b_j`.
    Masker {
        /// The mask `a_j` of this party's share, `[rows, k]`.
        a: ArrayD<u64>,
        /// This party's output share `b_j`, `[rows, k]`.
        b: ArrayD<u64>,
    },
}

/// One party's material of one shuffle of a `[rows, k]` matrix: its side of step 0 and of
/// step 1 (party `p` permutes in step `p` and masks in the other).
#[derive(Clone, PartialEq, Eq)]
pub struct ShuffleMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Steps 0 and 1.
    pub steps: [ShuffleStep; 2],
}

impl ShuffleMaterial {
    /// This party's permutation `π_party` (`None` only in malformed material).
    pub fn permutation(&self) -> Option<&[u32]> {
        self.steps.iter().find_map(|s| match s {
            ShuffleStep::Permuter { pi, .. } => Some(pi.as_slice()),
            ShuffleStep::Masker { .. } => None,
        })
    }

    /// `[rows, k]`: the shape of the matrix it shuffles.
    pub fn shape(&self) -> &[usize] {
        match &self.steps[0] {
            ShuffleStep::Permuter { delta, .. } => delta.shape(),
            ShuffleStep::Masker { a, .. } => a.shape(),
        }
    }
}

impl ShuffleMaterial {
    /// The correction this party receives: `Δ` of the step it permutes in.
    pub(super) fn delta(&self) -> &ArrayD<u64> {
        match &self.steps[usize::from(self.party)] {
            ShuffleStep::Permuter { delta, .. } => delta,
            ShuffleStep::Masker { .. } => unreachable!("party p permutes in step p"),
        }
    }

    /// Party `party`'s material from its permutation, its masks and its correction.
    pub(super) fn assemble(
        party: PartyId,
        pi: Vec<u32>,
        [a, b]: [ArrayD<u64>; 2],
        delta: ArrayD<u64>,
    ) -> ShuffleMaterial {
        let (perm, mask) = (
            ShuffleStep::Permuter { pi, delta },
            ShuffleStep::Masker { a, b },
        );
        let steps = if party == 0 {
            [perm, mask]
        } else {
            [mask, perm]
        };
        ShuffleMaterial { party, steps }
    }
}

impl fmt::Debug for ShuffleStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShuffleStep::Permuter { delta, .. } => {
                write!(f, "Permuter([..] shape {:?})", delta.shape())
            }
            ShuffleStep::Masker { a, .. } => write!(f, "Masker([..] shape {:?})", a.shape()),
        }
    }
}

impl fmt::Debug for ShuffleMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShuffleMaterial")
            .field("party", &self.party)
            .field("shape", &self.shape())
            .finish_non_exhaustive()
    }
}

/// The dealer's record of a named permutation: both `π0` and `π1`. Never leaves the
/// dealer.
pub struct ShufflePerm {
    pis: [Vec<u32>; 2],
}

impl ShufflePerm {
    /// Rows it permutes.
    pub fn rows(&self) -> usize {
        self.pis[0].len()
    }
}

impl fmt::Debug for ShufflePerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShufflePerm([..] rows {})", self.rows())
    }
}

impl Dealer {
    /// Draws `π0` and `π1` of `rows` rows, each from its party's stream (free).
    ///
    /// # Panics
    /// If `rows` exceeds `2^32` ([`Deal::shuffle`](super::Deal::shuffle) refuses that).
    pub fn shuffle_perm(&mut self, rows: usize) -> ShufflePerm {
        ShufflePerm {
            pis: [0, 1].map(|p| draw_permutation(&mut self.streams[p], rows)),
        }
    }

    /// Material of one shuffle by `perm` of a `[rows, k]` matrix: fresh masks, and the
    /// corrections `Δ_0`, `Δ_1` (counted: `2 · 8·rows·k` bytes).
    pub fn shuffle(&mut self, perm: &ShufflePerm, k: usize) -> [ShuffleMaterial; 2] {
        let shape = [perm.rows(), k];
        // step j: the masker 1 − j draws (a_j, b_j), the permuter j gets Δ_j
        let steps = [1, 0].map(|p| [0; 2].map(|_| expand(&mut self.streams[p], &shape)));
        let deltas = [0, 1].map(|j| correction(&perm.pis[j], &steps[j][0], &steps[j][1]));
        self.offline_bytes += 2 * 8 * (perm.rows() * k) as u64;
        let [step0, step1] = steps;
        let [d0, d1] = deltas;
        let [pi0, pi1] = perm.pis.clone();
        [
            ShuffleMaterial::assemble(0, pi0, step1, d0),
            ShuffleMaterial::assemble(1, pi1, step0, d1),
        ]
    }
}

/// `Δ = apply(π, a) − b`.
fn correction(pi: &[u32], a: &ArrayD<u64>, b: &ArrayD<u64>) -> ArrayD<u64> {
    ring_ops::sub(apply(pi, a).view(), b.view())
}

/// Checks a shuffle's rows: they fit a `u32` index and, when permutation `perm` was drawn
/// before (for `known` rows), they are the same.
///
/// # Errors
/// Otherwise.
pub(super) fn check_rows(
    perm: u32,
    rows: usize,
    known: Option<usize>,
) -> Result<(), MaterialError> {
    if u32::try_from(rows.saturating_sub(1)).is_err() {
        return Err(MaterialError::Shape(format!(
            "shuffle of {rows} rows: at most 2^32"
        )));
    }
    match known {
        Some(n) if n != rows => Err(MaterialError::Shape(format!(
            "permutation {perm} was drawn for {n} rows, used for {rows}"
        ))),
        _ => Ok(()),
    }
}

/// A uniform permutation of `0..rows` from `rng`: Fisher–Yates with unbiased draws
/// (rejection on the widening product), so a party drawing from its own seed gets the same.
pub(super) fn draw_permutation(rng: &mut ChaCha12Rng, rows: usize) -> Vec<u32> {
    let mut pi: Vec<u32> = (0..rows).map(|i| i as u32).collect();
    for i in (1..rows).rev() {
        pi.swap(i, below(rng, i as u64 + 1) as usize);
    }
    pi
}

/// Uniform in `0..n` (`n > 0`), Lemire's method.
fn below(rng: &mut ChaCha12Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}
