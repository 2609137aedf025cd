//! Faithful truncation by one DCF (SIGMA's arithmetic shift, Gupta et al., ePrint
//! 2023/1269, built here from this crate's DCF): arithmetic shares in Z_2^64 of
//! `⌊x / 2^s⌋` — the **exact** arithmetic right shift of the signed 64-bit value x, the
//! fixed-point backend's `trunc` — for every x with `−2^62 ≤ x < 2^62`, in one round,
//! never off by one and never wrong by a wrap. The runtime's protocol over it is
//! [`crate::protocols::trunc_fss`]; this module holds the keys and the two local steps.
//!
//! ## Derivation
//! Let y = x + 2^62, so 0 ≤ y < 2^63 (this is where the input bound is used), and let
//! r ∈ Z_2^64 be the dealer's uniform mask; both parties open ŷ = y + r mod 2^64. Write
//! v = v_h·2^s + v_l (0 ≤ v_l < 2^s) and msb(v) for bit 63. As integers
//! y = ŷ − r + 2^64·w with w = \[ŷ < r\], and because y < 2^63,
//! `w = msb(r)·(1 − msb(ŷ))` (no wrap when r < 2^63; when r ≥ 2^63 the sum y + r wraps
//! exactly when ŷ < 2^63). Then
//!
//! ```text
//! ⌊y / 2^s⌋ = ŷ_h − r_h − [ŷ_l < r_l] + 2^(64−s)·msb(r)·(1 − msb(ŷ))
//! ⌊x / 2^s⌋ = ⌊y / 2^s⌋ − 2^(62−s)                      (2^62 is a multiple of 2^s)
//! ```
//!
//! **Dealer** (per element; everything but the corrections expands from each party's
//! seed): the mask shares r_0, r_1, an s-bit DCF at α = r_l with payload β = −1 and
//! offset γ = −r_h ([`super::dcf`]: the parties' outputs sum to `−[ŷ_l < r_l] − r_h`), and
//! additive shares of msb(r): m_0 from party 0's seed, m_1 = msb(r) − m_0 sent to party 1.
//!
//! **Round 1**: party b sends `x_b + r_b (+ 2^62 for b = 0)`, 64 bits; both learn ŷ.
//!
//! **Output**: party b outputs
//! `[b = 0]·(ŷ_h − 2^(62−s)) + dcf_b(ŷ_l) + 2^(64−s)·(1 − msb(ŷ))·m_b`.
//!
//! **What is opened**: ŷ, masked by r, uniform and known to neither party; the DCF key is
//! pseudorandom to its holder. Nothing about x is revealed.
//!
//! **The bound**: outside `[−2^62, 2^62)` (ring units, i.e. `|x| < 2^(62 − scale)` in real
//! units; 2^30 at 32 fractional bits) the result is wrong; the compiler's range analysis
//! states the bound it relies on (`comet_compiler::range`).
//!
//! Key bytes per element: [`TruncKey::element_bytes`] = the s-bit DCF's correction words,
//! [`CorrectionWords::byte_len`]\(s) = 24s + ⌈2s/8⌉ + 8 (396 at s = 16), plus 8 bytes
//! (m_1) for party 1; plus [`super::BATCH_HEADER_BYTES`] per batch.

use std::fmt;

use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::codec::{BATCH_HEADER_BYTES, BatchHeader, Reader};
use super::dcf::{self, Comparison, CorrectionWords, DcfKey, keygen_from_roots, random_root};
use super::drelu::{PartySeed, random_party_seed};
use super::prg::Seed;
use super::{FssError, check_batch, low_mask};

/// The offset that makes the input non-negative: 2^62.
pub const OFFSET: u64 = 1 << 62;

/// The largest magnitude (ring units) the gate truncates exactly: x ∈ [−2^62, 2^62).
pub const INPUT_BOUND: u64 = OFFSET;

/// One party's key material for a batch of faithful truncations by `s` bits.
#[derive(Clone, PartialEq, Eq)]
pub struct TruncKey {
    party: u8,
    bits: u32,
    /// The seed the masks and root seeds expand from; `None` once gathered.
    seed: Option<PartySeed>,
    /// r_b per element.
    masks: Vec<u64>,
    /// m_b, the share of msb(r).
    msb: Vec<u64>,
    /// The s-bit DCF per element.
    dcf: Vec<DcfKey>,
}

