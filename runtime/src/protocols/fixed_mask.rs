//! The mask `B` of a fixed operand (weights), [`super::fixed`]'s once-per-session material.
//!
//! Party `p`'s share `B_p` of fixed operand `w` is AES-128 in counter mode under a key of
//! its own: the first 16 bytes of party `p`'s ChaCha12 stream number [`MASK_STREAMS`]` + w`
//! (the party's main stream, which every other mask comes from, is stream 0); element `i`
//! is half of counter block `⌊i/2⌋`. Counter mode gives random access to any element and,
//! with AES-NI, several times ChaCha12's speed on this workload. Nothing is materialised: the party
//! expands its share at setup ([`FixedMaskMaterial::expand`]), and the dealer, which needs
//! `B = B_0 + B_1` for every call's correction `A ∘ B`, can re-derive any row of it at any
//! time. So the dealer keeps `B` expanded only while its mask budget allows
//! ([`FixedMask`]); beyond it, each call re-expands `B` in chunks of rows
//! (`FixedMask::product`), trading AES output (16 bytes per element and call) for
//! resident memory (8 bytes per element for the session). Either way the parties receive
//! the same bytes.
//!
//! **One-sided masks.** A fixed operand derived from one party's private values only (the
//! server's weights) needs a mask that the *other* party cannot see, and nothing more: the
//! owner knows `W` already, so it may know `B` too. Such a mask has a single share, the
//! owner's (`B = B_owner`, the other party's share is 0: [`FixedMaskMaterial::is_zero`]),
//! which the plan decides ([`comet_ir::protocol::mask_owner`]). The other party then keeps
//! no `B_p` and skips `E·B_p` in every product, and the dealer derives one AES stream
//! instead of two. An operand no single party may know — a block-permuted one, whose
//! permutation is secret to both — keeps two shares.

use std::borrow::Cow;
use std::fmt;

use aes::Aes128Enc;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use comet_ir::NodeId;
use ndarray::{ArrayD, ArrayView2, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::PartyId;
use super::material::{self, DealerStreams, PartyStreams, Product};
use crate::ring;

/// Stream numbers `MASK_STREAMS + w` (`w` the operand's node index) hold the fixed masks.
pub const MASK_STREAMS: u64 = 1 << 32;

/// Bytes of `B` re-expanded at a time when the dealer does not keep it.
const CHUNK_BYTES: usize = 8 << 20;

/// Counter blocks encrypted per batch.
const BATCH_BLOCKS: usize = 1024;

/// The AES-128 key of one share of one fixed operand's mask.
#[derive(Clone, PartialEq, Eq)]
struct MaskKey([u8; 16]);

/// This party's share `B_p` of the mask of a fixed operand: the stream it is drawn from,
/// or none for the non-owner of a one-sided mask (its share is 0).
#[derive(Clone, PartialEq, Eq)]
pub struct FixedMaskMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    shape: Vec<usize>,
    key: Option<MaskKey>,
    /// The owner of a one-sided mask (`None`: two shares).
    owner: Option<PartyId>,
}

impl FixedMaskMaterial {
    /// Party `party`'s share of the mask of operand `w`, shaped `shape`, from its `seed`;
    /// 0 when `owner` names the other party (a one-sided mask).
    pub fn new(
        party: PartyId,
        seed: [u8; 32],
        w: NodeId,
        shape: &[usize],
        owner: Option<PartyId>,
    ) -> FixedMaskMaterial {
        FixedMaskMaterial {
            party,
            shape: shape.to_vec(),
            key: holds(owner, party).then(|| mask_key(seed, w)),
            owner,
        }
    }

    /// Whether this share is 0: the other party owns the operand and its whole mask.
    pub fn is_zero(&self) -> bool {
        self.key.is_none()
    }

    /// The owner of a one-sided mask (`None`: both parties hold a share).
    pub fn owner(&self) -> Option<PartyId> {
        self.owner
    }

    /// The fixed operand's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// `B_p`, expanded (zeros for a zero share).
    pub fn expand(&self) -> ArrayD<u64> {
        let n = self.shape.iter().product();
        let mut v = vec![0; n];
        if let Some(key) = &self.key {
            add_from(key, 0, &mut v);
        }
        ArrayD::from_shape_vec(IxDyn(&self.shape), v).expect("one value per element")
    }
}

