//! # The in-process dealer of correlated randomness
//!
//! docs/runtime.md, "Dealer": from a master seed the dealer derives one 32-byte ChaCha12
//! seed per party (and one for the FSS keys). Party `p`'s masks (`a_p`, `b_p`, and `c_0` for
//! party 0) are drawn from party `p`'s stream, in the order a party holding only its seed
//! would draw them, so they cost nothing to send. Only what cannot be derived is
//! **materialised**: the correction `c_1 = c − c_0` of every triple and the DCF correction
//! words of every DReLU gate. [`Dealer::offline_bytes`] counts exactly those, which is
//! what the cost model's `offline_bits` estimates (`× 8`).
//!
//! In process, the expanded masks are handed over inside the material for convenience; a
//! material file for another process ([`mod@file`]) carries the seed and the corrections only,
//! and so does the dealer service ([`service`], [`DealerStream`], wire format in [`wire`]),
//! which streams them to both parties call by call instead of writing files.
//!
//! Fixed operands (weights): [`Dealer::fixed_mask`] draws the mask `B` once per session
//! (no corrections: both shares come from the party streams); every call then gets a fresh
//! mask of the varying operand and the correction of `c = a ∘ B`; a block-sparse product
//! ([`Dealer::block_matmul`]) gets the correction of `A'_b · B_b` per token and block.
//!
//! A row shuffle ([`Dealer::shuffle`]) permutes by `π1∘π0`, `π_p` drawn from party `p`'s
//! stream; its corrections `Δ_j` go to the permuter `j`, so party 0's material also
//! carries corrections (those of step 0). Element-wise material can be restricted to some
//! elements (`gather`) for protocols run on the active entries of a sparse tensor.
//!
//! **Layering.** What a protocol's material is, how both halves are drawn, how a body is
//! laid out and how one party re-derives its half are the protocol's own (`deal`, `body`,
//! `replay` in [`crate::protocols`]`::X`; the material types are re-exported here). This
//! module keeps what is the dealer's: the seeds and streams ([`Dealer`], which implements
//! [`DealerStreams`]), the counters, the
//! session state and recording ([`SessionDealer`]), the replay of one party
//! ([`PartyReplay`], which implements
//! [`PartyStreams`](crate::protocols::material::PartyStreams)), material files and the
//! service. The dealer depends on the protocols, never the reverse.

mod deal;
pub mod file;
#[cfg(test)]
mod gather_tests;
#[cfg(test)]
mod protocol_tests;
mod replay;
pub mod service;
#[cfg(test)]
mod service_tests;
mod stream;
#[cfg(test)]
mod tests;
pub mod wire;

use std::fmt;

use comet_ir::NodeId;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::protocols::material::DealerStreams;
use crate::protocols::{
    b2a, beaver_mul, bit_mux, block_matmul, drelu, fixed, fixed_mask, gmw, lut, shuffle, square,
    xor,
};

pub use deal::{Deal, SessionDealer};
pub use file::{MaterialHeader, UsedList, Verified, plan_digest};
pub use replay::PartyReplay;
pub use service::{CallReport, DealerService, SessionReport};
pub use stream::DealerStream;
pub use wire::DealerError;

pub use crate::protocols::b2a::B2aMaterial;
pub use crate::protocols::beaver_mul::TripleMaterial;
pub use crate::protocols::bit_mux::BitMuxMaterial;
pub use crate::protocols::block_matmul::BlockMatMulMaterial;
pub use crate::protocols::drelu::DreluMaterial;
pub use crate::protocols::fixed::{FixedCallMaterial, FixedMask, FixedMaskMaterial};
pub use crate::protocols::gmw::{GmwDreluMaterial, GmwLevelMaterial};
pub use crate::protocols::lut::LutMaterial;
pub use crate::protocols::material::{MaterialError, Pair, Product};
pub use crate::protocols::shuffle::{ShuffleMaterial, ShufflePerm, ShuffleStep};
pub use crate::protocols::square::SquareMaterial;
pub use crate::protocols::xor::BitTripleMaterial;

/// A party's 32-byte ChaCha12 seed.
pub type PartySeed = [u8; 32];

/// The dealer: per-party streams plus counters of what it materialised.
pub struct Dealer {
    seeds: [PartySeed; 2],
    streams: [ChaCha12Rng; 2],
    fss: ChaCha12Rng,
    offline_bytes: u64,
    header_bytes: u64,
}

impl fmt::Debug for Dealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dealer")
            .field("offline_bytes", &self.offline_bytes)
            .field("header_bytes", &self.header_bytes)
            .finish_non_exhaustive()
    }
}

