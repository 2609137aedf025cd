//! A head-masked product with the KV cache ([`comet_ir::Op::CacheMatMul`] with a head
//! mask: a head-sparse attention, pass `head-sparsify`): the merged KV refill.
//!
//! ## Protocol
//! As [`super::cache_matmul`] (same dealer material: `A`, the new rows' mask seeds and
//! `C = A · view(B)` over every row), with the public head mask `M [seq, G]` of the call
//! (`G` KV groups, `g` query heads each):
//!
//! 1. one round: party `p` sends `X_p − A_p` at the entries of the active (token, group)
//!    pairs only (query head `h` at token `t` when `M[t, h / g]`), and `K_p − B_p` for
//!    every row of every group active at some token of the call that was not opened
//!    before: the call's new rows and the rows the group **missed** (written by earlier
//!    calls while it was inactive). A new row of a group inactive in the whole call is not
//!    sent: the party keeps its share `K_p − B_p` until the group is next active.
//! 2. party `p` outputs `Z_p = C_p + E · view(K_p − [p = 0]·F) + X_p · view(F)` at the
//!    entries of the active pairs, and 0 elsewhere (`E = X − A` opened at the active
//!    pairs, `F` the opened rows). An active pair's entries read only the rows of its own
//!    group, all opened by then, so it is the exact product; the others are 0 (their
//!    values reach only the rows of `W_O` the `block_matmul` skips).
//!
//! The misses travel in the round the product has anyway (**merged**: no extra round). The
//! **naive** baseline sends each group's missed rows in an exchange of its own before the
//! product's round: one extra round per miss request (a group with missed rows), the same
//! bytes. What is opened is what the dense product opens, restricted: each row once,
//! under its own fresh mask, and `X − A` under a fresh mask per call; the parties learn
//! the opened head mask (listed in `inspect --leakage`) and nothing else.
//!
//! ## Sizes
//! Online: each party `⌈n_x·w/8⌉ + ⌈n_rows·k·w/8⌉` bytes (`n_x = g·n` entries per active
//! pair), 1 round (merged); dealer as the dense product (the dealer does not know the mask).

use std::fmt;

use ndarray::{Array2, ArrayD, ArrayView2, Axis, IxDyn, concatenate, s};

use super::cache_matmul::{CacheMatMulMaterial, CacheProduct};
use super::material::Product;
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};

/// What the party keeps of a slot between calls: the opened rows (`F`, zeros where not
/// opened), which rows are opened (`[h, t]`), and its own shares `K_p − B_p` of the rows
/// (read where not opened).
#[derive(Clone, PartialEq, Eq)]
pub struct Kept {
    /// The opened rows `[h, t, k]`.
    pub opened: ArrayD<u64>,
    /// Which rows are opened.
    pub valid: Array2<bool>,
    /// This party's `K_p − B_p` of every row `[h, t, k]`.
    pub own: ArrayD<u64>,
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waiting = self.valid.iter().filter(|v| !**v).count();
        f.debug_struct("Kept")
            .field("shape", &self.opened.shape())
            .field("waiting_rows", &waiting)
            .finish()
    }
}

/// A slot's rows before the call, as [`Kept`] borrows them.
#[derive(Clone, Copy)]
pub struct Prior<'a> {
    /// The opened rows `[h, past, k]`.
    pub opened: &'a ArrayD<u64>,
    /// Which rows are opened `[h, past]`.
    pub valid: &'a Array2<bool>,
    /// This party's `K_p − B_p` of the rows, if any row is waiting.
    pub own: Option<&'a ArrayD<u64>>,
}

/// What a call's refill did for one product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refill {
    /// Rows opened (new and missed).
    pub rows: u64,
    /// Rows opened that an earlier call wrote (misses).
    pub missed: u64,
    /// Groups with at least one missed row (miss requests).
    pub requests: u64,
    /// Extra exchanges made for the misses (the naive refill; 0 merged).
    pub exchanges: u64,
    /// Bits both parties sent for the missed rows (`2 · missed · k · width`; over a
    /// unit's products, the sum).
    pub missed_bits: u64,
}

