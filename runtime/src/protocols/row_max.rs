//! The maximum over the last axis by a tournament (PROTOCOLS.md "max over n", CrypTen's
//! `log_reduction`): `⌈log2 t⌉` levels for rows of `t`; a level compares adjacent pairs
//! (DReLU of `a − b`) and then selects `max = b + [a ≥ b]·(a − b)`, an odd last element
//! carried to the next level. With FSS comparisons a level is one fused
//! [`super::sign_select`] gate, `b + (a − b)·[a − b ≥ 0]` with y = x = a − b: 2 rounds per
//! level, x + r opened at 64 bits (it serves as ŷ), then one bit. With GMW comparisons ([`super::gmw`], [`ROUNDS_GMW`] rounds) the bit is an XOR share and
//! the select is [`super::bit_mux`]: 8 rounds per level.

use std::fmt;

use ndarray::{Array2, Axis, IxDyn, concatenate, s};

use super::bit_mux::BitMuxMaterial;
use super::gmw::GmwDreluMaterial;
use super::sign_select::SignSelectMaterial;
use super::{MessageError, PartyId, Share, Step, bit_mux, check_party, gmw, sign_select};

/// Rounds of a GMW comparison level before its select.
pub const ROUNDS_GMW: u64 = gmw::ROUNDS as u64;

/// Rounds per level: the comparison's, then one for the select.
pub fn rounds_per_level(gmw: bool) -> u64 {
    if gmw { ROUNDS_GMW + 1 } else { 2 }
}

/// One level's material for `rows · ⌊k/2⌋` pairs.
// a node holds ⌈log2 t⌉ of these, so the GMW variant's inline size does not matter
#[allow(clippy::large_enum_variant)]
pub enum LevelMaterial {
    /// The sign-select keys (y = x).
    Fss(SignSelectMaterial),
    /// GMW DReLU triples and the XOR-bit select's material.
    Gmw(GmwDreluMaterial, BitMuxMaterial),
}

impl fmt::Debug for LevelMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelMaterial::Fss(d) => f.debug_tuple("Fss").field(d).finish(),
            LevelMaterial::Gmw(d, t) => f.debug_tuple("Gmw").field(d).field(t).finish(),
        }
    }
}

enum Phase {
    Fss(sign_select::State),
    CompareGmw(gmw::State, BitMuxMaterial),
    SelectGmw(bit_mux::State),
}

/// Between rounds: the candidates `[rows, k]`, the current pairs' differences and right
/// elements, and the step in progress.
pub struct State {
    party: PartyId,
    out_shape: Vec<usize>,
    cur: Array2<u64>,
    levels: std::vec::IntoIter<LevelMaterial>,
    diff: Array2<u64>,
    right: Array2<u64>,
    /// Whether FSS levels open `x + r` at the comparison width ([`start_at`]).
    narrow: bool,
    /// The step in progress (`None` only while a step is being replaced).
    phase: Option<Phase>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("row_max::State")
            .field("party", &self.party)
            .field("candidates", &self.cur.dim())
            .finish_non_exhaustive()
    }
}

/// Starts the maximum of `x` (`[.., t]`, `t ≥ 2`) over its last axis with one
/// [`LevelMaterial`] per level.
///
/// # Panics
/// If `t < 2`, or the material does not fit the levels.
pub fn start(party: PartyId, x: &Share, levels: Vec<LevelMaterial>) -> (State, Vec<u8>) {
    start_at(party, x, levels, false)
}