/// Fails unless `bits` is a shift the gate takes (1..=62).
///
/// # Errors
/// If it is not.
pub fn check_bits(bits: u32) -> Result<(), FssError> {
    match (1..=62).contains(&bits) {
        true => Ok(()),
        false => Err(FssError::Width(bits)),
    }
}

/// Dealer: keys for `n` truncations by `bits`, one per party.
///
/// # Panics
/// If `bits` is not in 1..=62.
pub fn trunc_offline<R: CryptoRng + ?Sized>(
    bits: u32,
    n: usize,
    rng: &mut R,
) -> (TruncKey, TruncKey) {
    check_bits(bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let mut streams = seeds.map(|seed| Stream::expand(&seed, n));
    let (k0, k1) = (0..n).map(|i| deal(&mut streams, bits, i)).unzip();
    let [s0, s1] = streams;
    (
        TruncKey::assemble(0, bits, seeds[0], s0, k0),
        TruncKey::assemble(1, bits, seeds[1], s1, k1),
    )
}

/// Element i: the DCF at α = r_l (β = −1, γ = −r_h) and party 1's share of msb(r).
fn deal(streams: &mut [Stream; 2], bits: u32, i: usize) -> (DcfKey, DcfKey) {
    let r = streams[0].masks[i].wrapping_add(streams[1].masks[i]);
    streams[1].msb[i] = (r >> 63).wrapping_sub(streams[0].msb[i]);
    let f = Comparison {
        alpha: r & low_mask(bits),
        n_bits: bits,
        beta: u64::MAX,
        gamma: (r >> bits).wrapping_neg(),
    };
    keygen_from_roots([streams[0].roots[i], streams[1].roots[i]], &f)
}

/// Round 1: `x_b + r_b` per element, party 0 adding 2^62.
///
/// # Panics
/// If `party` is not the key's party or `x_share` does not have one entry per element.
pub fn trunc_message(party: u8, key: &TruncKey, x_share: &[u64]) -> Vec<u64> {
    key.check(party, x_share.len());
    let offset = if party == 0 { OFFSET } else { 0 };
    (x_share.iter().zip(&key.masks))
        .map(|(x, r)| x.wrapping_add(*r).wrapping_add(offset))
        .collect()
}

/// This party's share of `⌊x / 2^s⌋` per element from the opened ŷ = x + 2^62 + r.
///
/// # Panics
/// If `party` is not the key's party or `y_hat` does not have one entry per element.
pub fn trunc_finish(party: u8, key: &TruncKey, y_hat: &[u64]) -> Vec<u64> {
    key.check(party, y_hat.len());
    let s = key.bits;
    let c = dcf::eval_batch(party, &key.dcf, y_hat);
    (0..y_hat.len())
        .map(|i| {
            let y = y_hat[i];
            let own = if party == 0 {
                (y >> s).wrapping_sub(OFFSET >> s)
            } else {
                0
            };
            let wrap = if y >> 63 == 0 {
                key.msb[i].wrapping_shl(64 - s)
            } else {
                0
            };
            own.wrapping_add(c[i]).wrapping_add(wrap)
        })
        .collect()
}

/// What a party expands from its seed: per element a DCF root seed, r_b and m_b.
struct Stream {
    roots: Vec<Seed>,
    masks: Vec<u64>,
    msb: Vec<u64>,
}

impl Stream {
    fn expand(seed: &PartySeed, n: usize) -> Stream {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        let mut s = Stream {
            roots: Vec::with_capacity(n),
            masks: Vec::with_capacity(n),
            msb: Vec::with_capacity(n),
        };
        for _ in 0..n {
            s.roots.push(random_root(&mut rng));
            s.masks.push(rng.next_u64());
            s.msb.push(rng.next_u64());
        }
        s
    }
}

impl TruncKey {
    /// Bytes per element the dealer sends party `party`: the s-bit DCF's correction words,
    /// plus party 1's share of msb(r) (8 bytes).
    pub const fn element_bytes(party: u8, bits: u32) -> usize {
        CorrectionWords::byte_len(bits) + 8 * party as usize
    }

    /// Serialized size of a batch of `n` elements: header plus n × [`Self::element_bytes`].
    pub const fn byte_len(party: u8, bits: u32, n: usize) -> usize {
        BATCH_HEADER_BYTES + n * TruncKey::element_bytes(party, bits)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The shift s.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of elements in the batch.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether the batch has no elements.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    fn assemble(party: u8, bits: u32, seed: PartySeed, s: Stream, dcf: Vec<DcfKey>) -> Self {
        TruncKey {
            party,
            bits,
            seed: Some(seed),
            masks: s.masks,
            msb: s.msb,
            dcf,
        }
    }

    fn check(&self, party: u8, len: usize) {
        check_batch("truncation", self.party, party, self.len(), len);
    }

    /// The keys of elements `idx` of the batches `parts` (of one party and shift, elements
    /// numbered across them in order), in that order: e.g. the active entries of a sparse
    /// FFN's masked region. Each element may be taken once (a key evaluated on two inputs
    /// reveals their difference). No seed describes the result, so it cannot be
    /// serialized; gather after reading a key, not before writing.
    ///
    /// # Panics
    /// If an index is out of range or repeats, or the parts mix parties or shifts.
    pub fn gather(parts: &[TruncKey], idx: &[usize]) -> TruncKey {
        let first = parts.first().expect("at least one batch");
        let (party, bits) = (first.party, first.bits);
        let mut at = Vec::new();
        for (b, part) in parts.iter().enumerate() {
            assert!(
                part.party == party && part.bits == bits,
                "batches of one party and shift"
            );
            at.extend((0..part.len()).map(|i| (b, i)));
        }
        let mut taken = vec![false; at.len()];
        let mut key = TruncKey {
            party,
            bits,
            seed: None,
            masks: Vec::with_capacity(idx.len()),
            msb: Vec::with_capacity(idx.len()),
            dcf: Vec::with_capacity(idx.len()),
        };
        for &i in idx {
            assert!(i < at.len(), "element {i} of batches of {}", at.len());
            assert!(
                !taken[i],
                "element {i} gathered twice: a truncation key is used once"
            );
            taken[i] = true;
            let (b, j) = at[i];
            key.masks.push(parts[b].masks[j]);
            key.msb.push(parts[b].msb[j]);
            key.dcf.push(parts[b].dcf[j].clone());
        }
        key
    }

    /// Serializes: the batch header (party, shift, element count, seed), then per element
    /// the DCF's correction words and, for party 1, m_1 (8 bytes LE).
    ///
    /// # Panics
    /// If the key was gathered ([`TruncKey::gather`]): its seed no longer describes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let seed =
            (self.seed).expect("a gathered truncation key has no seed and is not serialized");
        let mut out = Vec::with_capacity(TruncKey::byte_len(self.party, self.bits, self.len()));
        let header = BatchHeader {
            party: self.party,
            width: self.bits,
            count: self.len(),
            seed,
        };
        header.write(&mut out);
        for (i, key) in self.dcf.iter().enumerate() {
            key.correction_words().write(&mut out);
            if self.party == 1 {
                out.extend_from_slice(&self.msb[i].to_le_bytes());
            }
        }
        out
    }

    /// Parses [`TruncKey::to_bytes`] output and re-expands the seed.
    ///
    /// # Errors
    /// If the bytes are not such a batch.
    pub fn from_bytes(bytes: &[u8]) -> Result<TruncKey, FssError> {
        let mut r = Reader::new(bytes);
        let h = BatchHeader::read(&mut r, |party, w| {
            check_bits(w).map(|()| TruncKey::element_bytes(party, w))
        })?;
        let mut s = Stream::expand(&h.seed, h.count);
        let mut dcf = Vec::with_capacity(h.count);
        for i in 0..h.count {
            let cw = CorrectionWords::read(h.width, &mut r)?;
            dcf.push(DcfKey::from_parts(h.party, s.roots[i], cw));
            if h.party == 1 {
                s.msb[i] = r.u64()?;
            }
        }
        Ok(TruncKey::assemble(h.party, h.width, h.seed, s, dcf))
    }
}

impl fmt::Debug for TruncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TruncKey")
            .field("party", &self.party)
            .field("bits", &self.bits)
            .field("elements", &self.len())
            .finish_non_exhaustive()
    }
}
