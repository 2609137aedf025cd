//! A public table read at a secret index ([`comet_ir::Op::Lut`], meaning in
//! [`comet_ir::table`]) by the FSS lookup-table gate ([`crate::fss::lut`]): **2 rounds**.
//!
//! The index: the input x is shared at scale s, the table reads k = ⌊x·2^q⌋ mod 2^n. Each
//! party shifts its own share right **logically** by d = s − q; the two shifted shares sum
//! to ⌊x/2^d⌋ or ⌊x/2^d⌋ − 1 modulo 2^(64−d) (the carry lost between the shares), so
//! modulo 2^n (n ≤ 64 − d) they share k or k − 1, which the table's midpoint sampling
//! absorbs ([`comet_ir::table`]).
//!
//! 1. [`start`]: party b sends k_b + r_b mod 2^n packed at n bits per element
//!    ([`pack_bits`]): ⌈count·n/8⌉ bytes, which the cost model states exactly
//!    (`Poly::packed`).
//! 2. [`step`] (round 1 → 2): with k̂ = k + r mod 2^n open, party b sends y_b, 64 bits per
//!    element ([`fss::lut_reveal_message`]), or w bits when the node's value is read
//!    modulo 2^w only ([`start_at`], pass `narrow-openings`: the output is linear in y).
//! 3. [`step`] (end): the arithmetic share of T\[k\] ([`fss::lut_finish`]), at the scale
//!    the table's entries were built at (the plan's).
//!
//! Online: 16·⌈count·n/8⌉ + 2·count·w bits in all (w = 64 unless narrowed). Offline:
//! [`LutKey::element_bytes`]`(n)` per element and party, plus a
//! [`BATCH_HEADER_BYTES`]-byte header per batch of at most [`LUT_BATCH`] gates and party
//! (counted apart, as the DReLU keys' headers).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use comet_ir::TableFn;

use super::material::{
    DealerStreams, KeyBatch, MaterialError, PartyStreams, batch_sizes, deal_key_batches,
    read_key_batch,
};
use super::{
    MessageError, PartyId, Share, Step, check_len, check_party, pack_bits, ring_ops, unpack_bits,
};
use crate::fss::{self, BATCH_HEADER_BYTES, LutKey, lut::LUT_MAX_BITS};

/// Gates per batch of keys: a node's keys are dealt, sent and read in batches of at most
/// this many gates (≤ 3.9 MB per party at n = 20), so that a streaming dealer holds one
/// batch at a time whatever the node's size.
pub const LUT_BATCH: usize = 1 << 14;

/// How lookup-table key batches on `bits`-bit indices travel.
fn kind(bits: u32) -> KeyBatch<'static, LutKey> {
    KeyBatch {
        what: "lookup-table",
        bits,
        batch: LUT_BATCH,
        element_bytes: LutKey::element_bytes(bits),
        party1_extra: 0,
        header_bytes: BATCH_HEADER_BYTES,
        to_bytes: LutKey::to_bytes,
    }
}

/// One party's keys for the lookups of one node: a [`LutKey`] per batch.
#[derive(Clone, PartialEq, Eq)]
pub struct LutMaterial {
    party: PartyId,
    bits: u32,
    keys: Vec<LutKey>,
}

impl fmt::Debug for LutMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LutMaterial")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("gates", &self.len())
            .field("batches", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl LutMaterial {
    /// The party the keys belong to.
    pub fn party(&self) -> PartyId {
        self.party
    }

    /// The index width n.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of gates.
    pub fn len(&self) -> usize {
        self.keys.iter().map(LutKey::len).sum()
    }

    /// Whether there are no gates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of gates `idx` (numbered across the batches), in that order, as one
    /// batch that cannot be serialized ([`LutKey::gather`]).
    ///
    /// # Panics
    /// If an index is out of range or repeats.
    pub fn gather(&self, idx: &[usize]) -> LutMaterial {
        let keys = match self.keys.is_empty() {
            true => Vec::new(),
            false => vec![LutKey::gather(&self.keys, idx)],
        };
        LutMaterial {
            party: self.party,
            bits: self.bits,
            keys,
        }
    }

    /// The party's body bytes: every batch serialized ([`LutKey::to_bytes`]), in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.keys.iter().flat_map(LutKey::to_bytes).collect()
    }
}

