//! What a protocol's material is dealt from and replayed from, and the helpers every
//! protocol's dealing shares.
//!
//! A protocol file deals its material with a function taking [`DealerStreams`] (both
//! parties' PRG streams and the dealer's counters; the dealer's `Dealer` implements it),
//! lays out what a party cannot derive as its body bytes (`body`), and re-derives one
//! party's half with a function taking [`PartyStreams`] (that party's stream and the body
//! of its material; the dealer's `PartyReplay` implements it). The protocols never name
//! the dealer: it sits above them and calls these functions. The dealing and the
//! replay of one protocol draw in one order, so a party's material is the same from either.
//!
//! A source of a whole session's material, item by item, is a [`Deal`]: the dealer's
//! `SessionDealer` (both parties) and `PartyReplay` (one party) implement it, and
//! [`dispatch::deal`](super::dispatch::deal) asks it for each node's material.
//!
//! Party `p`'s masks come from its own stream; of a product's shares, party 0's comes from
//! its stream and party 1's is the materialised correction (`correct`,
//! `product_share`).

use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use rand_chacha::ChaCha12Rng;

use comet_ir::NodeId;

use super::PartyId;
use super::b2a::B2aMaterial;
use super::beaver_mul::TripleMaterial;
use super::bit_mux::BitMuxMaterial;
use super::block_matmul::BlockMatMulMaterial;
use super::drelu::DreluMaterial;
use super::fixed::{FixedCallMaterial, FixedMaskMaterial};
use super::gmw::GmwDreluMaterial;
use super::lut::LutMaterial;
use super::ring_ops;
use super::shuffle::ShuffleMaterial;
use super::sign_select::SignSelectMaterial;
use super::square::SquareMaterial;
use super::trunc_fss::TruncMaterial;
use super::trunc_stochastic::StochasticTruncMaterial;
use super::xor::BitTripleMaterial;
use crate::movement::broadcast_shape;
use crate::ring;

/// What a source hands out for one protocol instance: each party's share, where this
/// source knows it (`None` for the party a replay does not play).
pub type Pair<T> = [Option<T>; 2];

/// The dealer's side of a protocol's dealing: both parties' streams, the FSS key stream
/// and the counters of materialised bytes.
pub trait DealerStreams {
    /// Party `party`'s stream.
    fn stream(&mut self, party: PartyId) -> &mut ChaCha12Rng;

    /// Party `party`'s seed (its other streams, such as the fixed masks', derive from it).
    fn party_seed(&self, party: PartyId) -> [u8; 32];

    /// The stream the FSS keys are drawn from.
    fn fss_stream(&mut self) -> &mut ChaCha12Rng;

    /// Counts `bytes` materialised (both parties together): the cost model's offline bytes.
    fn count_offline(&mut self, bytes: u64);

    /// Counts `bytes` of DReLU key headers (not in the cost model).
    fn count_headers(&mut self, bytes: u64);
}

/// One party's side of a replay: its stream and the body of its material.
pub trait PartyStreams {
    /// The party replayed.
    fn party(&self) -> PartyId;

    /// Its stream.
    fn stream(&mut self) -> &mut ChaCha12Rng;

    /// Its seed (its other streams, such as the fixed masks', derive from it).
    fn party_seed(&self) -> [u8; 32];

    /// Body bytes read so far.
    fn body_offset(&self) -> u64;

    /// The next `n` bytes of the body.
    ///
    /// # Errors
    /// If the body ends or fails before.
    fn body(&mut self, n: usize) -> Result<Vec<u8>, MaterialError>;

    /// Counts `bytes` of the body as DReLU key headers (not offline bytes).
    fn count_headers(&mut self, bytes: u64);
}

/// A source of correlated randomness for the calls of one session, drawn in the order
/// the interpreter asks for it.
pub trait Deal {
    /// A Beaver triple for `x ∘ y` (also a mux's material).
    ///
    /// # Errors
    /// If the material cannot be read (replay) or the shapes do not combine.
    fn triple(
        &mut self,
        kind: Product,
        x: &[usize],
        y: &[usize],
    ) -> Result<Pair<TripleMaterial>, MaterialError>;

