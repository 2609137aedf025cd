//! Oblivious shuffle of the rows of a shared matrix `V` `[rows, k]` by `π = π1∘π0`, where
//! only party 0 knows `π0` and only party 1 knows `π1` (the dealer knows both; it does not
//! collude). With `apply(π, V)[i] = V[π[i]]`, the output shares
//! `apply(π1, apply(π0, V))`. Two steps, one one-way message each: 2 rounds, `l·rows·k`
//! bits per step; dealer `l·rows·k` per step ([`ShuffleMaterial`]).
//!
//! Step `j` (permuter `P_j`, masker `P_o`), with masks `a`, `b` of `P_o` and
//! `Δ = apply(π_j, a) − b` of `P_j`: `P_o` sends `z = v_o − a` and keeps `b`; `P_j` keeps
//! `apply(π_j, v_j + z) + Δ = apply(π_j, v) − b`. `z` is masked by `a`, which `P_j` never
//! sees (`Δ` hides it behind `b`), so neither party learns anything of `V` or of the
//! other's permutation. Step 0 sends from party 1 to party 0, step 1 from 0 to 1; the
//! receiver's message is empty, as in [`super::reveal`].
//!
//! Material: step `j` permutes by `π_j`, which only party `j` knows. Per step `j`, the
//! other party (the masker) gets `a_j`, `b_j` from its own stream, and party `j` (the
//! permuter) gets `π_j`, drawn from its own stream at the first call that names the
//! permutation, and the correction `Δ_j = apply(π_j, a_j) − b_j`: the only materialised
//! bytes, `8·rows·k` per step, in party `j`'s body (so party 0's body carries the
//! corrections of step 0). Each party's stream is drawn in the order `π_p` (first use
//! only), then its masks `a_{1−p}`, `b_{1−p}` ([`deal`], [`replay`]).

use std::fmt;

use ndarray::{ArrayD, Axis};
use rand::Rng;
use rand_chacha::ChaCha12Rng;

use super::material::{
    self, DealerStreams, MaterialError, PartyStreams, array_bytes, expand, own_mask,
};
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};

/// `apply(π, v)`: the rows of `v` reordered, row `i` of the result being row `π[i]`.
///
/// # Panics
/// If `π` does not have one entry per row of `v`, or an entry is out of range.
pub fn apply(pi: &[u32], v: &ArrayD<u64>) -> ArrayD<u64> {
    assert_eq!(pi.len(), v.shape()[0], "one permutation entry per row");
    let idx: Vec<usize> = pi.iter().map(|&i| i as usize).collect();
    v.select(Axis(0), &idx)
}

/// Between [`start_step`] and [`finish_step`].
pub struct StepState {
    party: PartyId,
    side: Side,
}

enum Side {
    Permuter {
        v: ArrayD<u64>,
        pi: Vec<u32>,
        delta: ArrayD<u64>,
    },
    Masker {
        b: ArrayD<u64>,
    },
}

impl fmt::Debug for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let permutes = matches!(self.side, Side::Permuter { .. });
        f.debug_struct("shuffle::StepState")
            .field("party", &self.party)
            .field("permutes", &permutes)
            .finish_non_exhaustive()
    }
}

/// Starts step `step` (0, then 1) on this party's share `v` `[rows, k]`: the masker's
/// message is `v_p − a` (`rows·k` values), the permuter's is empty.
///
/// # Panics
/// If `step` is not 0 or 1, the material belongs to another party, is not this party's
/// side of the step, or does not match `v`'s shape.
pub fn start_step(
    party: PartyId,
    step: usize,
    v: &Share,
    m: &ShuffleMaterial,
) -> (StepState, Vec<u64>) {
    check_party(party);
    assert!(step < 2, "a shuffle has steps 0 and 1, not {step}");
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(
        v.shape(),
        m.shape(),
        "v and its shuffle material have one shape"
    );
    let (side, msg) = match &m.steps[step] {
        ShuffleStep::Permuter { pi, delta } => {
            assert_eq!(
                step,
                usize::from(party),
                "party {party} permutes in step {party}"
            );
            let (v, pi, delta) = (v.0.clone(), pi.clone(), delta.clone());
            (Side::Permuter { v, pi, delta }, Vec::new())
        }
        ShuffleStep::Masker { a, b } => {
            assert_ne!(
                step,
                usize::from(party),
                "party {party} masks in step {}",
                1 - party
            );
            let z = ring_ops::sub(v.0.view(), a.view());
            (Side::Masker { b: b.clone() }, ring_ops::flat(&z).collect())
        }
    };
    (StepState { party, side }, msg)
}