/// Fails unless `bits` is a width the gate takes (1..=[`LUT_MAX_BITS`]).
///
/// # Errors
/// If it is not.
pub fn check_width(bits: u32) -> Result<(), MaterialError> {
    match (1..=LUT_MAX_BITS).contains(&bits) {
        true => Ok(()),
        false => Err(MaterialError::Mismatch(format!(
            "a lookup table on {bits}-bit indices: the gate takes 1 to {LUT_MAX_BITS}"
        ))),
    }
}

/// Deals keys for `n` lookups on `bits`-bit indices ([`fss::lut_offline`]), batch by batch;
/// counts `2·n·`[`LutKey::element_bytes`] offline bytes and the batch headers apart.
///
/// # Panics
/// If `bits` is not in 1..=[`LUT_MAX_BITS`] ([`check_width`]).
pub fn deal(d: &mut dyn DealerStreams, n: usize, bits: u32) -> [LutMaterial; 2] {
    deal_batches(d, n, bits, true, None).expect("kept")
}

/// [`deal`], handing each batch's body bytes (each party's serialized keys) to `sink`, if
/// any, as soon as it is drawn, and keeping the keys only when `keep` (else `None`).
///
/// # Panics
/// As [`deal`].
pub fn deal_batches(
    d: &mut dyn DealerStreams,
    n: usize,
    bits: u32,
    keep: bool,
    sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
) -> Option<[LutMaterial; 2]> {
    let [k0, k1] = deal_key_batches(d, n, &kind(bits), keep, sink, |len, rng| {
        fss::lut_offline(bits, len, rng)
    })?;
    Some([(0, k0), (1, k1)].map(|(party, keys)| LutMaterial { party, bits, keys }))
}

/// One party's keys for `n` lookups on `bits`-bit indices, read from its body batch by
/// batch (each header checked against its batch).
///
/// # Errors
/// If the body ends, or holds keys of another party, width or count, or damaged keys.
pub fn replay(r: &mut dyn PartyStreams, n: usize, bits: u32) -> Result<LutMaterial, MaterialError> {
    check_width(bits)?;
    let keys = batch_sizes(n, LUT_BATCH)
        .map(|len| replay_batch(r, len, bits))
        .collect::<Result<_, _>>()?;
    Ok(LutMaterial {
        party: r.party(),
        bits,
        keys,
    })
}

/// One batch of `n` gates from the body: header (party, width, count, seed), then the keys.
fn replay_batch(r: &mut dyn PartyStreams, n: usize, bits: u32) -> Result<LutKey, MaterialError> {
    let follow = "the material does not follow the plan";
    let (at, bytes) = read_key_batch(r, n, &kind(bits), LutKey::byte_len(bits, n), follow)?;
    LutKey::from_bytes(&bytes)
        .map_err(|e| MaterialError::Corrupt(format!("lookup-table key at body byte {at}: {e}")))
}

/// A node's table: T\[k\] for every n-bit index k, as ring elements at the output scale
/// ([`comet_ir::table::entries`]), with the fractional bits q its index reads.
#[derive(Clone, PartialEq, Eq)]
pub struct Table {
    bits: u32,
    frac: u32,
    entries: Arc<Vec<u64>>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("bits", &self.bits)
            .field("frac", &self.frac)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// `func` on `bits`-bit indices of `frac` fractional bits, entries at `scale`: 2^n
    /// evaluations of `func` the first time in this process, shared afterwards (every
    /// call of a session reads the same tables; the norms' has 2^19 entries).
    pub fn new(func: TableFn, bits: u32, frac: u32, scale: u32) -> Table {
        type Built = HashMap<(TableFn, u32, u32, u32), Arc<Vec<u64>>>;
        static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
        let mut built = (BUILT.get_or_init(Default::default).lock())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entries = built
            .entry((func, bits, frac, scale))
            .or_insert_with(|| Arc::new(comet_ir::table::entries(func, bits, frac, scale)));
        Table {
            bits,
            frac,
            entries: Arc::clone(entries),
        }
    }

    /// The entries, index by index.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }
}

/// Between the rounds.
pub struct State {
    party: PartyId,
    /// The width the table's value is read at: round 2 sends y_b mod 2^width.
    width: u32,
    shape: Vec<usize>,
    m: LutMaterial,
    table: Table,
    phase: Phase,
}

/// What this party sent in the round in progress.
enum Phase {
    /// Round 1: its masked index shares k_b + r_b mod 2^n.
    Index(Vec<u64>),
    /// Round 2: its y_b.
    Reveal(Vec<u64>),
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let round = match self.phase {
            Phase::Index(_) => 1,
            Phase::Reveal(_) => 2,
        };
        f.debug_struct("lut::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .field("round", &round)
            .finish_non_exhaustive()
    }
}