    /// Material of one call of a product with the KV cache ([`super::cache_matmul`]):
    /// `x`, the cache operand `c` and its `new` rows are the operands' shapes.
    ///
    /// # Errors
    /// If the shapes do not combine, or the dealer does not know the cached rows' masks.
    fn cache_matmul(
        &mut self,
        op: super::cache_matmul::CacheProduct,
        x: &[usize],
        c: &[usize],
        new: &[usize],
    ) -> Result<Pair<super::cache_matmul::CacheMatMulMaterial>, MaterialError>;

    /// `(a, a²)` of `shape`.
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn square(&mut self, shape: &[usize]) -> Result<Pair<SquareMaterial>, MaterialError>;

    /// The once-per-session mask of fixed operand `w` (shaped `shape`): one-sided, the
    /// whole mask the share of `owner`, when the plan names an owner
    /// ([`comet_ir::protocol::mask_owner`]).
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn fixed_mask(
        &mut self,
        w: NodeId,
        shape: &[usize],
        owner: Option<PartyId>,
    ) -> Result<Pair<FixedMaskMaterial>, MaterialError>;

    /// Per-call material of `x ∘ W` for fixed operand `w`, masked earlier.
    ///
    /// # Errors
    /// If `w` has no mask yet, or as [`Deal::triple`].
    fn fixed_call(
        &mut self,
        w: NodeId,
        kind: Product,
        x: &[usize],
    ) -> Result<Pair<FixedCallMaterial>, MaterialError>;

    /// DReLU keys for `n` gates on `bits`-bit signed inputs (2..=64).
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn drelu(&mut self, n: usize, bits: u32) -> Result<Pair<DreluMaterial>, MaterialError>;

    /// Lookup-table keys for `n` lookups on `bits`-bit indices (1..=20).
    ///
    /// # Errors
    /// If `bits` is out of range, or as [`Deal::triple`].
    fn lut(&mut self, n: usize, bits: u32) -> Result<Pair<LutMaterial>, MaterialError>;

    /// Sign-select keys for `n` gates `y·[x ≥ 0]` on `bits`-bit signed x (2..=64); `same`:
    /// y is x.
    ///
    /// # Errors
    /// If `bits` is out of range, or as [`Deal::triple`].
    fn sign_select(
        &mut self,
        n: usize,
        bits: u32,
        same: bool,
    ) -> Result<Pair<SignSelectMaterial>, MaterialError>;

    /// Faithful-truncation keys for `n` elements dropping `bits` bits (1..=62).
    ///
    /// # Errors
    /// If `bits` is out of range, or as [`Deal::triple`].
    fn faithful_trunc(&mut self, n: usize, bits: u32)
    -> Result<Pair<TruncMaterial>, MaterialError>;

    /// Stochastic-truncation masks for `n` elements dropping `bits` bits (1..=62) at width
    /// `width` (`bits + 2..=64`; 64 = the ring).
    ///
    /// # Errors
    /// If `bits` or `width` is out of range, or as [`Deal::triple`].
    fn stochastic_trunc(
        &mut self,
        n: usize,
        bits: u32,
        width: u32,
    ) -> Result<Pair<StochasticTruncMaterial>, MaterialError>;

    /// [`Deal::stochastic_trunc`] for truncation `id`, whose opening `readers` nodes read
    /// ([`Deal::drelu_opened`], [`Deal::bit_mux_opened`]): a dealer keeps each element's
    /// `⌊r / 2^s⌋` until the last of them is dealt. A party's material is that of any
    /// truncation.
    ///
    /// # Errors
    /// As [`Deal::stochastic_trunc`].
    fn stochastic_trunc_opened(
        &mut self,
        id: NodeId,
        readers: usize,
        n: usize,
        bits: u32,
        width: u32,
    ) -> Result<Pair<StochasticTruncMaterial>, MaterialError> {
        let _ = (id, readers);
        self.stochastic_trunc(n, bits, width)
    }