impl Refill {
    /// Both counts added field by field.
    pub fn plus(&self, o: &Refill) -> Refill {
        Refill {
            rows: self.rows + o.rows,
            missed: self.missed + o.missed,
            requests: self.requests + o.requests,
            exchanges: self.exchanges + o.exchanges,
            missed_bits: self.missed_bits + o.missed_bits,
        }
    }
}

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    op: CacheProduct,
    mask: Array2<bool>,
    x: ArrayD<u64>,
    c: ArrayD<u64>,
    e: ArrayD<u64>,
    sent: Vec<u64>,
    kept: Kept,
    rows: Vec<(usize, usize)>,
    naive: Vec<Vec<(usize, usize)>>,
    cm: ArrayD<u64>,
    refill: Refill,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("cache_masked::State")
            .field("party", &self.party)
            .field("op", &self.op)
            .field("refill", &self.refill)
            .finish_non_exhaustive()
    }
}

/// Starts the product: operands `x`, `c`, `new` (this party's shares), the public head
/// mask `[seq, h_kv]`, the slot's rows before the call (`None` before its first write),
/// and `naive`: whether missed rows wait for exchanges of their own ([`State::refill_messages`]).
/// The message is `X_p − A_p` at the active pairs, then the rows opened now.
///
/// # Errors
/// If the shapes, the mask or the prior rows do not fit the operands and material.
pub fn start(
    party: PartyId,
    op: CacheProduct,
    [x, c, new]: [&Share; 3],
    mask: ArrayView2<'_, bool>,
    prior: Option<Prior<'_>>,
    m: CacheMatMulMaterial,
    naive: bool,
) -> Result<(State, Vec<u64>), String> {
    check_party(party);
    let (a, b_new, cm) = m.into_parts(party, x.shape(), new.shape())?;
    let [h, t, k] = *c.shape() else {
        return Err(format!("cache operand {:?} is not [h, t, k]", c.shape()));
    };
    let seq = new.shape()[1];
    let past = t.checked_sub(seq).ok_or("more new rows than cache rows")?;
    let heads = x.shape()[0];
    if mask.dim() != (seq, h) || x.0.ndim() != 3 || heads != h * op.groups.max(1) as usize {
        return Err(format!(
            "head mask {:?} for x {:?} and cache operand {:?}: expected [{seq}, {h}] and \
             {} query heads",
            mask.shape(),
            x.shape(),
            c.shape(),
            h * op.groups.max(1) as usize
        ));
    }
    let f_new = ring_ops::sub(new.0.view(), b_new.view());
    let kept = extend(prior, f_new, [h, past, k], op.slot)?;
    let e = ring_ops::sub(x.0.view(), a.view());
    let mut msg = active_entries(&e, mask, op.groups);
    let group_read = |g: usize| mask.column(g).iter().any(|a| *a);
    let mut rows = Vec::new();
    let mut naive_rows = Vec::new();
    let mut refill = Refill::default();
    for g in (0..h).filter(|&g| group_read(g)) {
        let waiting: Vec<(usize, usize)> = (0..t)
            .filter(|&pos| !kept.valid[[g, pos]])
            .map(|pos| (g, pos))
            .collect();
        let missed: Vec<_> = waiting.iter().copied().filter(|r| r.1 < past).collect();
        refill.rows += waiting.len() as u64;
        refill.missed += missed.len() as u64;
        refill.requests += u64::from(!missed.is_empty());
        match naive && !missed.is_empty() {
            true => {
                rows.extend(waiting.iter().filter(|r| r.1 >= past));
                naive_rows.push(missed);
            }
            false => rows.extend(waiting),
        }
    }
    let sent = rows_of(&kept.own, &rows);
    msg.extend_from_slice(&sent);
    let state = State {
        party,
        op,
        mask: mask.to_owned(),
        x: x.0.clone(),
        c: c.0.clone(),
        e,
        sent,
        kept,
        rows,
        naive: naive_rows,
        cm,
        refill,
    };
    Ok((state, msg))
}

