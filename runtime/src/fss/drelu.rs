//! The one-round FSS DReLU gate: arithmetic shares of [x ≥ 0] for x ∈ Z_2^64 whose
//! signed value fits m bits (2 ≤ m ≤ 64): −2^(m−1) ≤ x < 2^(m−1).
//!
//! ## Protocol (BCG+21 sign/DReLU gate from one (m−1)-bit DCF; SIGMA's DReLU)
//! Offline, the dealer draws a 32-byte ChaCha12 seed per party; party b expands from it,
//! per element, a DCF root seed and a mask share r_b (a 64-bit draw, reduced mod 2^m), so
//! the mask r = r_0 + r_1 mod 2^m costs nothing to send. Everything below is mod 2^m:
//! write x̂ = x + r, and for an m-bit value y, y' = y mod 2^(m−1) and msb(y) = y >> (m−1).
//! Then (BCG+21: the sign of x read off x̂ and r, with the borrow of the low m − 1 bits
//! given by one comparison)
//!
//! ```text
//! msb(x) = msb(x̂) ⊕ msb(r) ⊕ [x̂' < r']          so
//! DReLU(x) = 1 ⊕ msb(x) = p ⊕ w,   p = 1 ⊕ msb(x̂) (public),   w = msb(r) ⊕ [x̂' < r'].
//! ```
//!
//! Since x fits m signed bits, msb of x mod 2^m is its sign, so this is DReLU of the
//! 64-bit x. With s = msb(r) known to the dealer, w = s + (1 − 2s)·[x̂' < r'] over the
//! integers, so the dealer issues an (m−1)-bit DCF for x ↦ β·\[x < r'\] + γ with
//! β = 1 − 2s and γ = s: the offset γ rides in the correction words (see [`super::dcf`]),
//! and its outputs are arithmetic shares in Z_2^64 of w. Online:
//!
//! 1. [`drelu_online_message`]: party b sends x_b + r_b mod 2^m (one round, m bits per
//!    element and party: 2m·n in total; the protocol layer packs them, ⌈n·m/8⌉ bytes);
//! 2. both add the two messages to get x̂ and call [`drelu_finish`]: the DCF on x̂' gives
//!    w_b, and p ⊕ w = p + (1 − 2p)·w is linear in w once p is public.
//!
//! The result is an arithmetic share in Z_2^64, so a following mux is a Beaver product and
//! B2A is free. [`ge_threshold_online_message`] gives [x ≥ t] = DReLU(x − t) for a public t
//! (exact while x − t fits m signed bits). At m = 64 this is the full-ring gate: the
//! messages and correction words are those of the 64-bit construction.
//!
//! ## Offline size: what the dealer sends each party
//! Per element, the (m−1)-bit DCF's correction words, [`DreluKey::element_bytes`] =
//! [`CorrectionWords::byte_len`]\(m − 1) = 24(m−1) + ⌈2(m−1)/8⌉ + 8 bytes, the same for both
//! parties (1536 at m = 64, [`DRELU_KEY_BYTES_PER_ELEMENT`]); per batch,
//! [`DRELU_KEY_HEADER_BYTES`] (party, width m, count, seed). PROTOCOLS.md estimates
//! l(λ+2)+l = 8384 bits at m = 64. The gap (+3904 bits, +47%) is the 64-bit value
//! correction per level, which a Z_2^64 payload needs (BCG+21 key size
//! n(λ + l + 2) + λ + l); the estimate matches a 1-bit-payload DCF (SIGMA's DReLU), whose
//! XOR-shared output would need a further B2A round. Against BCG+21's formula this saves
//! the root seed and the mask share (expanded from the per-party seed) and one level.

use std::fmt;

use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::codec::{BATCH_HEADER_BYTES, BatchHeader, Reader};
use super::dcf::{self, Comparison, CorrectionWords, DcfKey, keygen_from_roots, random_root};
use super::prg::Seed;
use super::{FssError, RING_BITS, check_batch, low_mask, masked_message};

/// Input width of the DCF inside the full-ring (m = 64) DReLU: the low 63 bits of x̂.
pub const DRELU_DCF_BITS: u32 = RING_BITS - 1;

/// Offline bytes per full-ring (m = 64) DReLU element and party: the 63-bit DCF's
/// correction words (1536); [`DreluKey::element_bytes`] gives them for any width.
pub const DRELU_KEY_BYTES_PER_ELEMENT: usize = CorrectionWords::byte_len(DRELU_DCF_BITS);

/// Offline bytes per DReLU batch and party: party (1), width m (1), element count (8),
/// seed (32).
pub const DRELU_KEY_HEADER_BYTES: usize = BATCH_HEADER_BYTES;