impl fmt::Debug for FixedMaskMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        material::redact(f, "FixedMaskMaterial", self.party, &[("b", &self.shape)])
    }
}

/// The dealer's record of a fixed operand's mask `B` (both shares added up), to issue the
/// per-call corrections `a ∘ B`: `B` itself when kept, else the two streams it is re-derived
/// from. Never leaves the dealer.
pub struct FixedMask {
    shape: Vec<usize>,
    /// The keys of the shares that are not 0: both, or the owner's.
    keys: Vec<MaskKey>,
    kept: Option<ArrayD<u64>>,
    /// The owner of a one-sided mask.
    owner: Option<PartyId>,
}

/// Whether party `p` holds a share of a mask with owner `owner` (`None`: both do).
fn holds(owner: Option<PartyId>, p: PartyId) -> bool {
    owner.is_none_or(|o| o == p)
}

impl FixedMask {
    /// The mask of operand `w` of `shape` under the party seeds `seeds`, one-sided when
    /// `owner` is set; expanded and kept when `keep`.
    pub fn new(
        seeds: [[u8; 32]; 2],
        w: NodeId,
        shape: &[usize],
        keep: bool,
        owner: Option<PartyId>,
    ) -> FixedMask {
        let keys = (0..2u8)
            .filter(|&p| holds(owner, p))
            .map(|p| mask_key(seeds[usize::from(p)], w))
            .collect();
        let mut mask = FixedMask {
            shape: shape.to_vec(),
            keys,
            kept: None,
            owner,
        };
        if keep {
            mask.kept = Some(mask.dense().into_owned());
        }
        mask
    }

    /// The fixed operand's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The owner of a one-sided mask (`None`: both parties hold a share).
    pub fn owner(&self) -> Option<PartyId> {
        self.owner
    }

    /// Whether `B` is kept expanded (else each use re-derives it).
    pub fn is_kept(&self) -> bool {
        self.kept.is_some()
    }

    /// Elements of `B`.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether `B` has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `B`: kept, or expanded now.
    pub(crate) fn dense(&self) -> Cow<'_, ArrayD<u64>> {
        if let Some(b) = &self.kept {
            return Cow::Borrowed(b);
        }
        let v = self.elements(0, self.len());
        Cow::Owned(ArrayD::from_shape_vec(IxDyn(&self.shape), v).expect("one value per element"))
    }

    /// `a ∘ B`. A matrix `B` that is not kept is re-expanded [`CHUNK_BYTES`] of rows at a
    /// time, so the product never holds more of `B` than one chunk.
    ///
    /// # Panics
    /// If the shapes do not combine.
    pub(crate) fn product(&self, kind: Product, a: &ArrayD<u64>) -> ArrayD<u64> {
        match (&self.kept, kind, self.shape.as_slice()) {
            (None, Product::MatMul, &[k, n]) => self.chunked_matmul(a, k, n),
            _ => kind.apply(a, &self.dense()),
        }
    }

    /// `a · B` for `a` `[.., m, k]` and `B` `[k, n]`, by chunks of `B`'s rows.
    fn chunked_matmul(&self, a: &ArrayD<u64>, k: usize, n: usize) -> ArrayD<u64> {
        assert_eq!(a.shape().last(), Some(&k), "a is [.., m, {k}]");
        let lead = &a.shape()[..a.ndim() - 1];
        let rows: usize = lead.iter().product();
        let a = a.as_standard_layout();
        let a2 = a.to_shape((rows, k)).expect("a is [.., m, k]");
        let step = (CHUNK_BYTES / 8 / n.max(1)).clamp(1, k.max(1));
        let mut z = ndarray::Array2::<u64>::zeros((rows, n)).into_dyn();
        for r0 in (0..k).step_by(step) {
            let r1 = (r0 + step).min(k);
            let b = self.elements(r0 * n, r1 * n);
            let b = ArrayView2::from_shape((r1 - r0, n), &b).expect("rows of B");
            let part = a2.slice(ndarray::s![.., r0..r1]).into_dyn();
            let p = ring::matmul_batched(part, b.into_dyn()).expect("matmul shapes");
            z.zip_mut_with(&p, |x, y| *x = x.wrapping_add(*y));
        }
        let mut shape = lead.to_vec();
        shape.push(n);
        z.into_shape_with_order(IxDyn(&shape))
            .expect("rows·n elements")
    }

    /// Flat elements `from..to` of `B`, the sum of the shares that are not 0.
    fn elements(&self, from: usize, to: usize) -> Vec<u64> {
        let mut b = vec![0; to - from];
        for key in &self.keys {
            add_from(key, from, &mut b);
        }
        b
    }
}