impl Dealer {
    /// A dealer whose party seeds (and FSS seed) are derived from `master`.
    pub fn new(master: PartySeed) -> Dealer {
        let mut root = ChaCha12Rng::from_seed(master);
        let mut draw = || {
            let mut s = [0; 32];
            root.fill_bytes(&mut s);
            s
        };
        let seeds = [draw(), draw()];
        let fss = ChaCha12Rng::from_seed(draw());
        Dealer {
            seeds,
            streams: seeds.map(ChaCha12Rng::from_seed),
            fss,
            offline_bytes: 0,
            header_bytes: 0,
        }
    }

    /// [`Dealer::new`] from a `u64` (tests).
    pub fn from_u64(master: u64) -> Dealer {
        let mut seed = [0; 32];
        ChaCha12Rng::seed_from_u64(master).fill_bytes(&mut seed);
        Dealer::new(seed)
    }

    /// Party `p`'s seed: what a material file would carry instead of the expanded masks.
    pub fn party_seed(&self, party: u8) -> PartySeed {
        self.seeds[usize::from(party)]
    }

    /// Bytes materialised so far, both parties together: triple corrections and DCF
    /// correction words (the cost model's `offline_bits / 8`).
    pub fn offline_bytes(&self) -> u64 {
        self.offline_bytes
    }

    /// Per-batch DReLU key headers (party, count, seed: 41 bytes per party and batch) that a
    /// serialized key carries on top of [`Dealer::offline_bytes`]; the cost model does not
    /// count them.
    pub fn header_bytes(&self) -> u64 {
        self.header_bytes
    }

    /// A triple for `x ⊙ y` (element-wise, broadcast): also the material of a mux.
    pub fn beaver_mul(&mut self, x: &[usize], y: &[usize]) -> [TripleMaterial; 2] {
        beaver_mul::deal(self, Product::Elementwise, x, y)
    }

    /// A triple for `[.., m, k] · [.., k, n]` (or `· [k, n]`).
    ///
    /// # Panics
    /// If the shapes do not multiply.
    pub fn beaver_matmul(&mut self, x: &[usize], y: &[usize]) -> [TripleMaterial; 2] {
        beaver_mul::deal(self, Product::MatMul, x, y)
    }

    /// A triple for a mux `bit ⊙ x` (bits as arithmetic 0/1 shares): a Beaver triple.
    pub fn mux(&mut self, bit: &[usize], x: &[usize]) -> [BitMuxMaterial; 2] {
        bit_mux::deal(self, bit, x)
    }

    /// `(a, a²)` shares of `shape`.
    pub fn square(&mut self, shape: &[usize]) -> [SquareMaterial; 2] {
        square::deal(self, shape)
    }

    /// The mask `B` of fixed operand `w` of `shape`, drawn once per session (and kept
    /// expanded by the dealer: [`SessionDealer::with_mask_budget`] limits that).
    pub fn fixed_mask(
        &mut self,
        w: NodeId,
        shape: &[usize],
    ) -> (FixedMask, [FixedMaskMaterial; 2]) {
        fixed_mask::deal_mask(self, w, shape, true, None)
    }

    /// [`Dealer::fixed_mask`], one-sided to `owner` when set (the whole mask its share).
    pub fn fixed_mask_of(
        &mut self,
        w: NodeId,
        shape: &[usize],
        owner: Option<crate::protocols::PartyId>,
    ) -> (FixedMask, [FixedMaskMaterial; 2]) {
        fixed_mask::deal_mask(self, w, shape, true, owner)
    }

    /// Per-call material of `x ⊙ W` with `W` fixed under `mask`.
    pub fn fixed_mul(&mut self, mask: &FixedMask, x: &[usize]) -> [FixedCallMaterial; 2] {
        fixed::deal_call(self, mask, Product::Elementwise, x)
    }

    /// Per-call material of `x · W` (`x`: `[.., m, k]`) with `W` fixed under `mask`.
    pub fn fixed_matmul(&mut self, mask: &FixedMask, x: &[usize]) -> [FixedCallMaterial; 2] {
        fixed::deal_call(self, mask, Product::MatMul, x)
    }

    /// DCF keys for `n` full-ring DReLU gates ([`crate::fss::drelu_offline`]); counts the
    /// correction words.
    pub fn drelu(&mut self, n: usize) -> [DreluMaterial; 2] {
        drelu::deal(self, n, crate::fss::RING_BITS)
    }

    /// DCF keys for `n` DReLU gates on `bits`-bit signed inputs
    /// ([`crate::fss::drelu_offline_bits`]); counts the correction words.
    ///
    /// # Panics
    /// If `bits` is not in 2..=64.
    pub fn drelu_bits(&mut self, n: usize, bits: u32) -> [DreluMaterial; 2] {
        drelu::deal(self, n, bits)
    }

