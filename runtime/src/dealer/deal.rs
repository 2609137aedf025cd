//! Where a session's correlated randomness comes from, seen from the interpreter: one
//! trait, [`Deal`], with two sources. The [`SessionDealer`] draws both parties' material
//! (in process, or to write material files with [`SessionDealer::recording`]); a
//! [`PartyReplay`](super::PartyReplay) re-derives one party's half from its seed and the
//! corrections read from its material file. Both are driven in the same order (canonical
//! node order, setup first), so a party's material is the same from either source.

use std::collections::HashMap;
use std::io::Write;

use comet_ir::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

pub use crate::protocols::material::Deal;

use super::{
    B2aMaterial, BitMuxMaterial, BitTripleMaterial, BlockMatMulMaterial, Dealer, DreluMaterial,
    FixedCallMaterial, FixedMask, FixedMaskMaterial, GmwDreluMaterial, LutMaterial, MaterialError,
    Pair, PartySeed, Product, ShuffleMaterial, ShufflePerm, SquareMaterial, TripleMaterial,
};
use crate::protocols::block_matmul::{self, block_shapes};
use crate::protocols::cache_matmul::{self, CacheMatMulMaterial, CacheProduct, KvMasks};
use crate::protocols::shuffle::{self, check_rows};
use crate::protocols::sign_select::{self, SignSelectMaterial};
use crate::protocols::trunc_fss::{self, TruncMaterial};
use crate::protocols::trunc_stochastic::{self, StochasticTruncMaterial};
use crate::protocols::{b2a, beaver_mul, bit_mux, drelu, fixed, fixed_mask, gmw, lut, square, xor};

/// Where a recording dealer writes each party's materialised bytes.
type Sinks = [Box<dyn Write + Send>; 2];

/// The dealer of one session: both parties' material, drawn from a master seed. With
/// [`SessionDealer::recording`] it also writes, per party, what that party cannot derive
/// from its own seed (party 1's corrections, both parties' DReLU keys, the permuting
/// party's shuffle corrections): the body of the party's material file, laid out as each
/// protocol's `body` function says.
pub struct SessionDealer {
    dealer: Dealer,
    common: ChaCha12Rng,
    common_seed: PartySeed,
    masks: HashMap<NodeId, FixedMask>,
    /// Bytes of fixed masks the dealer may keep expanded; the rest is re-derived per call.
    mask_budget: u64,
    /// Bytes of fixed masks kept expanded.
    mask_kept: u64,
    perms: HashMap<u32, ShufflePerm>,
    /// The masks of the KV-cache rows opened so far.
    kv: KvMasks,
    /// Per stochastic truncation whose opening other nodes read: each element's
    /// `⌊r / 2^s⌋` and the readers not yet dealt.
    trunc_masks: HashMap<NodeId, (Vec<u64>, usize)>,
    sinks: Option<Sinks>,
    /// Whether the material is only recorded (files, the service), not handed out.
    streaming: bool,
    written: [u64; 2],
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for SessionDealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDealer")
            .field("offline_bytes", &self.dealer.offline_bytes())
            .field("fixed_masks", &self.masks.len())
            .finish_non_exhaustive()
    }
}

impl SessionDealer {
    /// A dealer whose party seeds and common seed derive from `master`.
    pub fn new(master: PartySeed) -> SessionDealer {
        let dealer = Dealer::new(master);
        let mut root = ChaCha12Rng::from_seed(master);
        let mut skip = [0u8; 32];
        for _ in 0..3 {
            root.fill_bytes(&mut skip); // the party and FSS seeds
        }
        let mut common_seed = [0; 32];
        root.fill_bytes(&mut common_seed);
        SessionDealer {
            dealer,
            common: ChaCha12Rng::from_seed(common_seed),
            common_seed,
            masks: HashMap::new(),
            mask_budget: u64::MAX,
            mask_kept: 0,
            perms: HashMap::new(),
            kv: KvMasks::default(),
            trunc_masks: HashMap::new(),
            sinks: None,
            streaming: false,
            written: [0; 2],
            error: None,
        }
    }

    /// [`SessionDealer::new`] from a `u64` (tests, in-process runs).
    pub fn from_u64(master: u64) -> SessionDealer {
        let mut seed = [0; 32];
        ChaCha12Rng::seed_from_u64(master).fill_bytes(&mut seed);
        SessionDealer::new(seed)
    }