/// This party's share after the step.
///
/// # Errors
/// If the peer's message has the wrong length (`rows·k` at the permuter, empty at the
/// masker).
pub fn finish_step(state: StepState, peer: &[u64]) -> Result<Share, MessageError> {
    match state.side {
        Side::Permuter { v, pi, delta } => {
            check_len(peer, v.len())?;
            let s = ring_ops::add(v.view(), ring_ops::from_flat(v.shape(), peer).view());
            Ok(Share(ring_ops::add(apply(&pi, &s).view(), delta.view())))
        }
        Side::Masker { b } => check_len(peer, 0).map(|()| Share(b)),
    }
}

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
    pub(crate) fn delta(&self) -> &ArrayD<u64> {
        match &self.steps[usize::from(self.party)] {
            ShuffleStep::Permuter { delta, .. } => delta,
            ShuffleStep::Masker { .. } => unreachable!("party p permutes in step p"),
        }
    }

    /// Party `party`'s material from its permutation, its masks and its correction.
    pub(crate) fn assemble(
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

/// Draws `π0` and `π1` of `rows` rows, each from its party's stream (free).
///
/// # Panics
/// If `rows` exceeds `2^32` (`check_rows` refuses that).
pub fn deal_perm(d: &mut dyn DealerStreams, rows: usize) -> ShufflePerm {
    ShufflePerm {
        pis: [0, 1].map(|p| draw_permutation(d.stream(p), rows)),
    }
}

/// Deals one shuffle by `perm` of a `[rows, k]` matrix: fresh masks, and the corrections
/// `Δ_0`, `Δ_1` (counted: `2 · 8·rows·k` bytes).
pub fn deal(d: &mut dyn DealerStreams, perm: &ShufflePerm, k: usize) -> [ShuffleMaterial; 2] {
    let shape = [perm.rows(), k];
    // step j: the masker 1 − j draws (a_j, b_j), the permuter j gets Δ_j
    let steps = [1, 0].map(|p| [0; 2].map(|_| expand(d.stream(p), &shape)));
    let deltas = [0, 1].map(|j| correction(&perm.pis[j], &steps[j][0], &steps[j][1]));
    d.count_offline(2 * 8 * (perm.rows() * k) as u64);
    let [step0, step1] = steps;
    let [d0, d1] = deltas;
    let [pi0, pi1] = perm.pis.clone();
    [
        ShuffleMaterial::assemble(0, pi0, step1, d0),
        ShuffleMaterial::assemble(1, pi1, step0, d1),
    ]
}

/// What each party's material body carries: its `Δ` (the step it permutes in).
pub fn body(m: &[ShuffleMaterial; 2]) -> [Vec<u8>; 2] {
    m.each_ref().map(|m| array_bytes(m.delta()))
}

/// One party's material of a shuffle of a `[rows, k]` matrix by its permutation `pi`
/// (drawn with `draw_permutation` at the first use), as [`deal`] drew it.
///
/// # Errors
/// If the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    pi: Vec<u32>,
    k: usize,
) -> Result<ShuffleMaterial, MaterialError> {
    let shape = [pi.len(), k];
    let masks = [own_mask(r, &shape), own_mask(r, &shape)];
    let delta = material::correction(r, &shape)?;
    Ok(ShuffleMaterial::assemble(r.party(), pi, masks, delta))
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
pub(crate) fn check_rows(
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
pub(crate) fn draw_permutation(rng: &mut ChaCha12Rng, rows: usize) -> Vec<u32> {
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