impl fmt::Debug for FixedMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FixedMask([..] shape {:?}, kept: {})",
            self.shape,
            self.is_kept()
        )
    }
}

/// Deals the mask of fixed operand `w` of `shape`, once per session: both shares are
/// streams of the party seeds (nothing materialised), and the dealer's record keeps `B`
/// expanded when `keep`.
pub fn deal_mask(
    d: &dyn DealerStreams,
    w: NodeId,
    shape: &[usize],
    keep: bool,
    owner: Option<PartyId>,
) -> (FixedMask, [FixedMaskMaterial; 2]) {
    let seeds = [0, 1].map(|p| d.party_seed(p));
    let mask = FixedMask::new(seeds, w, shape, keep, owner);
    let m = [0, 1].map(|p| FixedMaskMaterial::new(p, seeds[usize::from(p)], w, shape, owner));
    (mask, m)
}

/// One party's share of the mask of fixed operand `w`, as [`deal_mask`] dealt it.
pub fn replay_mask(
    r: &dyn PartyStreams,
    w: NodeId,
    shape: &[usize],
    owner: Option<PartyId>,
) -> FixedMaskMaterial {
    FixedMaskMaterial::new(r.party(), r.party_seed(), w, shape, owner)
}

/// The key of party `p`'s share of the mask of operand `w`: the first 16 bytes of its
/// stream [`MASK_STREAMS`]` + w`.
fn mask_key(seed: [u8; 32], w: NodeId) -> MaskKey {
    let mut rng = ChaCha12Rng::from_seed(seed);
    rng.set_stream(MASK_STREAMS + w.index() as u64);
    let mut key = [0; 16];
    rng.fill_bytes(&mut key);
    MaskKey(key)
}