    /// Material of a select with bits shaped `bit` of truncation `trunc`'s output (shaped
    /// `x`) that reads the truncation's opening: its mask of x is the truncation's
    /// `−⌊r / 2^s⌋` ([`bit_mux::deal_on_mask`](super::bit_mux::deal_on_mask)). A party's
    /// material is that of any select.
    ///
    /// # Errors
    /// As [`Deal::drelu_opened`].
    fn bit_mux_opened(
        &mut self,
        trunc: NodeId,
        bit: &[usize],
        x: &[usize],
    ) -> Result<Pair<BitMuxMaterial>, MaterialError> {
        let _ = trunc;
        self.bit_mux(bit, x)
    }

    /// DReLU keys of width `bits` for the `n` comparisons that read truncation `trunc`'s
    /// opening, keyed on the masks [`Deal::stochastic_trunc_opened`] kept. A party's
    /// material is that of any DReLU keys.
    ///
    /// # Errors
    /// If the truncation's masks were not kept or cover another number of elements, or as
    /// [`Deal::drelu`].
    fn drelu_opened(
        &mut self,
        trunc: NodeId,
        n: usize,
        bits: u32,
    ) -> Result<Pair<DreluMaterial>, MaterialError> {
        let _ = trunc;
        self.drelu(n, bits)
    }

    /// Beaver bit triples for `n` AND gates on `lanes` lanes each.
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn bit_triples(
        &mut self,
        n: usize,
        lanes: u32,
    ) -> Result<Pair<BitTripleMaterial>, MaterialError>;

    /// The AND triples of `n` GMW DReLU gates.
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn gmw_drelu(&mut self, n: usize) -> Result<Pair<GmwDreluMaterial>, MaterialError>;

    /// daBits for `n` B2A conversions.
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn b2a(&mut self, n: usize) -> Result<Pair<B2aMaterial>, MaterialError>;

    /// Material of a select with XOR-shared bits shaped `bit` and values shaped `x`.
    ///
    /// # Errors
    /// As [`Deal::triple`].
    fn bit_mux(
        &mut self,
        bit: &[usize],
        x: &[usize],
    ) -> Result<Pair<BitMuxMaterial>, MaterialError>;

    /// One oblivious shuffle of a `[rows, k]` matrix by the permutation named `perm`
    /// ([`shuffle`](super::shuffle)): every call naming `perm` in a session
    /// permutes by the same `π1∘π0` (drawn at the first), with fresh masks.
    ///
    /// # Errors
    /// If `perm` was drawn for another number of rows, or as [`Deal::triple`].
    fn shuffle(
        &mut self,
        perm: u32,
        rows: usize,
        k: usize,
    ) -> Result<Pair<ShuffleMaterial>, MaterialError>;

    /// Per-call material of the block-sparse `H · W` (`H`: `[seq, ff]`) for fixed operand
    /// `w` (`[ff, d]`, masked earlier), in blocks of `block` rows of `W`
    /// ([`block_matmul`](super::block_matmul)).
    ///
    /// # Errors
    /// If `w` has no mask yet, is not a matrix, or `block` does not divide its rows; or as
    /// [`Deal::triple`].
    fn block_matmul(
        &mut self,
        w: NodeId,
        seq: usize,
        block: usize,
    ) -> Result<Pair<BlockMatMulMaterial>, MaterialError>;

    /// The seed of one `share` node, known to both parties.
    fn share_seed(&mut self) -> [u8; 32];

    /// Offline bytes so far: materialised by the dealer (both parties), or read from this
    /// party's file (replay).
    fn offline_bytes(&self) -> u64;

    /// One item of material (a node's, the setup's) is complete: a recording dealer hands
    /// what it buffered to its sinks, so that a streaming party never waits for bytes the
    /// dealer holds back.
    fn item_done(&mut self) {}