    /// Keeps at most `bytes` of fixed operands' masks expanded (8 bytes per element), in
    /// setup order; the masks beyond are re-derived from the party seeds at each call that
    /// uses them (16 bytes of ChaCha output per element). The material is the same either
    /// way; this trades the dealer's resident memory for its time per call.
    pub fn with_mask_budget(mut self, bytes: u64) -> SessionDealer {
        self.mask_budget = bytes;
        self
    }

    /// Bytes of fixed masks kept expanded so far.
    pub fn mask_bytes_kept(&self) -> u64 {
        self.mask_kept
    }

    /// Also writes each party's materialised bytes to `sinks[p]`.
    pub fn recording(mut self, sinks: Sinks) -> SessionDealer {
        self.sinks = Some(sinks);
        self
    }

    /// Hands out no material that can be large (DReLU keys): it is only recorded, batch
    /// by batch as it is drawn, so the dealer holds one batch at a time. For a dealer that
    /// writes files or streams to parties, never for one whose material is used in process.
    pub fn streaming(mut self) -> SessionDealer {
        self.streaming = true;
        self
    }

    /// Party `p`'s stream seed.
    pub fn party_seed(&self, party: u8) -> PartySeed {
        self.dealer.party_seed(party)
    }

    /// The seed both parties draw `share` seeds from.
    pub fn common_seed(&self) -> PartySeed {
        self.common_seed
    }

    /// Bytes written to each party's sink so far.
    pub fn written(&self) -> [u64; 2] {
        self.written
    }

    /// Per-batch DReLU key headers, both parties (not in the cost model).
    pub fn header_bytes(&self) -> u64 {
        self.dealer.header_bytes()
    }

    /// Flushes the sinks; the first write error, if any.
    ///
    /// # Errors
    /// If writing a sink failed.
    pub fn finish(mut self) -> Result<[u64; 2], std::io::Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(sinks) = &mut self.sinks {
            for s in sinks {
                s.flush()?;
            }
        }
        Ok(self.written)
    }

    fn record(&mut self, party: usize, bytes: &[u8]) {
        record_to(
            &mut self.sinks,
            &mut self.written,
            &mut self.error,
            party,
            bytes,
        );
    }

    /// Writes each party's body bytes of one instance (`body` of the protocol).
    fn record_body<T>(&mut self, m: &[T; 2], body: impl Fn(&[T; 2]) -> [Vec<u8>; 2]) {
        if self.sinks.is_some() {
            for (p, bytes) in body(m).iter().enumerate() {
                if !bytes.is_empty() {
                    self.record(p, bytes);
                }
            }
        }
    }
}

/// A batch sink of a protocol's batched dealing: each batch's body bytes, per party.
type BatchSink<'a> = Option<&'a mut dyn FnMut([Vec<u8>; 2])>;

impl SessionDealer {
    /// Runs a protocol's batched dealing, `deal(dealer, keep, sink)`, which draws batch
    /// after batch and hands each batch's bodies to the sink: this dealer's sinks when
    /// recording; the material is kept unless the dealer only streams.
    fn batched<T>(
        &mut self,
        deal: impl FnOnce(&mut Dealer, bool, BatchSink<'_>) -> Option<[T; 2]>,
    ) -> Pair<T> {
        let recording = self.sinks.is_some();
        let (sinks, written, error) = (&mut self.sinks, &mut self.written, &mut self.error);
        let mut sink = |bodies: [Vec<u8>; 2]| {
            for (p, bytes) in bodies.iter().enumerate() {
                record_to(sinks, written, error, p, bytes);
            }
        };
        let sink = recording.then_some(&mut sink as &mut dyn FnMut([Vec<u8>; 2]));
        match deal(&mut self.dealer, !self.streaming, sink) {
            Some(m) => both(m),
            None => [None, None],
        }
    }
}

impl SessionDealer {
    /// The masks `⌊r / 2^s⌋` of truncation `trunc`'s `n` elements for one of its readers
    /// (the last one takes them).
    fn trunc_masks_for(&mut self, trunc: NodeId, n: usize) -> Result<Vec<u64>, MaterialError> {
        let missing = || {
            MaterialError::Mismatch(format!(
                "a node reads the opening of truncation {trunc}, whose masks for {n} \
                 elements were not dealt before it"
            ))
        };
        let (masks, left) = self.trunc_masks.get_mut(&trunc).ok_or_else(missing)?;
        if masks.len() != n {
            return Err(missing());
        }
        *left = left.saturating_sub(1);
        if *left > 0 {
            return Ok(masks.clone());
        }
        Ok(self
            .trunc_masks
            .remove(&trunc)
            .map(|m| m.0)
            .unwrap_or_default())
    }
}

/// Writes `bytes` to `party`'s sink, if recording and no write failed yet.
fn record_to(
    sinks: &mut Option<Sinks>,
    written: &mut [u64; 2],
    error: &mut Option<std::io::Error>,
    party: usize,
    bytes: &[u8],
) {
    if let Some(sinks) = sinks
        && error.is_none()
    {
        match sinks[party].write_all(bytes) {
            Ok(()) => written[party] += bytes.len() as u64,
            Err(e) => *error = Some(e),
        }
    }
}

fn both<T>([a, b]: [T; 2]) -> Pair<T> {
    [Some(a), Some(b)]
}

impl Deal for SessionDealer {
    fn triple(
        &mut self,
        kind: Product,
        x: &[usize],
        y: &[usize],
    ) -> Result<Pair<TripleMaterial>, MaterialError> {
        kind.shape(x, y)?;
        let m = match kind {
            Product::Elementwise => self.dealer.beaver_mul(x, y),
            Product::MatMul => self.dealer.beaver_matmul(x, y),
        };
        self.record_body(&m, beaver_mul::body);
        Ok(both(m))
    }