/// Adds elements `from..from + out.len()` of the mask under `key` to `out` (wrapping):
/// element `i` is the low (`i` even) or high (`i` odd) little-endian half of
/// `AES_key(⌊i/2⌋)`, the counter as a little-endian 128-bit block.
fn add_from(key: &MaskKey, from: usize, out: &mut [u64]) {
    let cipher = Aes128Enc::new(&Array::from(key.0));
    let mut blocks = vec![Array::from([0u8; 16]); BATCH_BLOCKS];
    let mut words = vec![0u64; 2 * BATCH_BLOCKS];
    let mut i = from;
    let mut rest = out;
    while !rest.is_empty() {
        let first = i / 2;
        let count = (i + rest.len()).div_ceil(2).min(first + BATCH_BLOCKS) - first;
        for (j, b) in blocks[..count].iter_mut().enumerate() {
            *b = Array::from(((first + j) as u128).to_le_bytes());
        }
        cipher.encrypt_blocks(&mut blocks[..count]);
        for (w, b) in words.chunks_exact_mut(2).zip(&blocks[..count]) {
            let b: &[u8; 16] = b.as_ref();
            w[0] = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            w[1] = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        }
        let skip = i - 2 * first;
        let take = (2 * count - skip).min(rest.len());
        let (now, later) = rest.split_at_mut(take);
        for (x, y) in now.iter_mut().zip(&words[skip..skip + take]) {
            *x = x.wrapping_add(*y);
        }
        i += take;
        rest = later;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::ring_ops;

    fn seeds() -> [[u8; 32]; 2] {
        [[7; 32], [9; 32]]
    }

    #[test]
    fn a_share_is_aes_in_counter_mode_under_its_own_key() {
        let w = NodeId::from_index(5);
        let m = FixedMaskMaterial::new(1, seeds()[1], w, &[3, 7], None);
        let cipher = Aes128Enc::new(&Array::from(mask_key(seeds()[1], w).0));
        let mut block = Array::from(3u128.to_le_bytes());
        cipher.encrypt_block(&mut block);
        let flat: Vec<u64> = m.expand().iter().copied().collect();
        assert_eq!(flat[6], u64::from_le_bytes(block[..8].try_into().unwrap()));
        assert_eq!(flat[7], u64::from_le_bytes(block[8..].try_into().unwrap()));
        for (from, n) in [(0, 21), (1, 20), (5, 1), (6, 0), (20, 1), (3, 15)] {
            assert_eq!(
                draw_from(m.key.as_ref().unwrap(), from, n),
                flat[from..from + n],
                "{from}+{n}"
            );
        }
        let long = FixedMaskMaterial::new(0, seeds()[0], w, &[1201], None).expand();
        let long = long.as_slice().unwrap();
        for (from, n) in [(1, 1200), (511, 690), (512, 2)] {
            assert_eq!(
                draw_from(&mask_key(seeds()[0], w), from, n),
                long[from..from + n]
            );
        }
        let other = FixedMaskMaterial::new(1, seeds()[1], NodeId::from_index(6), &[3, 7], None);
        assert_ne!(
            other.expand(),
            m.expand(),
            "each operand has its own stream"
        );
    }

    #[test]
    fn the_dealers_mask_is_the_sum_of_the_shares_kept_or_not() {
        let w = NodeId::from_index(2);
        let [s0, s1] = seeds();
        let b0 = FixedMaskMaterial::new(0, s0, w, &[40, 9], None).expand();
        let b1 = FixedMaskMaterial::new(1, s1, w, &[40, 9], None).expand();
        let sum = ring_ops::add(b0.view(), b1.view());
        let kept = FixedMask::new(seeds(), w, &[40, 9], true, None);
        let lazy = FixedMask::new(seeds(), w, &[40, 9], false, None);
        assert!(kept.is_kept() && !lazy.is_kept());
        assert_eq!(*kept.dense(), sum);
        assert_eq!(*lazy.dense(), sum);
        assert_eq!(lazy.elements(17, 30), sum.as_slice().unwrap()[17..30]);
    }

    #[test]
    fn a_chunked_product_equals_the_whole_one() {
        let w = NodeId::from_index(3);
        // 3000 rows of 700: a chunk is 1498 rows, so three chunks, the last one short
        let (k, n) = (3000, 700);
        let kept = FixedMask::new(seeds(), w, &[k, n], true, None);
        let lazy = FixedMask::new(seeds(), w, &[k, n], false, None);
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let a = ArrayD::from_shape_simple_fn(IxDyn(&[2, 3, k]), || rng.next_u64());
        let want = kept.product(Product::MatMul, &a);
        assert_eq!(want.shape(), &[2, 3, n]);
        assert_eq!(lazy.product(Product::MatMul, &a), want);
    }

    #[test]
    fn a_one_sided_mask_is_the_owners_share() {
        let w = NodeId::from_index(4);
        let [s0, s1] = seeds();
        let b0 = FixedMaskMaterial::new(0, s0, w, &[30, 5], Some(0));
        let b1 = FixedMaskMaterial::new(1, s1, w, &[30, 5], Some(0));
        assert!(!b0.is_zero() && b1.is_zero());
        assert_eq!(b1.expand(), ArrayD::<u64>::zeros(IxDyn(&[30, 5])));
        let two_sided = FixedMaskMaterial::new(0, s0, w, &[30, 5], None).expand();
        assert_eq!(
            b0.expand(),
            two_sided,
            "the owner's share is its usual stream"
        );
        for keep in [true, false] {
            let mask = FixedMask::new(seeds(), w, &[30, 5], keep, Some(0));
            assert_eq!(*mask.dense(), two_sided, "B = B_0");
        }
        let other = FixedMaskMaterial::new(1, s1, w, &[30, 5], Some(1)).expand();
        assert_eq!(
            *FixedMask::new(seeds(), w, &[30, 5], false, Some(1)).dense(),
            other
        );
        assert_ne!(other, two_sided);
    }

    /// Elements `from..from + n` of the mask under `key`.
    fn draw_from(key: &MaskKey, from: usize, n: usize) -> Vec<u64> {
        let mut out = vec![0; n];
        add_from(key, from, &mut out);
        out
    }

    #[test]
    fn debug_shows_no_mask() {
        let m = FixedMask::new(seeds(), NodeId::from_index(1), &[2, 2], true, None);
        let s = format!("{m:?}");
        assert!(
            s.contains("shape [2, 2]") && s.contains("kept: true"),
            "{s}"
        );
        let p = FixedMaskMaterial::new(0, seeds()[0], NodeId::from_index(1), &[2, 2], None);
        assert!(!format!("{p:?}").contains("key"), "{p:?}");
    }
}
