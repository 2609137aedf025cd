//! DReLU on a reduced bit width m from the 1-bit DCF: arithmetic shares in Z_2^64 of
//! [x ≥ 0] for x a signed m-bit value (2 ≤ m ≤ 64), in two rounds.
//!
//! ## Protocol
//! The input is additively shared in Z_2^64; only its low m bits are read (x as an m-bit
//! two's-complement value, e.g. the high bits left after a truncation). Offline, the dealer
//! draws a 32-byte ChaCha12 seed per party; party b expands from it, per gate, a DPF root
//! seed, a mask share r_b ∈ Z_2^m, a flip bit σ_b and a 64-bit share a_b. With r = r_0 + r_1
//! mod 2^m, x̂ = x + r mod 2^m, y' = y mod 2^(m−1) and msb(y) bit m − 1 (as in
//! [`super::drelu`], BCG+21's sign gate):
//!
//! ```text
//! DReLU(x) = p ⊕ msb(r) ⊕ [x̂' < r'],   p = 1 ⊕ msb(x̂) public.
//! ```
//!
//! The dealer issues a 1-bit DCF ([`super::dcf_bit`]) on m − 1 bits at r', whose outputs
//! are XOR shares c_b of [x̂' < r'], and sets ρ = σ_0 ⊕ σ_1 ⊕ msb(r) (uniform, because σ_b
//! are) and sends party 1 the correction a_1 = ρ − a_0 so that a_0 + a_1 = ρ in Z_2^64.
//!
//! 1. Round 1, [`drelu_bit_online_message`]: party b sends x_b + r_b mod 2^m (m bits).
//! 2. Round 2, [`drelu_bit_reveal_message`]: on x̂, party b sends
//!    e_b = c_b ⊕ σ_b ⊕ \[b = 0\]·p (1 bit). Then e = e_0 ⊕ e_1 = DReLU(x) ⊕ ρ, which is
//!    uniform to both parties.
//! 3. [`drelu_bit_finish`]: DReLU(x) = e ⊕ ρ = e + (1 − 2e)·ρ, linear in the shares of ρ:
//!    party b outputs \[b = 0\]·e + (1 − 2e)·a_b.
//!
//! This is B2A by one opened bit with the dealer's arithmetic share of the same random bit
//! ρ; the XOR mask of ρ costs no key bits (σ_b come from the seeds and msb(r) is folded into
//! ρ).
//!
//! ## Sizes
//! Key per gate: party 0 receives the DCF's correction words, party 1 those plus 8 bytes:
//! [`DreluBitKey::element_bytes`] = [`DcfBitKey::correction_bytes`](m − 1) + 8·b, i.e.
//! ≈ (m − 8)(λ + 2) + λ bits (+ 64 for party 1), for m ≥ 8; plus [`super::BATCH_HEADER_BYTES`]
//! per batch. Online: **2 rounds**, m + 1 bits per party and gate (2m + 2 in total).
//!
//! | m  | party 0 B | party 1 B | today's [`super::drelu`] (1 round, m = 64) | 1-round alternative: [`super::dcf`] on m − 1 bits |
//! |----|-----|-----|------|------|
//! | 64 | 926 | 934 | 1536 | 1536 |
//! | 32 | 406 | 414 | —    |  760 |
//! | 24 | 276 | 284 | —    |  566 |
//! | 16 | 146 | 154 | —    |  372 |
//!
//! The alternative keeps one round by taking the arithmetic-payload DCF at the reduced
//! width (24(m − 1) + ⌈2(m − 1)/8⌉ + 8 bytes per party); which one a plan prefers depends
//! on whether its rounds or its key bytes dominate.

use std::fmt;

use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::codec::{BATCH_HEADER_BYTES, BatchHeader, Reader};
use super::dcf::random_root;
use super::dcf_bit::{self, DcfBitKey};
use super::drelu::{PartySeed, random_party_seed};
use super::prg::Seed;
use super::{FssError, check_batch, low_mask, masked_message};

