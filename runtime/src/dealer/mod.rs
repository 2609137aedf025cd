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

mod block;
mod boolean;
mod deal;
pub mod file;
mod gather;
mod material;
mod replay;
pub mod service;
#[cfg(test)]
mod service_tests;
mod shuffle;
mod stream;
#[cfg(test)]
mod tests;
pub mod wire;

use std::fmt;
use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::fss::{self, drelu::DRELU_KEY_HEADER_BYTES};
use crate::protocols::ring_ops;
use crate::ring;

pub use block::BlockMatMulMaterial;
pub use deal::{Deal, Pair, Product, SessionDealer};
pub use file::{MaterialHeader, plan_digest};
pub use replay::PartyReplay;
pub use service::{CallReport, DealerService, SessionReport};
pub use shuffle::{ShuffleMaterial, ShufflePerm, ShuffleStep};
pub use stream::DealerStream;
pub use wire::DealerError;

pub use material::{
    B2aMaterial, BitMuxMaterial, BitTripleMaterial, DreluMaterial, FixedCallMaterial,
    FixedMaskMaterial, GmwDreluMaterial, GmwLevelMaterial, SquareMaterial, TripleMaterial,
};

/// Material could not be dealt, read or matched with the plan.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The body ended before the material a call needs.
    #[error(
        "the material file ends at body byte {at}, before the material of this call: it is truncated or was dealt for fewer calls"
    )]
    Truncated {
        /// Body bytes read before the end.
        at: u64,
    },
    /// The body's source failed other than by ending: a dealer service that stalled,
    /// disconnected or refused (the message says which), or a file that could not be read.
    #[error("material unavailable at body byte {at}: {message}")]
    Source {
        /// Body bytes read before the failure.
        at: u64,
        /// What happened.
        message: String,
    },
    /// The file is not a material file, or is damaged.
    #[error("corrupt material: {0}")]
    Corrupt(String),
    /// The file belongs to another party, plan or session.
    #[error("material does not fit: {0}")]
    Mismatch(String),
    /// The file was used before.
    #[error("{path} was already used (marker {marker} exists): material is never used twice; deal a new session with `comet deal`", path = path.display(), marker = marker.display())]
    Used {
        /// The file.
        path: PathBuf,
        /// Its marker.
        marker: PathBuf,
    },
    /// Operand shapes that do not combine.
    #[error("material for shapes that do not combine: {0}")]
    Shape(String),
    /// A product with a fixed operand before the operand's setup.
    #[error("fixed operand {0} has no mask: the session's setup was not dealt")]
    NoFixedMask(comet_ir::NodeId),
}