    fn cache_matmul(
        &mut self,
        op: CacheProduct,
        x: &[usize],
        c: &[usize],
        new: &[usize],
    ) -> Result<Pair<CacheMatMulMaterial>, MaterialError> {
        let m = cache_matmul::deal(&mut self.dealer, &mut self.kv, op, x, c, new)?;
        self.record_body(&m, cache_matmul::body);
        Ok(both(m))
    }

    fn square(&mut self, shape: &[usize]) -> Result<Pair<SquareMaterial>, MaterialError> {
        let m = self.dealer.square(shape);
        self.record_body(&m, square::body);
        Ok(both(m))
    }

    fn fixed_mask(
        &mut self,
        w: NodeId,
        shape: &[usize],
        owner: Option<crate::ring::PartyId>,
    ) -> Result<Pair<FixedMaskMaterial>, MaterialError> {
        let bytes = 8 * shape.iter().product::<usize>() as u64;
        let keep = self.mask_kept.saturating_add(bytes) <= self.mask_budget;
        if keep {
            self.mask_kept += bytes;
        }
        let (mask, m) = fixed_mask::deal_mask(&self.dealer, w, shape, keep, owner);
        self.masks.insert(w, mask);
        Ok(both(m))
    }

    fn fixed_call(
        &mut self,
        w: NodeId,
        kind: Product,
        x: &[usize],
    ) -> Result<Pair<FixedCallMaterial>, MaterialError> {
        let mask = (self.masks.get(&w)).ok_or(MaterialError::NoFixedMask(w))?;
        kind.shape(x, mask.shape())?;
        let m = match kind {
            Product::Elementwise => self.dealer.fixed_mul(mask, x),
            Product::MatMul => self.dealer.fixed_matmul(mask, x),
        };
        self.record_body(&m, fixed::call_body);
        Ok(both(m))
    }

    fn drelu(&mut self, n: usize, bits: u32) -> Result<Pair<DreluMaterial>, MaterialError> {
        Ok(self.batched(|d, keep, sink| drelu::deal_batches(d, n, bits, keep, sink)))
    }

    fn lut(&mut self, n: usize, bits: u32) -> Result<Pair<LutMaterial>, MaterialError> {
        lut::check_width(bits)?;
        Ok(self.batched(|d, keep, sink| lut::deal_batches(d, n, bits, keep, sink)))
    }

    fn sign_select(
        &mut self,
        n: usize,
        bits: u32,
        same: bool,
    ) -> Result<Pair<SignSelectMaterial>, MaterialError> {
        sign_select::check_width(bits)?;
        Ok(self.batched(|d, keep, sink| sign_select::deal_batches(d, n, bits, same, keep, sink)))
    }

    fn faithful_trunc(
        &mut self,
        n: usize,
        bits: u32,
    ) -> Result<Pair<TruncMaterial>, MaterialError> {
        trunc_fss::check_bits(bits)?;
        Ok(self.batched(|d, keep, sink| trunc_fss::deal_batches(d, n, bits, keep, sink)))
    }

    fn stochastic_trunc(
        &mut self,
        n: usize,
        bits: u32,
        width: u32,
    ) -> Result<Pair<StochasticTruncMaterial>, MaterialError> {
        trunc_stochastic::check_width(bits, width)?;
        Ok(self.batched(|d, keep, sink| {
            trunc_stochastic::deal_batches(d, n, [bits, width], keep, sink)
        }))
    }