    /// Why this source cannot go on, if it cannot: a recording dealer whose sink failed
    /// (a party's stream stalled or closed), so that dealing stops at the next item
    /// instead of drawing the rest of the call for nobody.
    fn failure(&self) -> Option<String> {
        None
    }
}

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
    /// The file was used before: this session's half (the file or a copy of it, under any
    /// name) is in the list of used material, or its `.used` marker exists.
    #[error("{path} was already used (marker {marker} exists): material is never used twice, under any name; deal a new session with `comet deal`", path = path.display(), marker = marker.display())]
    Used {
        /// The file.
        path: PathBuf,
        /// Its marker.
        marker: PathBuf,
    },
    /// A material file to be written exists: material is never overwritten.
    #[error("{} exists: `comet deal` never overwrites material (a party may be reading it); remove it or deal into another folder", .0.display())]
    Exists(PathBuf),
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

/// The product a triple or a fixed operand's correction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Element-wise, with broadcasting.
    Elementwise,
    /// Matrix product `[.., m, k] · [.., k, n]` (or `· [k, n]`).
    MatMul,
}

impl Product {
    /// The shape of the product of operands shaped `x` and `y`.
    ///
    /// # Errors
    /// If the shapes do not combine.
    pub fn shape(self, x: &[usize], y: &[usize]) -> Result<Vec<usize>, MaterialError> {
        let bad = || MaterialError::Shape(format!("{self:?} of {x:?} and {y:?}"));
        match self {
            Product::Elementwise => broadcast_shape(x, y).ok_or_else(bad),
            Product::MatMul => matmul_shape(x, y).ok_or_else(bad),
        }
    }

    /// `a ∘ b` in the ring.
    ///
    /// # Panics
    /// If the shapes do not combine.
    pub(crate) fn apply(self, a: &ArrayD<u64>, b: &ArrayD<u64>) -> ArrayD<u64> {
        match self {
            Product::Elementwise => ring_ops::mul(a.view(), b.view()),
            Product::MatMul => ring::matmul_batched(a.view(), b.view()).expect("matmul shapes"),
        }
    }
}

/// `[.., m, k] · [.., k, n]`: `[.., m, n]`, the batch of the longer operand.
fn matmul_shape(x: &[usize], y: &[usize]) -> Option<Vec<usize>> {
    let ([.., m, k], [.., k2, n]) = (x, y) else {
        return None;
    };
    if k != k2 {
        return None;
    }
    let batch = if x.len() >= y.len() {
        &x[..x.len() - 2]
    } else {
        &y[..y.len() - 2]
    };
    Some([batch, &[*m, *n]].concat())
}

/// A tensor of `shape` drawn from `rng`.
pub(crate) fn expand(rng: &mut ChaCha12Rng, shape: &[usize]) -> ArrayD<u64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.next_u64())
}

/// One mask share of `shape` per party, each from its own stream.
pub(crate) fn masks(d: &mut dyn DealerStreams, shape: &[usize]) -> [ArrayD<u64>; 2] {
    [0, 1].map(|p| expand(d.stream(p), shape))
}

/// [`masks`] of a product with a one-sided fixed operand: the owner's share is empty (not
/// drawn: the owner sends nothing and masks nothing), the other party's from its stream.
pub(crate) fn masks_of(
    d: &mut dyn DealerStreams,
    shape: &[usize],
    owner: Option<PartyId>,
) -> [ArrayD<u64>; 2] {
    [0, 1].map(|p| {
        if owner == Some(p) {
            ArrayD::zeros(IxDyn(&[0]))
        } else {
            expand(d.stream(p), shape)
        }
    })
}

/// `a0 + a1`.
pub(crate) fn sum([a0, a1]: &[ArrayD<u64>; 2]) -> ArrayD<u64> {
    ring_ops::add(a0.view(), a1.view())
}

/// Shares of `c`: party 0's from its stream, party 1's the materialised correction
/// (counted).
pub(crate) fn correct(d: &mut dyn DealerStreams, c: ArrayD<u64>) -> [ArrayD<u64>; 2] {
    let c0 = expand(d.stream(0), c.shape());
    let c1 = ring_ops::sub(c.view(), c0.view());
    d.count_offline(8 * c1.len() as u64);
    [c0, c1]
}