/// The slot's rows with the call's new ones appended (not opened yet).
fn extend(
    prior: Option<Prior<'_>>,
    f_new: ArrayD<u64>,
    [h, past, k]: [usize; 3],
    slot: u32,
) -> Result<Kept, String> {
    let seq = f_new.shape()[1];
    let zeros = ArrayD::zeros(IxDyn(&[h, past, k]));
    let no_rows = Array2::from_elem((h, 0), true);
    // the earlier rows, borrowed: the call's arrays are built once, below
    let (opened, valid, own) = match prior {
        None if past == 0 => (zeros.view(), no_rows.view(), zeros.view()),
        Some(p) if p.opened.shape() == [h, past, k] && p.valid.dim() == (h, past) => {
            let own = match p.own {
                Some(o) if o.shape() == [h, past, k] => o.view(),
                None if p.valid.iter().all(|v| *v) => zeros.view(),
                _ => {
                    return Err(format!(
                        "cache slot {slot}: rows wait for their opening but this party \
                         kept no shares of them"
                    ));
                }
            };
            (p.opened.view(), p.valid.view(), own)
        }
        _ => {
            return Err(format!(
                "cache slot {slot}: {past} cached rows but the opened rows do not match \
                 (a cache written without its openings)"
            ));
        }
    };
    let new_opened = ArrayD::zeros(IxDyn(&[h, seq, k]));
    let new_valid = Array2::from_elem((h, seq), false);
    let rows = "rows of one slot share h and k";
    Ok(Kept {
        opened: concatenate(Axis(1), &[opened, new_opened.view()]).expect(rows),
        valid: concatenate(Axis(1), &[valid, new_valid.view()]).expect(rows),
        own: concatenate(Axis(1), &[own, f_new.view()]).expect(rows),
    })
}

/// The entries of `e` `[H, seq, n]` at the active (token, group) pairs, head by head.
fn active_entries(e: &ArrayD<u64>, mask: ArrayView2<'_, bool>, groups: u64) -> Vec<u64> {
    let g = groups.max(1) as usize;
    let mut out = Vec::new();
    for (h, head) in e.axis_iter(Axis(0)).enumerate() {
        for (t, row) in head.axis_iter(Axis(0)).enumerate() {
            if mask[[t, h / g]] {
                out.extend(row.iter().copied());
            }
        }
    }
    out
}

/// The rows `(group, position)` of `x` `[h, t, k]`, in order.
fn rows_of(x: &ArrayD<u64>, rows: &[(usize, usize)]) -> Vec<u64> {
    let mut out = Vec::with_capacity(rows.len() * x.shape()[2]);
    for &(g, pos) in rows {
        out.extend(x.slice(s![g, pos, ..]).iter().copied());
    }
    out
}

/// Writes the opened rows `own + peer` and marks them opened.
fn open_rows(kept: &mut Kept, rows: &[(usize, usize)], own: &[u64], peer: &[u64]) {
    let k = kept.opened.shape()[2];
    for (i, &(g, pos)) in rows.iter().enumerate() {
        let mut dst = kept.opened.slice_mut(s![g, pos, ..]);
        for (j, d) in dst.iter_mut().enumerate() {
            *d = own[i * k + j].wrapping_add(peer[i * k + j]);
        }
        kept.valid[[g, pos]] = true;
    }
}

impl State {
    /// The values of each part of this party's message: `X − A` at the active pairs, then
    /// the rows opened in the round.
    pub fn parts(&self) -> [usize; 2] {
        [self.sent_x(), self.sent.len()]
    }

    fn sent_x(&self) -> usize {
        let g = self.op.groups.max(1) as usize;
        let n = self.e.shape()[2];
        self.mask.iter().filter(|a| **a).count() * g * n
    }