    fn stochastic_trunc_opened(
        &mut self,
        id: NodeId,
        readers: usize,
        n: usize,
        bits: u32,
        width: u32,
    ) -> Result<Pair<StochasticTruncMaterial>, MaterialError> {
        trunc_stochastic::check_width(bits, width)?;
        let mut masks = Vec::with_capacity(n);
        let m = self.batched(|d, keep, sink| {
            trunc_stochastic::deal_batches_masks(d, n, [bits, width], keep, sink, Some(&mut masks))
        });
        self.trunc_masks.insert(id, (masks, readers));
        Ok(m)
    }

    fn drelu_opened(
        &mut self,
        trunc: NodeId,
        n: usize,
        bits: u32,
    ) -> Result<Pair<DreluMaterial>, MaterialError> {
        let masks = self.trunc_masks_for(trunc, n)?;
        Ok(self.batched(|d, keep, sink| drelu::deal_batches_on_masks(d, &masks, bits, keep, sink)))
    }

    fn bit_mux_opened(
        &mut self,
        trunc: NodeId,
        bit: &[usize],
        x: &[usize],
    ) -> Result<Pair<BitMuxMaterial>, MaterialError> {
        Product::Elementwise.shape(bit, x)?;
        let n = x.iter().product();
        let masks = self.trunc_masks_for(trunc, n)?;
        let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(x), masks)
            .map_err(|e| MaterialError::Shape(e.to_string()))?
            .mapv(u64::wrapping_neg);
        let m = bit_mux::deal_on_mask(&mut self.dealer, bit, x, &a);
        self.record_body(&m, bit_mux::body);
        Ok(both(m))
    }

    fn bit_triples(
        &mut self,
        n: usize,
        lanes: u32,
    ) -> Result<Pair<BitTripleMaterial>, MaterialError> {
        let m = self.dealer.bit_triples(n, lanes);
        self.record_body(&m, xor::body);
        Ok(both(m))
    }

    fn gmw_drelu(&mut self, n: usize) -> Result<Pair<GmwDreluMaterial>, MaterialError> {
        let m = self.dealer.gmw_drelu(n);
        self.record_body(&m, gmw::body);
        Ok(both(m))
    }

    fn b2a(&mut self, n: usize) -> Result<Pair<B2aMaterial>, MaterialError> {
        let m = self.dealer.b2a(n);
        self.record_body(&m, b2a::body);
        Ok(both(m))
    }

    fn bit_mux(
        &mut self,
        bit: &[usize],
        x: &[usize],
    ) -> Result<Pair<BitMuxMaterial>, MaterialError> {
        Product::Elementwise.shape(bit, x)?;
        let m = self.dealer.bit_mux(bit, x);
        self.record_body(&m, bit_mux::body);
        Ok(both(m))
    }

    fn shuffle(
        &mut self,
        perm: u32,
        rows: usize,
        k: usize,
    ) -> Result<Pair<ShuffleMaterial>, MaterialError> {
        check_rows(perm, rows, self.perms.get(&perm).map(ShufflePerm::rows))?;
        let pis = (self.perms)
            .entry(perm)
            .or_insert_with(|| self.dealer.shuffle_perm(rows));
        let m = self.dealer.shuffle(pis, k);
        self.record_body(&m, shuffle::body);
        Ok(both(m))
    }

    fn block_matmul(
        &mut self,
        w: NodeId,
        seq: usize,
        block: usize,
    ) -> Result<Pair<BlockMatMulMaterial>, MaterialError> {
        let mask = (self.masks.get(&w)).ok_or(MaterialError::NoFixedMask(w))?;
        block_shapes(mask.shape(), seq, block)?;
        let m = self.dealer.block_matmul(mask, seq, block);
        self.record_body(&m, block_matmul::body);
        Ok(both(m))
    }

    fn share_seed(&mut self) -> [u8; 32] {
        let mut s = [0; 32];
        self.common.fill_bytes(&mut s);
        s
    }

    fn offline_bytes(&self) -> u64 {
        self.dealer.offline_bytes()
    }

    fn failure(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|e| format!("writing the material failed: {e}"))
    }

    fn item_done(&mut self) {
        if let Some(sinks) = &mut self.sinks
            && self.error.is_none()
        {
            for s in sinks.iter_mut() {
                if let Err(e) = s.flush() {
                    self.error = Some(e);
                    return;
                }
            }
        }
    }
}