/// [`start`] with each FSS level's `x + r` opened at the comparison width m (`narrow`)
/// instead of 64 bits: the maxima are then correct mod 2^m only, for a maximum read to at
/// most m bits ([`comet_ir::graph::Node::open_at_cmp_width`]).
///
/// # Panics
/// As [`start`].
pub fn start_at(
    party: PartyId,
    x: &Share,
    levels: Vec<LevelMaterial>,
    narrow: bool,
) -> (State, Vec<u8>) {
    check_party(party);
    let t = x.shape().last().copied().unwrap_or(1);
    assert!(t >= 2, "a row maximum over {t} element(s) needs no round");
    let cur = (x.0.to_shape((x.len() / t, t)))
        .expect("rows × t")
        .to_owned();
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank ≥ 1") = 1;
    let empty = Array2::zeros((0, 0));
    let mut st = State {
        party,
        out_shape,
        cur,
        levels: levels.into_iter(),
        diff: empty.clone(),
        right: empty,
        narrow,
        phase: None,
    };
    let msg = compare(&mut st);
    (st, msg)
}

/// Ends a round with the peer's message: the next round's state and message, or this
/// party's share of the maxima (`[.., 1]`) after the last level.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn step(mut st: State, peer: &[u8]) -> Result<Step<State, Share>, MessageError> {
    let phase = st.phase.take().expect("a step in progress");
    let diff = || Share(st.diff.clone().into_dyn());
    let msg = match phase {
        Phase::Fss(s) => match sign_select::step(s, peer)? {
            Step::Next(s, msg) => {
                st.phase = Some(Phase::Fss(s));
                msg
            }
            Step::Done(prod) => return Ok(level_done(st, prod)),
        },
        Phase::CompareGmw(s, m) => match gmw::step(s, peer)? {
            Step::Next(s, msg) => {
                st.phase = Some(Phase::CompareGmw(s, m));
                msg
            }
            Step::Done(bits) => {
                let (s, msg) = bit_mux::start(st.party, &bits, &diff(), m);
                st.phase = Some(Phase::SelectGmw(s));
                msg
            }
        },
        Phase::SelectGmw(s) => {
            let prod = bit_mux::finish(s, peer)?;
            return Ok(level_done(st, prod));
        }
    };
    Ok(Step::Next(st, msg))
}

/// Starts a level's comparison of `a − b` over adjacent pairs `(a, b)`.
fn compare(st: &mut State) -> Vec<u8> {
    let k = st.cur.ncols();
    let pairs = 2 * (k / 2);
    let a = st.cur.slice(s![.., 0..pairs;2]);
    let b = st.cur.slice(s![.., 1..pairs;2]);
    st.diff = ndarray::Zip::from(&a)
        .and(&b)
        .map_collect(|&x, &y| x.wrapping_sub(y));
    st.right = b.to_owned();
    let diff = Share(st.diff.clone().into_dyn());
    match st.levels.next().expect("material for every level") {
        LevelMaterial::Fss(m) => {
            let (s, msg) = sign_select::start_at(st.party, &diff, None, m, st.narrow);
            st.phase = Some(Phase::Fss(s));
            msg
        }
        LevelMaterial::Gmw(d, m) => {
            let (s, msg) = gmw::start(st.party, &diff, d);
            st.phase = Some(Phase::CompareGmw(s, m));
            msg
        }
    }
}

/// Ends a level with the select's product `[a ≥ b]·(a − b)`: the maxima once one
/// candidate is left, else the next level's first message.
fn level_done(mut st: State, prod: Share) -> Step<State, Share> {
    let prod: Array2<u64> = prod.0.into_dimensionality().expect("rank 2");
    let mut next = ndarray::Zip::from(&st.right)
        .and(&prod)
        .map_collect(|&b, &p| b.wrapping_add(p));
    let k = st.cur.ncols();
    if !k.is_multiple_of(2) {
        let last = st.cur.slice(s![.., k - 1..k]);
        next = concatenate(Axis(1), &[next.view(), last]).expect("same rows");
    }
    st.cur = next;
    if st.cur.ncols() > 1 {
        let msg = compare(&mut st);
        return Step::Next(st, msg);
    }
    let out = (st.cur.into_shape_with_order(IxDyn(&st.out_shape))).expect("rows × 1 elements");
    Step::Done(Share(out))
}