    /// The cache slot.
    pub fn slot(&self) -> u32 {
        self.op.slot
    }

    /// Entries per cache row (`k`).
    pub fn row_len(&self) -> usize {
        self.kept.opened.shape()[2]
    }

    /// The naive refill's messages: each group's missed rows, for an exchange of its own
    /// before the product's round (none for the merged refill).
    pub fn refill_messages(&self) -> Vec<Vec<u64>> {
        (self.naive.iter())
            .map(|rows| rows_of(&self.kept.own, rows))
            .collect()
    }

    /// Opens the naive refill's rows with the peer's messages, one per exchange.
    ///
    /// # Errors
    /// If the peer sent another number of messages or values.
    pub fn accept_refills(&mut self, peer: &[Vec<u64>]) -> Result<(), MessageError> {
        check_len(&vec![0; peer.len()], self.naive.len())?;
        for (rows, peer) in std::mem::take(&mut self.naive).iter().zip(peer) {
            let own = rows_of(&self.kept.own, rows);
            check_len(peer, own.len())?;
            open_rows(&mut self.kept, rows, &own, peer);
            self.refill.exchanges += 1;
        }
        Ok(())
    }
}

/// This party's share of the product, the slot's rows after the call, and the refill's
/// counts.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<(Share, Kept, Refill), MessageError> {
    let nx = state.sent_x();
    let State {
        party,
        op,
        mask,
        x,
        c,
        e,
        sent,
        mut kept,
        rows,
        naive,
        cm,
        refill,
    } = state;
    debug_assert!(naive.is_empty(), "the naive refill runs before the round");
    check_len(peer, nx + sent.len())?;
    let (px, prows) = peer.split_at(nx);
    open_rows(&mut kept, &rows, &sent, prows);
    let e = scatter(&e, mask.view(), op.groups, px);
    let b = match party {
        0 => ring_ops::sub(c.view(), kept.opened.view()),
        _ => c,
    };
    let view = |t: &ArrayD<u64>| op.view(t).expect("a cache operand of [h, t, k]");
    let mut z = ring_ops::add(cm.view(), Product::MatMul.apply(&e, &view(&b)).view());
    z = ring_ops::add(
        z.view(),
        Product::MatMul.apply(&x, &view(&kept.opened)).view(),
    );
    zero_inactive(&mut z, mask.view(), op.groups);
    Ok((Share(z), kept, refill))
}

/// `E = X − A` `[H, seq, n]`: this party's part plus the peer's at the active pairs, 0
/// elsewhere.
fn scatter(e: &ArrayD<u64>, mask: ArrayView2<'_, bool>, groups: u64, peer: &[u64]) -> ArrayD<u64> {
    let g = groups.max(1) as usize;
    let mut out = ArrayD::zeros(e.raw_dim());
    let mut at = 0;
    for (h, (mut dst, src)) in out
        .axis_iter_mut(Axis(0))
        .zip(e.axis_iter(Axis(0)))
        .enumerate()
    {
        for (t, (mut d, s)) in dst
            .axis_iter_mut(Axis(0))
            .zip(src.axis_iter(Axis(0)))
            .enumerate()
        {
            if mask[[t, h / g]] {
                for (dv, sv) in d.iter_mut().zip(s.iter()) {
                    *dv = sv.wrapping_add(peer[at]);
                    at += 1;
                }
            }
        }
    }
    out
}

/// Zeroes the entries `[h, t, ..]` of `z` whose (token, group) pair is inactive.
fn zero_inactive(z: &mut ArrayD<u64>, mask: ArrayView2<'_, bool>, groups: u64) {
    let g = groups.max(1) as usize;
    for (h, mut head) in z.axis_iter_mut(Axis(0)).enumerate() {
        for (t, mut row) in head.axis_iter_mut(Axis(0)).enumerate() {
            if !mask[[t, h / g]] {
                row.fill(0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