    /// Lookup-table keys for `n` lookups on `bits`-bit indices ([`crate::fss::lut_offline`]);
    /// counts the keys' correction words.
    ///
    /// # Panics
    /// If `bits` is not in 1..=20.
    pub fn lut(&mut self, n: usize, bits: u32) -> [LutMaterial; 2] {
        lut::deal(self, n, bits)
    }

    /// Sign-select keys for `n` gates `y·[x ≥ 0]` on `bits`-bit signed x (`same`: y is x;
    /// [`crate::fss::sign_select`]); counts the correction words.
    ///
    /// # Panics
    /// If `bits` is not in 2..=64.
    pub fn sign_select(
        &mut self,
        n: usize,
        bits: u32,
        same: bool,
    ) -> [crate::protocols::sign_select::SignSelectMaterial; 2] {
        crate::protocols::sign_select::deal(self, n, bits, same)
    }

    /// Faithful-truncation keys for `n` elements dropping `bits` bits
    /// ([`crate::fss::trunc`]); counts the correction words.
    ///
    /// # Panics
    /// If `bits` is not in 1..=62.
    pub fn faithful_trunc(
        &mut self,
        n: usize,
        bits: u32,
    ) -> [crate::protocols::trunc_fss::TruncMaterial; 2] {
        crate::protocols::trunc_fss::deal(self, n, bits)
    }

    /// Stochastic-truncation masks for `n` elements dropping `bits` bits at width `width`
    /// ([`crate::protocols::trunc_stochastic`]); counts party 1's 16 bytes per element.
    ///
    /// # Panics
    /// If `bits` is not in 1..=62 or `width` not in `bits + 2..=64`.
    pub fn stochastic_trunc(
        &mut self,
        n: usize,
        bits: u32,
        width: u32,
    ) -> [crate::protocols::trunc_stochastic::StochasticTruncMaterial; 2] {
        crate::protocols::trunc_stochastic::deal(self, n, bits, width)
    }

    /// Beaver bit triples for `n` AND gates on `lanes` lanes each; counts party 1's
    /// correction bits (padded to bytes per element).
    pub fn bit_triples(&mut self, n: usize, lanes: u32) -> [BitTripleMaterial; 2] {
        xor::deal(self, n, lanes)
    }

    /// The AND triples of `n` GMW DReLU gates ([`gmw`]); counts party 1's correction bytes.
    pub fn gmw_drelu(&mut self, n: usize) -> [GmwDreluMaterial; 2] {
        gmw::deal(self, n)
    }

    /// daBits for `n` B2A conversions; counts party 1's arithmetic shares.
    pub fn b2a(&mut self, n: usize) -> [B2aMaterial; 2] {
        b2a::deal(self, n)
    }

    /// Material of a select with XOR-shared bits shaped `bit` and values shaped `x`.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn bit_mux(&mut self, bit: &[usize], x: &[usize]) -> [BitMuxMaterial; 2] {
        bit_mux::deal(self, bit, x)
    }

    /// Per-call material of the block-sparse `H · W` (`H`: `[seq, ff]`) with `W` fixed
    /// under `mask`, in blocks of `block` rows of `W`.
    ///
    /// # Panics
    /// If `W` is not a matrix, or `block` is 0 or does not divide its rows.
    pub fn block_matmul(
        &mut self,
        mask: &FixedMask,
        seq: usize,
        block: usize,
    ) -> [BlockMatMulMaterial; 2] {
        block_matmul::deal(self, mask, seq, block)
    }

    /// Draws `π0` and `π1` of `rows` rows, each from its party's stream (free).
    ///
    /// # Panics
    /// If `rows` exceeds `2^32` ([`Deal::shuffle`] refuses that).
    pub fn shuffle_perm(&mut self, rows: usize) -> ShufflePerm {
        shuffle::deal_perm(self, rows)
    }

    /// Material of one shuffle by `perm` of a `[rows, k]` matrix: fresh masks, and the
    /// corrections `Δ_0`, `Δ_1` (counted: `2 · 8·rows·k` bytes).
    pub fn shuffle(&mut self, perm: &ShufflePerm, k: usize) -> [ShuffleMaterial; 2] {
        shuffle::deal(self, perm, k)
    }
}

impl DealerStreams for Dealer {
    fn stream(&mut self, party: u8) -> &mut ChaCha12Rng {
        &mut self.streams[usize::from(party)]
    }

    fn party_seed(&self, party: u8) -> PartySeed {
        Dealer::party_seed(self, party)
    }

    fn fss_stream(&mut self) -> &mut ChaCha12Rng {
        &mut self.fss
    }

    fn count_offline(&mut self, bytes: u64) {
        self.offline_bytes += bytes;
    }

    fn count_headers(&mut self, bytes: u64) {
        self.header_bytes += bytes;
    }
}