/// The smallest DReLU width m (the DCF needs at least one input bit).
pub const MIN_DRELU_BITS: u32 = 2;

/// A party's 32-byte ChaCha12 seed, from which its masks and DCF root seeds are expanded.
pub type PartySeed = [u8; 32];

/// One party's key material for a batch of DReLU gates.
#[derive(Clone, PartialEq, Eq)]
pub struct DreluKey {
    party: u8,
    /// The width m: inputs are read mod 2^m.
    bits: u32,
    /// The seed the masks and root seeds expand from; `None` once gathered.
    seed: Option<PartySeed>,
    /// r_b mod 2^m per element (expanded from `seed`).
    masks: Vec<u64>,
    /// The (m−1)-bit DCF key per element (root seed expanded from `seed`).
    dcf: Vec<DcfKey>,
}

/// Dealer: keys for `n` full-ring DReLU gates (m = 64), one per party.
pub fn drelu_offline<R: CryptoRng + ?Sized>(n: usize, rng: &mut R) -> (DreluKey, DreluKey) {
    drelu_offline_bits(n, RING_BITS, rng)
}

/// Dealer: keys for `n` DReLU gates on `bits`-bit signed inputs, one per party.
///
/// # Panics
/// If `bits` is not in 2..=64.
pub fn drelu_offline_bits<R: CryptoRng + ?Sized>(
    n: usize,
    bits: u32,
    rng: &mut R,
) -> (DreluKey, DreluKey) {
    check_bits(bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let streams = seeds.map(|seed| PartyStream::expand(&seed, bits, n));
    let (k0, k1) = (0..n).map(|i| element_keys(&streams, bits, i)).unzip();
    let [s0, s1] = streams;
    (
        DreluKey::assemble(0, bits, seeds[0], s0.masks, k0),
        DreluKey::assemble(1, bits, seeds[1], s1.masks, k1),
    )
}

/// Dealer: keys for `masks.len()` DReLU gates on `bits`-bit signed inputs whose masked
/// value the parties already hold, opened by another gate under the mask `masks[i]` (mod
/// 2^m): the DCFs are keyed on those masks (a stochastic truncation's opening read by the
/// comparison after it, `comet_ir::protocol::Protocol::DreluOpened`). The keys' own mask
/// shares, expanded from their seeds as for any key, are not used: [`drelu_finish`] takes
/// the value opened elsewhere. The serialized keys are those of [`drelu_offline_bits`].
///
/// # Panics
/// If `bits` is not in 2..=64.
pub fn drelu_offline_on_masks<R: CryptoRng + ?Sized>(
    masks: &[u64],
    bits: u32,
    rng: &mut R,
) -> (DreluKey, DreluKey) {
    check_bits(bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let streams = seeds.map(|seed| PartyStream::expand(&seed, bits, masks.len()));
    let (k0, k1) = (masks.iter().enumerate())
        .map(|(i, r)| keys_on_mask(&streams, bits, i, r & low_mask(bits)))
        .unzip();
    let [s0, s1] = streams;
    (
        DreluKey::assemble(0, bits, seeds[0], s0.masks, k0),
        DreluKey::assemble(1, bits, seeds[1], s1.masks, k1),
    )
}

/// Online, step 1: this party's message x_b + r_b mod 2^m, to be sent to the other party.
///
/// # Panics
/// If `party` is not the key's party or `x_share` does not have one entry per gate.
pub fn drelu_online_message(party: u8, key: &DreluKey, x_share: &[u64]) -> Vec<u64> {
    ge_threshold_online_message(party, key, x_share, 0)
}

/// Online, step 1 for [x ≥ t] with a public threshold t: the message of DReLU(x − t).
///
/// # Panics
/// As [`drelu_online_message`].
pub fn ge_threshold_online_message(
    party: u8,
    key: &DreluKey,
    x_share: &[u64],
    threshold: u64,
) -> Vec<u64> {
    key.check(party, x_share.len());
    let shift = if party == 0 { threshold } else { 0 };
    masked_message(x_share, &key.masks, shift, key.bits)
}

/// Both messages added up: the opened x̂ = x + r that [`drelu_finish`] takes (the sum in
/// Z_2^64; [`drelu_finish`] reads it mod 2^m).
///
/// # Panics
/// If the messages differ in length.
pub fn open_masked(mine: &[u64], theirs: &[u64]) -> Vec<u64> {
    assert_eq!(
        mine.len(),
        theirs.len(),
        "both messages cover the same gates"
    );
    mine.iter()
        .zip(theirs)
        .map(|(a, b)| a.wrapping_add(*b))
        .collect()
}

/// Online, step 2: this party's arithmetic share in Z_2^64 of [x ≥ 0] for every gate.
///
/// # Panics
/// If `party` is not the key's party or `x_hat` does not have one entry per gate.
pub fn drelu_finish(party: u8, key: &DreluKey, x_hat: &[u64]) -> Vec<u64> {
    key.check(party, x_hat.len());
    let mut out = dcf::eval_batch(party, &key.dcf, x_hat);
    for (y, &x) in out.iter_mut().zip(x_hat) {
        *y = combine(party, (x >> (key.bits - 1)) & 1, *y);
    }
    out
}

/// p ⊕ w = p + (1 − 2p)·w with p = 1 ⊕ msb_m(x̂) public; party 0 adds the constant.
fn combine(party: u8, msb: u64, w_share: u64) -> u64 {
    match msb {
        1 => w_share,
        _ => u64::from(party == 0).wrapping_sub(w_share),
    }
}

/// The DCF key pair of element `i`: [x̂' < r'] scaled and offset by the sign of r.
fn element_keys(streams: &[PartyStream; 2], bits: u32, i: usize) -> (DcfKey, DcfKey) {
    let r = streams[0].masks[i].wrapping_add(streams[1].masks[i]) & low_mask(bits);
    keys_on_mask(streams, bits, i, r)
}

/// The DCF key pair of element `i` for the mask `r` (mod 2^m), from the streams' roots.
fn keys_on_mask(streams: &[PartyStream; 2], bits: u32, i: usize, r: u64) -> (DcfKey, DcfKey) {
    let sign = r >> (bits - 1);
    let f = Comparison {
        alpha: r & low_mask(bits - 1),
        n_bits: bits - 1,
        beta: 1u64.wrapping_sub(2 * sign),
        gamma: sign,
    };
    keygen_from_roots([streams[0].roots[i], streams[1].roots[i]], &f)
}

/// Rejects widths outside 2..=64.
fn check_bits(bits: u32) -> Result<(), FssError> {
    match (MIN_DRELU_BITS..=RING_BITS).contains(&bits) {
        true => Ok(()),
        false => Err(FssError::Width(bits)),
    }
}

/// Test hook: full-ring keys with chosen mask shares (the seed then no longer describes
/// them, so such keys must not be serialized).
#[cfg(test)]
pub(crate) fn drelu_offline_with_masks(masks: [Vec<u64>; 2], seed: u64) -> (DreluKey, DreluKey) {
    drelu_offline_bits_with_masks(masks, RING_BITS, seed)
}

/// Test hook: [`drelu_offline_with_masks`] at width `bits` (shares reduced mod 2^m).
#[cfg(test)]
pub(crate) fn drelu_offline_bits_with_masks(
    masks: [Vec<u64>; 2],
    bits: u32,
    seed: u64,
) -> (DreluKey, DreluKey) {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let streams = masks.map(|masks| PartyStream {
        roots: masks.iter().map(|_| random_root(&mut rng)).collect(),
        masks: masks.iter().map(|r| r & low_mask(bits)).collect(),
    });
    let (k0, k1) = (0..streams[0].masks.len())
        .map(|i| element_keys(&streams, bits, i))
        .unzip();
    let [s0, s1] = streams;
    (
        DreluKey::assemble(0, bits, [0; 32], s0.masks, k0),
        DreluKey::assemble(1, bits, [1; 32], s1.masks, k1),
    )
}

pub(crate) fn random_party_seed<R: CryptoRng + ?Sized>(rng: &mut R) -> PartySeed {
    let mut seed = [0; 32];
    rng.fill_bytes(&mut seed);
    seed
}

/// What a party expands from its seed: per element a DCF root seed, then a mask share.
struct PartyStream {
    roots: Vec<Seed>,
    masks: Vec<u64>,
}

impl PartyStream {
    /// The per-element draws, masks reduced mod 2^`bits` (the draws do not depend on it).
    fn expand(seed: &PartySeed, bits: u32, n: usize) -> PartyStream {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        let mut stream = PartyStream {
            roots: Vec::with_capacity(n),
            masks: Vec::with_capacity(n),
        };
        for _ in 0..n {
            stream.roots.push(random_root(&mut rng));
            stream.masks.push(rng.next_u64() & low_mask(bits));
        }
        stream
    }
}

impl DreluKey {
    /// Offline bytes per gate and party at width `bits`: the (m−1)-bit DCF's correction
    /// words, 24(m−1) + ⌈2(m−1)/8⌉ + 8.
    pub const fn element_bytes(bits: u32) -> usize {
        CorrectionWords::byte_len(bits - 1)
    }

    /// Serialized size of a full-ring (m = 64) batch of `n` gates: header plus n × 1536.
    pub const fn byte_len(n: usize) -> usize {
        DreluKey::byte_len_bits(n, RING_BITS)
    }

    /// Serialized size of a batch of `n` gates at width `bits`: header plus
    /// n × [`DreluKey::element_bytes`].
    pub const fn byte_len_bits(n: usize, bits: u32) -> usize {
        DRELU_KEY_HEADER_BYTES + n * DreluKey::element_bytes(bits)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The width m the gates read their inputs at.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of gates in the batch.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether the batch has no gates.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    fn assemble(
        party: u8,
        bits: u32,
        seed: PartySeed,
        masks: Vec<u64>,
        dcf: Vec<DcfKey>,
    ) -> DreluKey {
        DreluKey {
            party,
            bits,
            seed: Some(seed),
            masks,
            dcf,
        }
    }

    fn check(&self, party: u8, len: usize) {
        check_batch("DReLU", self.party, party, self.len(), len);
    }

    /// The keys of gates `idx`, in that order: a batch of `idx.len()` gates, e.g. the
    /// active entries of a dense batch. Each gate may be taken once (a key evaluated on two
    /// inputs reveals their difference). No seed describes the result, so it cannot be
    /// serialized ([`DreluKey::to_bytes`]); gather after reading a key, not before writing.
    ///
    /// # Panics
    /// If an index is out of range or repeats.
    pub fn gather(&self, idx: &[usize]) -> DreluKey {
        let mut taken = vec![false; self.len()];
        for &i in idx {
            assert!(i < self.len(), "gate {i} of a batch of {}", self.len());
            assert!(
                !taken[i],
                "gate {i} gathered twice: a DReLU key is used once"
            );
            taken[i] = true;
        }
        DreluKey {
            party: self.party,
            bits: self.bits,
            seed: None,
            masks: idx.iter().map(|&i| self.masks[i]).collect(),
            dcf: idx.iter().map(|&i| self.dcf[i].clone()).collect(),
        }
    }

    /// The batches `parts` of `party`, all of width `bits`, as one key, gates in order.
    /// Like a gathered key, a concatenation of several batches (or of none) has no seed and
    /// cannot be serialized; one batch stays as it is.
    ///
    /// # Panics
    /// If a part belongs to another party or width.
    pub fn concat(party: u8, bits: u32, mut parts: Vec<DreluKey>) -> DreluKey {
        if parts.len() == 1 && parts[0].party == party && parts[0].bits == bits {
            return parts.pop().expect("one batch");
        }
        let n = parts.iter().map(DreluKey::len).sum();
        let mut key = DreluKey {
            party,
            bits,
            seed: None,
            masks: Vec::with_capacity(n),
            dcf: Vec::with_capacity(n),
        };
        for part in parts {
            assert_eq!(part.party, party, "batches of one party");
            assert_eq!(part.bits, bits, "batches of one width");
            key.masks.extend(part.masks);
            key.dcf.extend(part.dcf);
        }
        key
    }

    /// Serializes what the dealer sends: party (1 byte), width m (1 byte), gate count
    /// (8 bytes LE), seed (32 bytes), then each gate's correction words
    /// ([`DreluKey::element_bytes`]).
    ///
    /// # Panics
    /// If the key was gathered ([`DreluKey::gather`]): its seed no longer describes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let seed = (self.seed).expect("a gathered DReLU key has no seed and is not serialized");
        let mut out = Vec::with_capacity(DreluKey::byte_len_bits(self.len(), self.bits));
        let header = BatchHeader {
            party: self.party,
            width: self.bits,
            count: self.len(),
            seed,
        };
        header.write(&mut out);
        for key in &self.dcf {
            key.correction_words().write(&mut out);
        }
        out
    }

    /// Parses [`DreluKey::to_bytes`] output and re-expands the seed.
    ///
    /// # Errors
    /// If the width is outside 2..=64, the length does not match the header, or a field is
    /// malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<DreluKey, FssError> {
        let mut r = Reader::new(bytes);
        let h = BatchHeader::read(&mut r, |_, bits| {
            check_bits(bits).map(|()| DreluKey::element_bytes(bits))
        })?;
        let stream = PartyStream::expand(&h.seed, h.width, h.count);
        let mut dcf = Vec::with_capacity(h.count);
        for &root in &stream.roots {
            let cw = CorrectionWords::read(h.width - 1, &mut r)?;
            dcf.push(DcfKey::from_parts(h.party, root, cw));
        }
        Ok(DreluKey::assemble(
            h.party,
            h.width,
            h.seed,
            stream.masks,
            dcf,
        ))
    }
}

impl fmt::Debug for DreluKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DreluKey")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("gates", &self.len())
            .finish_non_exhaustive()
    }
}