/// This party's mask of `shape`, from its stream.
pub(crate) fn own_mask(r: &mut dyn PartyStreams, shape: &[usize]) -> ArrayD<u64> {
    expand(r.stream(), shape)
}

/// This party's share of a product: party 0's from its stream, party 1's the correction
/// in the body.
pub(crate) fn product_share(
    r: &mut dyn PartyStreams,
    shape: &[usize],
) -> Result<ArrayD<u64>, MaterialError> {
    if r.party() == 0 {
        return Ok(own_mask(r, shape));
    }
    correction(r, shape)
}

/// A correction of `shape` read from the body (little-endian `u64`s).
pub(crate) fn correction(
    r: &mut dyn PartyStreams,
    shape: &[usize],
) -> Result<ArrayD<u64>, MaterialError> {
    let n: usize = shape.iter().product();
    let bytes = r.body(8 * n)?;
    Ok(shaped(shape, words(&bytes)))
}

/// The body bytes of a correction: its elements little-endian.
pub(crate) fn array_bytes(c: &ArrayD<u64>) -> Vec<u8> {
    c.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Body bytes of a product's correction: party 1's share, party 0 gets none.
pub(crate) fn correction_body(c1: &ArrayD<u64>) -> [Vec<u8>; 2] {
    [Vec::new(), array_bytes(c1)]
}

/// `n` words from `rng`, each masked by `mask`.
pub(crate) fn draw(rng: &mut ChaCha12Rng, n: usize, mask: u64) -> Vec<u64> {
    (0..n).map(|_| rng.next_u64() & mask).collect()
}

/// Party 0's share of a product, from its stream; party 1's is filled in later.
pub(crate) fn draw_product(party: PartyId, rng: &mut ChaCha12Rng, n: usize, mask: u64) -> Vec<u64> {
    if party == 0 {
        draw(rng, n, mask)
    } else {
        vec![0; n]
    }
}

/// `v` as a tensor of `shape`.
pub(crate) fn shaped(shape: &[usize], v: Vec<u64>) -> ArrayD<u64> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("one value per element")
}

/// Little-endian `u64`s.
pub(crate) fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// Panics unless every index is below `n` and none repeats.
pub(crate) fn check_indices(idx: &[usize], n: usize) {
    let mut taken = vec![false; n];
    for &i in idx {
        assert!(i < n, "element {i} of material for {n} elements");
        assert!(
            !taken[i],
            "element {i} gathered twice: material is used once"
        );
        taken[i] = true;
    }
}

/// Flat elements `idx` (row-major) of `x`, as a 1-D array.
pub(crate) fn take(x: &ArrayD<u64>, idx: &[usize]) -> ArrayD<u64> {
    let x = x.as_standard_layout();
    let flat = x.as_slice().expect("standard layout");
    let values: Vec<u64> = idx.iter().map(|&i| flat[i]).collect();
    ArrayD::from_shape_vec(IxDyn(&[idx.len()]), values).expect("1-D")
}

/// Rows `rows` of `x` read as `lead` rows (`x`'s `[H, seq, ..]` leading axes, `H·seq =
/// lead`): `[rows.len(), ..]`; empty material stays empty.
///
/// # Panics
/// If `x` does not split into `lead` rows, or a row is out of range.
pub(crate) fn take_rows(x: &ArrayD<u64>, rows: &[usize], lead: usize) -> ArrayD<u64> {
    if x.is_empty() {
        return x.clone();
    }
    assert!(
        lead > 0 && x.len().is_multiple_of(lead),
        "material {:?} in {lead} rows",
        x.shape()
    );
    let per = x.len() / lead;
    let x = x.as_standard_layout();
    let flat = x.as_slice().expect("standard layout");
    let mut values = Vec::with_capacity(rows.len() * per);
    for &r in rows {
        values.extend_from_slice(&flat[r * per..(r + 1) * per]);
    }
    let mut shape = vec![rows.len()];
    match x.ndim() >= 2 && x.shape()[0] * x.shape()[1] == lead {
        true => shape.extend(&x.shape()[2..]),
        false => shape.push(per),
    }
    ArrayD::from_shape_vec(IxDyn(&shape), values).expect("rows × per")
}