impl MaterialError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> MaterialError {
        MaterialError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

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

/// The dealer's record of a fixed operand's mask `B` (both shares added up), needed to
/// issue the per-call corrections `c = a ∘ B`. Never leaves the dealer.
pub struct FixedMask {
    b: ArrayD<u64>,
}

impl FixedMask {
    /// The fixed operand's shape.
    pub fn shape(&self) -> &[usize] {
        self.b.shape()
    }
}

impl fmt::Debug for FixedMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FixedMask([..] shape {:?})", self.shape())
    }
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
        self.triple(x, y, |a, b| ring_ops::mul(a.view(), b.view()))
    }

    /// A triple for `[.., m, k] · [.., k, n]` (or `· [k, n]`).
    ///
    /// # Panics
    /// If the shapes do not multiply.
    pub fn beaver_matmul(&mut self, x: &[usize], y: &[usize]) -> [TripleMaterial; 2] {
        self.triple(x, y, matmul)
    }

    /// A triple for a mux `bit ⊙ x` (bits as arithmetic 0/1 shares): a Beaver triple.
    pub fn mux(&mut self, bit: &[usize], x: &[usize]) -> [TripleMaterial; 2] {
        self.beaver_mul(bit, x)
    }

    /// `(a, a²)` shares of `shape`.
    pub fn square(&mut self, shape: &[usize]) -> [SquareMaterial; 2] {
        let [a0, a1] = self.masks(shape);
        let a = ring_ops::add(a0.view(), a1.view());
        let [c0, c1] = self.correct(ring_ops::mul(a.view(), a.view()));
        [
            SquareMaterial {
                party: 0,
                a: a0,
                c: c0,
            },
            SquareMaterial {
                party: 1,
                a: a1,
                c: c1,
            },
        ]
    }

    /// The mask `B` of a fixed operand of `shape`, drawn once per session.
    pub fn fixed_mask(&mut self, shape: &[usize]) -> (FixedMask, [FixedMaskMaterial; 2]) {
        let [b0, b1] = self.masks(shape);
        let b = ring_ops::add(b0.view(), b1.view());
        let material = [
            FixedMaskMaterial { party: 0, b: b0 },
            FixedMaskMaterial { party: 1, b: b1 },
        ];
        (FixedMask { b }, material)
    }

    /// Per-call material of `x ⊙ W` with `W` fixed under `mask`.
    pub fn fixed_mul(&mut self, mask: &FixedMask, x: &[usize]) -> [FixedCallMaterial; 2] {
        self.fixed_call(mask, x, |a, b| ring_ops::mul(a.view(), b.view()))
    }

    /// Per-call material of `x · W` (`x`: `[.., m, k]`) with `W` fixed under `mask`.
    pub fn fixed_matmul(&mut self, mask: &FixedMask, x: &[usize]) -> [FixedCallMaterial; 2] {
        self.fixed_call(mask, x, matmul)
    }

    /// DCF keys for `n` DReLU gates ([`fss::drelu_offline`]); counts the correction words.
    pub fn drelu(&mut self, n: usize) -> [DreluMaterial; 2] {
        let (k0, k1) = fss::drelu_offline(n, &mut self.fss);
        self.offline_bytes += 2 * (n * fss::DRELU_KEY_BYTES_PER_ELEMENT) as u64;
        self.header_bytes += 2 * DRELU_KEY_HEADER_BYTES as u64;
        [DreluMaterial { key: k0 }, DreluMaterial { key: k1 }]
    }

    /// Beaver bit triples for `n` AND gates on `lanes` lanes each; counts party 1's
    /// correction bits (padded to bytes per element).
    pub fn bit_triples(&mut self, n: usize, lanes: u32) -> [BitTripleMaterial; 2] {
        let mut m =
            [0, 1].map(|p| boolean::bit_triple_draw(&mut self.streams[p], p as u8, n, lanes));
        boolean::bit_triple_correct(&mut m);
        self.offline_bytes += boolean::bit_triple_len(n, lanes) as u64;
        m
    }

    /// The AND triples of `n` GMW DReLU gates
    /// ([`gmw`](crate::protocols::gmw)); counts party 1's correction bytes.
    pub fn gmw_drelu(&mut self, n: usize) -> [GmwDreluMaterial; 2] {
        let mut m = [0, 1].map(|p| boolean::gmw_draw(&mut self.streams[p], p as u8, n));
        boolean::gmw_correct(&mut m);
        self.offline_bytes += boolean::gmw_len(n) as u64;
        m
    }

    /// daBits for `n` B2A conversions; counts party 1's arithmetic shares.
    pub fn b2a(&mut self, n: usize) -> [B2aMaterial; 2] {
        let mut m = [0, 1].map(|p| boolean::b2a_draw(&mut self.streams[p], p as u8, n));
        boolean::b2a_correct(&mut m);
        self.offline_bytes += boolean::b2a_len(n) as u64;
        m
    }

    /// Material of a select with XOR-shared bits shaped `bit` and values shaped `x`.
    ///
    /// # Panics
    /// If the shapes do not broadcast.
    pub fn bit_mux(&mut self, bit: &[usize], x: &[usize]) -> [BitMuxMaterial; 2] {
        let out = crate::movement::broadcast_shape(bit, x).expect("shapes broadcast");
        let mut m =
            [0, 1].map(|p| boolean::bit_mux_draw(&mut self.streams[p], p as u8, bit, x, &out));
        boolean::bit_mux_correct(&mut m);
        self.offline_bytes += boolean::bit_mux_len(bit, &out) as u64;
        m
    }

    fn triple(
        &mut self,
        x: &[usize],
        y: &[usize],
        product: impl Fn(&ArrayD<u64>, &ArrayD<u64>) -> ArrayD<u64>,
    ) -> [TripleMaterial; 2] {
        let [a0, a1] = self.masks(x);
        let [b0, b1] = self.masks(y);
        let a = ring_ops::add(a0.view(), a1.view());
        let b = ring_ops::add(b0.view(), b1.view());
        let [c0, c1] = self.correct(product(&a, &b));
        [
            TripleMaterial {
                party: 0,
                a: a0,
                b: b0,
                c: c0,
            },
            TripleMaterial {
                party: 1,
                a: a1,
                b: b1,
                c: c1,
            },
        ]
    }

    fn fixed_call(
        &mut self,
        mask: &FixedMask,
        x: &[usize],
        product: impl Fn(&ArrayD<u64>, &ArrayD<u64>) -> ArrayD<u64>,
    ) -> [FixedCallMaterial; 2] {
        let [a0, a1] = self.masks(x);
        let a = ring_ops::add(a0.view(), a1.view());
        let [c0, c1] = self.correct(product(&a, &mask.b));
        [
            FixedCallMaterial {
                party: 0,
                a: a0,
                c: c0,
            },
            FixedCallMaterial {
                party: 1,
                a: a1,
                c: c1,
            },
        ]
    }

    /// One mask share of `shape` per party, each from its own stream.
    fn masks(&mut self, shape: &[usize]) -> [ArrayD<u64>; 2] {
        [0, 1].map(|p| expand(&mut self.streams[p], shape))
    }

    /// Shares of `c`: party 0's from its stream, party 1's the materialised correction.
    fn correct(&mut self, c: ArrayD<u64>) -> [ArrayD<u64>; 2] {
        let c0 = expand(&mut self.streams[0], c.shape());
        let c1 = ring_ops::sub(c.view(), c0.view());
        self.offline_bytes += 8 * c1.len() as u64;
        [c0, c1]
    }
}

fn expand(rng: &mut ChaCha12Rng, shape: &[usize]) -> ArrayD<u64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.next_u64())
}

fn matmul(a: &ArrayD<u64>, b: &ArrayD<u64>) -> ArrayD<u64> {
    ring::matmul_batched(a.view(), b.view()).expect("matmul shapes")
}