/// This party's share of the index ⌊x·2^q⌋ mod 2^n (up to −1 with the other share): its
/// share of x, at scale `in_scale`, shifted right logically by `in_scale − q`.
pub fn index_share(x: &[u64], in_scale: u32, frac: u32) -> Vec<u64> {
    let d = in_scale - frac;
    x.iter().map(|v| v >> d).collect()
}

/// Starts the lookup of `table` at `x` (shared at scale `in_scale`): the message is the
/// masked index share, packed at n bits per element.
///
/// # Panics
/// If the keys belong to another party, cover another number of gates or width than the
/// table, or `in_scale < q`, or n + in_scale − q > 64 (the index would not survive the
/// shift).
pub fn start(
    party: PartyId,
    x: &Share,
    in_scale: u32,
    table: Table,
    m: LutMaterial,
) -> (State, Vec<u8>) {
    start_at(party, x, in_scale, table, m, 64)
}

/// [`start`] for a lookup whose value is read modulo 2^`width` only (pass
/// `narrow-openings`; 1..=64): round 2 sends y_b mod 2^`width`, packed at `width` bits,
/// and the output share is correct mod 2^`width` (the finish, `S_b·y − P_b`, is linear
/// in y).
///
/// # Panics
/// As [`start`], or if `width` is not in 1..=64.
pub fn start_at(
    party: PartyId,
    x: &Share,
    in_scale: u32,
    table: Table,
    m: LutMaterial,
    width: u32,
) -> (State, Vec<u8>) {
    check_party(party);
    assert!(
        (1..=64).contains(&width),
        "a width of 1..=64 bits, got {width}"
    );
    let n = table.bits;
    assert_eq!(m.party, party, "lookup-table keys of party {}", m.party);
    assert_eq!(m.bits, n, "keys for {}-bit indices, table of {n}", m.bits);
    assert_eq!(
        m.len(),
        x.len(),
        "keys for {} gates, {} inputs",
        m.len(),
        x.len()
    );
    assert!(
        table.frac <= in_scale && n + in_scale - table.frac <= 64,
        "a {n}-bit index of {} fractional bits from an input at scale {in_scale}",
        table.frac
    );
    let idx = index_share(&x.to_flat(), in_scale, table.frac);
    let mine = per_batch(&m, &idx, |k, part| fss::lut_online_message(party, k, part));
    let msg = pack_bits(&mine, n);
    let shape = x.shape().to_vec();
    let phase = Phase::Index(mine);
    let st = State {
        party,
        width,
        shape,
        m,
        table,
        phase,
    };
    (st, msg)
}

/// Ends a round with the peer's message: after round 1, the state and this party's round-2
/// message; after round 2, this party's share of the table's entries (the input's shape).
///
/// # Errors
/// If the peer's message has the wrong length (or nonzero padding).
pub fn step(mut st: State, peer: &[u8]) -> Result<Step<State, Share>, MessageError> {
    match st.phase {
        Phase::Index(mine) => {
            let theirs = unpack_bits(peer, mine.len(), st.m.bits)?;
            let x_hat = fss::open_masked(&mine, &theirs);
            let (party, table) = (st.party, st.table.entries());
            let y = per_batch(&st.m, &x_hat, |k, part| {
                fss::lut_reveal_message(party, k, table, part)
            });
            let msg = pack_bits(&y, st.width);
            st.phase = Phase::Reveal(y);
            Ok(Step::Next(st, msg))
        }
        Phase::Reveal(mine) => {
            let theirs = unpack_bits(peer, mine.len(), st.width)?;
            check_len(&theirs, mine.len())?;
            let mut at = 0;
            let out = per_batch(&st.m, &mine, |k, part| {
                let t = &theirs[at..at + part.len()];
                at += part.len();
                fss::lut_finish(st.party, k, part, t)
            });
            Ok(Step::Done(Share(ring_ops::from_flat(&st.shape, &out))))
        }
    }
}

/// `f(batch key, the batch's slice of v)` over the batches, concatenated.
fn per_batch(
    m: &LutMaterial,
    v: &[u64],
    mut f: impl FnMut(&LutKey, &[u64]) -> Vec<u64>,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(v.len());
    let mut at = 0;
    for k in &m.keys {
        out.extend(f(k, &v[at..at + k.len()]));
        at += k.len();
    }
    out
}