/// `Debug` of material: party and shapes, never values.
pub(crate) fn redact(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    party: PartyId,
    shapes: &[(&str, &[usize])],
) -> std::fmt::Result {
    let mut s = f.debug_struct(name);
    s.field("party", &party);
    for (field, shape) in shapes {
        s.field(field, &format_args!("[..] shape {shape:?}"));
    }
    s.finish()
}

/// The batch sizes of `n` gates in batches of at most `batch`.
pub(crate) fn batch_sizes(n: usize, batch: usize) -> impl Iterator<Item = usize> {
    (0..n.div_ceil(batch)).map(move |b| batch.min(n - b * batch))
}

/// How a kind of FSS key batch is drawn, serialized and named: what [`deal_key_batches`]
/// and [`read_key_batch`] need of a gate.
pub(crate) struct KeyBatch<'a, K> {
    /// The gate's name in errors (`DReLU`, `lookup-table`).
    pub what: &'a str,
    /// Its width in bits (header byte 1).
    pub bits: u32,
    /// Gates per batch.
    pub batch: usize,
    /// Correction bytes per gate and party (counted offline; the headers apart).
    pub element_bytes: usize,
    /// Further correction bytes per gate that party 1 alone receives.
    pub party1_extra: usize,
    /// Header bytes per batch and party.
    pub header_bytes: usize,
    /// Serialized keys of one party.
    pub to_bytes: fn(&K) -> Vec<u8>,
}

/// Deals `n` gates batch by batch with `draw(len, fss stream)`, counting each batch's
/// correction bytes and headers, handing its bodies to `sink` as soon as it is drawn, and
/// keeping the keys only when `keep` (a dealer that only streams holds one batch at a time).
pub(crate) fn deal_key_batches<K>(
    d: &mut dyn DealerStreams,
    n: usize,
    kind: &KeyBatch<'_, K>,
    keep: bool,
    mut sink: Option<&mut dyn FnMut([Vec<u8>; 2])>,
    mut draw: impl FnMut(usize, &mut ChaCha12Rng) -> (K, K),
) -> Option<[Vec<K>; 2]> {
    let mut kept = [Vec::new(), Vec::new()];
    for len in batch_sizes(n, kind.batch) {
        let (k0, k1) = draw(len, d.fss_stream());
        d.count_offline((len * (2 * kind.element_bytes + kind.party1_extra)) as u64);
        d.count_headers(2 * kind.header_bytes as u64);
        if let Some(sink) = sink.as_mut() {
            sink([(kind.to_bytes)(&k0), (kind.to_bytes)(&k1)]);
        }
        if keep {
            kept[0].push(k0);
            kept[1].push(k1);
        }
    }
    keep.then_some(kept)
}

/// One batch of `n` gates from the body: its header (party, width, count, seed) checked
/// against this party and `kind`, then its `byte_len` bytes in all. Returns where it
/// started and its bytes.
///
/// # Errors
/// If the body ends, or the header names another party, width or count (`follow` ends the
/// message).
pub(crate) fn read_key_batch<K>(
    r: &mut dyn PartyStreams,
    n: usize,
    kind: &KeyBatch<'_, K>,
    byte_len: usize,
    follow: &str,
) -> Result<(u64, Vec<u8>), MaterialError> {
    let (at, party, bits) = (r.body_offset(), r.party(), kind.bits);
    let mut bytes = r.body(kind.header_bytes)?;
    let width = u32::from(bytes[1]);
    let count = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
    if bytes[0] != party || width != bits || count != n as u64 {
        return Err(MaterialError::Corrupt(format!(
            "at body byte {at}: expected the {bits}-bit {} keys of party {party} for {n} \
             gates, found {width}-bit keys of party {} for {count} gates: {follow}",
            kind.what, bytes[0]
        )));
    }
    r.count_headers(kind.header_bytes as u64);
    bytes.extend(r.body(byte_len - kind.header_bytes)?);
    Ok((at, bytes))
}