/// One party's key material for a batch of m-bit DReLU gates.
#[derive(Clone, PartialEq, Eq)]
pub struct DreluBitKey {
    party: u8,
    m_bits: u32,
    seed: PartySeed,
    /// r_b per gate, in Z_2^m.
    masks: Vec<u64>,
    /// σ_b per gate.
    flips: Vec<bool>,
    /// a_b per gate: party 0's from the seed, party 1's from the dealer.
    arith: Vec<u64>,
    dcf: Vec<DcfBitKey>,
}

/// Dealer: keys for `n` DReLU gates on `m_bits`-bit values, one per party.
///
/// # Panics
/// If `m_bits` is not in 2..=64.
pub fn drelu_bit_offline<R: CryptoRng + ?Sized>(
    m_bits: u32,
    n: usize,
    rng: &mut R,
) -> (DreluBitKey, DreluBitKey) {
    check_width(m_bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let mut streams = seeds.map(|seed| Stream::expand(&seed, m_bits, n));
    let (k0, k1) = (0..n).map(|i| deal(&mut streams, m_bits, i)).unzip();
    let [s0, s1] = streams;
    (
        DreluBitKey::assemble(0, m_bits, seeds[0], s0, k0),
        DreluBitKey::assemble(1, m_bits, seeds[1], s1, k1),
    )
}

/// Round 1: this party's message x_b + r_b mod 2^m.
///
/// # Panics
/// If `party` is not the key's party or `x_share` does not have one entry per gate.
pub fn drelu_bit_online_message(party: u8, key: &DreluBitKey, x_share: &[u64]) -> Vec<u64> {
    key.check(party, x_share.len());
    masked_message(x_share, &key.masks, 0, key.m_bits)
}

/// Round 2: this party's bit e_b per gate, from x̂ = the sum of both round-1 messages (read
/// mod 2^m).
///
/// # Panics
/// If `party` is not the key's party or `x_hat` does not have one entry per gate.
pub fn drelu_bit_reveal_message(party: u8, key: &DreluBitKey, x_hat: &[u64]) -> Vec<bool> {
    key.check(party, x_hat.len());
    let c = dcf_bit::eval_batch(party, &key.dcf, x_hat);
    let msb = |x: u64| (x >> (key.m_bits - 1)) & 1 == 1;
    (0..x_hat.len())
        .map(|i| c[i] ^ key.flips[i] ^ (party == 0 && !msb(x_hat[i])))
        .collect()
}

/// This party's arithmetic share in Z_2^64 of [x ≥ 0] per gate, from both round-2 messages.
///
/// # Panics
/// If `party` is not the key's party or a message does not have one bit per gate.
pub fn drelu_bit_finish(party: u8, key: &DreluBitKey, mine: &[bool], theirs: &[bool]) -> Vec<u64> {
    key.check(party, mine.len());
    key.check(party, theirs.len());
    (0..mine.len())
        .map(|i| b2a_share(party, mine[i] ^ theirs[i], key.arith[i]))
        .collect()
}

/// Party b's share of e ⊕ ρ = e + (1 − 2e)·ρ given its share a_b of ρ.
fn b2a_share(party: u8, e: bool, a: u64) -> u64 {
    match e {
        true => u64::from(party == 0).wrapping_sub(a),
        false => a,
    }
}

fn check_width(m_bits: u32) -> Result<(), FssError> {
    match (2..=64).contains(&m_bits) {
        true => Ok(()),
        false => Err(FssError::Width(m_bits)),
    }
}

/// Gate i: the DCF keys at r' and party 1's share of ρ.
fn deal(streams: &mut [Stream; 2], m_bits: u32, i: usize) -> (DcfBitKey, DcfBitKey) {
    let r = streams[0].masks[i].wrapping_add(streams[1].masks[i]) & low_mask(m_bits);
    let msb = (r >> (m_bits - 1)) & 1 == 1;
    let rho = streams[0].flips[i] ^ streams[1].flips[i] ^ msb;
    streams[1].arith[i] = u64::from(rho).wrapping_sub(streams[0].arith[i]);
    let roots = [streams[0].roots[i], streams[1].roots[i]];
    dcf_bit::keygen_from_roots(roots, r & low_mask(m_bits - 1), m_bits - 1)
}

/// What a party expands from its seed: per gate a root seed, r_b, σ_b, a_b.
struct Stream {
    roots: Vec<Seed>,
    masks: Vec<u64>,
    flips: Vec<bool>,
    arith: Vec<u64>,
}

impl Stream {
    fn expand(seed: &PartySeed, m_bits: u32, n: usize) -> Stream {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        let mut s = Stream {
            roots: Vec::with_capacity(n),
            masks: Vec::with_capacity(n),
            flips: Vec::with_capacity(n),
            arith: Vec::with_capacity(n),
        };
        for _ in 0..n {
            s.roots.push(random_root(&mut rng));
            s.masks.push(rng.next_u64() & low_mask(m_bits));
            s.flips.push(rng.next_u64() & 1 == 1);
            s.arith.push(rng.next_u64());
        }
        s
    }
}

impl DreluBitKey {
    /// Bytes per gate the dealer sends party `party`: the (m − 1)-bit DCF's correction
    /// words, plus party 1's 8-byte share of ρ.
    pub const fn element_bytes(party: u8, m_bits: u32) -> usize {
        DcfBitKey::correction_bytes(m_bits - 1) + 8 * party as usize
    }

    /// Serialized size of a batch of `n` gates: header plus n × [`DreluBitKey::element_bytes`].
    pub const fn byte_len(party: u8, m_bits: u32, n: usize) -> usize {
        BATCH_HEADER_BYTES + n * DreluBitKey::element_bytes(party, m_bits)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The input width m.
    pub fn m_bits(&self) -> u32 {
        self.m_bits
    }

    /// Number of gates in the batch.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether the batch has no gates.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    fn assemble(party: u8, m_bits: u32, seed: PartySeed, s: Stream, dcf: Vec<DcfBitKey>) -> Self {
        DreluBitKey {
            party,
            m_bits,
            seed,
            masks: s.masks,
            flips: s.flips,
            arith: s.arith,
            dcf,
        }
    }

    fn check(&self, party: u8, len: usize) {
        check_batch("DReLU", self.party, party, self.len(), len);
    }

    /// Serializes: the batch header (party, m, gate count, seed), then per gate the DCF's
    /// correction words and, for party 1, a_1 (8 bytes LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(DreluBitKey::byte_len(self.party, self.m_bits, self.len()));
        let header = BatchHeader {
            party: self.party,
            width: self.m_bits,
            count: self.len(),
            seed: self.seed,
        };
        header.write(&mut out);
        for (key, a) in self.dcf.iter().zip(&self.arith) {
            key.correction_words().write(&mut out);
            if self.party == 1 {
                out.extend_from_slice(&a.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`DreluBitKey::to_bytes`] output and re-expands the seed.
    pub fn from_bytes(bytes: &[u8]) -> Result<DreluBitKey, FssError> {
        let mut r = Reader::new(bytes);
        let h = BatchHeader::read(&mut r, |party, m| {
            check_width(m).map(|()| DreluBitKey::element_bytes(party, m))
        })?;
        let mut s = Stream::expand(&h.seed, h.width, h.count);
        let mut dcf = Vec::with_capacity(h.count);
        for i in 0..h.count {
            let cw = DcfBitKey::read_corrections(h.width - 1, &mut r)?;
            dcf.push(DcfBitKey::from_parts(h.party, s.roots[i], cw));
            if h.party == 1 {
                s.arith[i] = r.u64()?;
            }
        }
        Ok(DreluBitKey::assemble(h.party, h.width, h.seed, s, dcf))
    }
}

impl fmt::Debug for DreluBitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DreluBitKey")
            .field("party", &self.party)
            .field("m_bits", &self.m_bits)
            .field("gates", &self.len())
            .finish_non_exhaustive()
    }
}
