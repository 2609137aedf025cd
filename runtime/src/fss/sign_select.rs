//! The select on a sign, `y·[x ≥ 0]`, fused into one gate from the 1-bit DCF (SIGMA's
//! ReLU and max, Gupta et al., ePrint 2023/1269): arithmetic shares in Z_2^64 of
//! `y·DReLU(x)` for x a signed m-bit value (2 ≤ m ≤ 64), in two rounds, with no opening of
//! the bit and no Beaver triple. The runtime's protocol over it is
//! [`crate::protocols::sign_select`], whose documentation derives it; this module holds the
//! keys and the three local steps.
//!
//! Per gate, party b expands from its 32-byte seed a DPF root seed, a mask share
//! r_b ∈ Z_2^64 of x, a flip bit σ_b, a share a_b of ρ, (when y is not x) a mask share s_b
//! of y and a share c_b of ρ·s; the dealer sends the 1-bit DCF's correction words for
//! [x̂' < r'] on m − 1 bits, and party 1 the corrections a_1 = ρ − a_0 and c_1 = ρ·s − c_0
//! (16 bytes), where ρ = σ_0 ⊕ σ_1 ⊕ msb_m(r) and s = r when y is x.
//!
//! Key bytes per gate: [`SignSelectKey::element_bytes`] = [`DcfBitKey::correction_bytes`](m
//! − 1) + 16·b for party b (926 / 942 at m = 64), plus [`super::BATCH_HEADER_BYTES`] per
//! batch.

use std::fmt;

use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::codec::{BATCH_HEADER_BYTES, BatchHeader, Reader};
use super::dcf::random_root;
use super::dcf_bit::{self, DcfBitKey};
use super::drelu::{PartySeed, random_party_seed};
use super::prg::Seed;
use super::{FssError, check_batch, low_mask};

/// Bit 7 of the header's width byte: the gate's y is its x (ReLU, a max level).
const SAME_FLAG: u8 = 0x80;

/// One party's key material for a batch of sign-select gates.
#[derive(Clone, PartialEq, Eq)]
pub struct SignSelectKey {
    party: u8,
    m_bits: u32,
    same: bool,
    /// The seed the per-gate values expand from; `None` once gathered.
    seed: Option<PartySeed>,
    /// r_b per gate, in Z_2^64 (only the low m bits meet the DCF).
    x_masks: Vec<u64>,
    /// σ_b per gate.
    flips: Vec<bool>,
    /// a_b, the share of ρ.
    rho: Vec<u64>,
    /// s_b, the mask share of y (r_b when y is x).
    y_masks: Vec<u64>,
    /// c_b, the share of ρ·s.
    rho_y: Vec<u64>,
    dcf: Vec<DcfBitKey>,
}

/// Fails unless `m_bits` is a width the gate takes (2..=64).
///
/// # Errors
/// If it is not.
pub fn check_width(m_bits: u32) -> Result<(), FssError> {
    match (2..=64).contains(&m_bits) {
        true => Ok(()),
        false => Err(FssError::Width(m_bits)),
    }
}

/// Dealer: keys for `n` gates on `m_bits`-bit signed x, one per party; `same`: y is x.
///
/// # Panics
/// If `m_bits` is not in 2..=64.
pub fn sign_select_offline<R: CryptoRng + ?Sized>(
    m_bits: u32,
    same: bool,
    n: usize,
    rng: &mut R,
) -> (SignSelectKey, SignSelectKey) {
    check_width(m_bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let mut streams = seeds.map(|seed| Stream::expand(&seed, same, n));
    let (k0, k1) = (0..n).map(|i| deal(&mut streams, m_bits, i)).unzip();
    let [s0, s1] = streams;
    (
        SignSelectKey::assemble(0, m_bits, same, seeds[0], s0, k0),
        SignSelectKey::assemble(1, m_bits, same, seeds[1], s1, k1),
    )
}

/// Gate i: the DCF keys at r' = r mod 2^(m−1), and party 1's corrections of ρ and ρ·s.
fn deal(streams: &mut [Stream; 2], m_bits: u32, i: usize) -> (DcfBitKey, DcfBitKey) {
    let r = streams[0].x_masks[i].wrapping_add(streams[1].x_masks[i]);
    let msb = (r >> (m_bits - 1)) & 1 == 1;
    let rho = u64::from(streams[0].flips[i] ^ streams[1].flips[i] ^ msb);
    let s = streams[0].y_masks[i].wrapping_add(streams[1].y_masks[i]);
    streams[1].rho[i] = rho.wrapping_sub(streams[0].rho[i]);
    streams[1].rho_y[i] = rho.wrapping_mul(s).wrapping_sub(streams[0].rho_y[i]);
    let roots = [streams[0].roots[i], streams[1].roots[i]];
    dcf_bit::keygen_from_roots(roots, r & low_mask(m_bits - 1), m_bits - 1)
}

/// Round 1, the x part: x_b + r_b mod 2^w per gate, w = 64 when y is x (the opening
/// serves as ŷ), else m.
///
/// # Panics
/// If `party` is not the key's party or `x_share` does not have one entry per gate.
pub fn x_message(party: u8, key: &SignSelectKey, x_share: &[u64]) -> Vec<u64> {
    key.check(party, x_share.len());
    let w = low_mask(key.x_wire_bits());
    (x_share.iter().zip(&key.x_masks))
        .map(|(x, r)| x.wrapping_add(*r) & w)
        .collect()
}

/// Round 1, the y part when y is not x: y_b + s_b per gate (64 bits).
///
/// # Panics
/// If `party` is not the key's party, `y_share` does not have one entry per gate, or the
/// gate's y is its x.
pub fn y_message(party: u8, key: &SignSelectKey, y_share: &[u64]) -> Vec<u64> {
    key.check(party, y_share.len());
    assert!(!key.same, "a gate whose y is its x opens no y");
    (y_share.iter().zip(&key.y_masks))
        .map(|(y, s)| y.wrapping_add(*s))
        .collect()
}

/// Round 2: this party's bit e_b per gate from the opened x̂ = x + r (read mod 2^m):
/// e_b = c_b ⊕ σ_b ⊕ \[b = 0\]·(1 ⊕ msb_m(x̂)), c_b the DCF's share of [x̂' < r'].
///
/// # Panics
/// If `party` is not the key's party or `x_hat` does not have one entry per gate.
pub fn reveal_message(party: u8, key: &SignSelectKey, x_hat: &[u64]) -> Vec<bool> {
    key.check(party, x_hat.len());
    let c = dcf_bit::eval_batch(party, &key.dcf, x_hat);
    let msb = |x: u64| (x >> (key.m_bits - 1)) & 1 == 1;
    (0..x_hat.len())
        .map(|i| c[i] ^ key.flips[i] ^ (party == 0 && !msb(x_hat[i])))
        .collect()
}

/// This party's share of y·DReLU(x) per gate, from the opened e = DReLU(x) ⊕ ρ and ŷ = y + s
/// (x̂ when y is x): `[b = 0]·e·ŷ − e·s_b + (1 − 2e)·(ŷ·a_b − c_b)`.
///
/// # Panics
/// If `party` is not the key's party or a slice does not have one entry per gate.
pub fn finish(party: u8, key: &SignSelectKey, e: &[bool], y_hat: &[u64]) -> Vec<u64> {
    key.check(party, e.len());
    key.check(party, y_hat.len());
    (0..e.len())
        .map(|i| {
            let (y, s, a, c) = (y_hat[i], key.y_masks[i], key.rho[i], key.rho_y[i]);
            let rho_y = y.wrapping_mul(a).wrapping_sub(c);
            match e[i] {
                // e = 1: ŷ − s − (ŷρ − ρs) = y·(1 − ρ)
                true => {
                    let own = if party == 0 { y } else { 0 };
                    own.wrapping_sub(s).wrapping_sub(rho_y)
                }
                // e = 0: ŷρ − ρs = y·ρ
                false => rho_y,
            }
        })
        .collect()
}

/// What a party expands from its seed: per gate a root seed, r_b, σ_b, a_b, s_b, c_b.
struct Stream {
    roots: Vec<Seed>,
    x_masks: Vec<u64>,
    flips: Vec<bool>,
    rho: Vec<u64>,
    y_masks: Vec<u64>,
    rho_y: Vec<u64>,
}

impl Stream {
    fn expand(seed: &PartySeed, same: bool, n: usize) -> Stream {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        let mut s = Stream {
            roots: Vec::with_capacity(n),
            x_masks: Vec::with_capacity(n),
            flips: Vec::with_capacity(n),
            rho: Vec::with_capacity(n),
            y_masks: Vec::with_capacity(n),
            rho_y: Vec::with_capacity(n),
        };
        for _ in 0..n {
            s.roots.push(random_root(&mut rng));
            let r = rng.next_u64();
            s.x_masks.push(r);
            s.flips.push(rng.next_u64() & 1 == 1);
            s.rho.push(rng.next_u64());
            s.y_masks.push(if same { r } else { rng.next_u64() });
            s.rho_y.push(rng.next_u64());
        }
        s
    }
}

impl SignSelectKey {
    /// Bytes per gate the dealer sends party `party`: the (m − 1)-bit 1-bit DCF's correction
    /// words, plus party 1's corrections of ρ and ρ·s (8 bytes each).
    pub const fn element_bytes(party: u8, m_bits: u32) -> usize {
        DcfBitKey::correction_bytes(m_bits - 1) + 16 * party as usize
    }

    /// Serialized size of a batch of `n` gates: header plus n × [`Self::element_bytes`].
    pub const fn byte_len(party: u8, m_bits: u32, n: usize) -> usize {
        BATCH_HEADER_BYTES + n * SignSelectKey::element_bytes(party, m_bits)
    }

    /// The header's width byte: m, with bit 7 set when y is x.
    pub const fn width_byte(m_bits: u32, same: bool) -> u8 {
        m_bits as u8 | if same { SAME_FLAG } else { 0 }
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The comparison width m.
    pub fn m_bits(&self) -> u32 {
        self.m_bits
    }

    /// Whether the gates' y is their x.
    pub fn same(&self) -> bool {
        self.same
    }

    /// Bits of x + r on the wire per gate: 64 when y is x, else m.
    pub fn x_wire_bits(&self) -> u32 {
        if self.same { 64 } else { self.m_bits }
    }

    /// Number of gates in the batch.
    pub fn len(&self) -> usize {
        self.x_masks.len()
    }

    /// Whether the batch has no gates.
    pub fn is_empty(&self) -> bool {
        self.x_masks.is_empty()
    }

    fn assemble(
        party: u8,
        m_bits: u32,
        same: bool,
        seed: PartySeed,
        s: Stream,
        dcf: Vec<DcfBitKey>,
    ) -> Self {
        SignSelectKey {
            party,
            m_bits,
            same,
            seed: Some(seed),
            x_masks: s.x_masks,
            flips: s.flips,
            rho: s.rho,
            y_masks: s.y_masks,
            rho_y: s.rho_y,
            dcf,
        }
    }

    fn check(&self, party: u8, len: usize) {
        check_batch("sign-select", self.party, party, self.len(), len);
    }

    /// The keys of gates `idx` of the batches `parts` (of one party, width and kind; gates
    /// numbered across them in order), in that order: e.g. the active entries of a sparse
    /// FFN's masked region. Each gate may be taken once (a key evaluated on two inputs
    /// reveals their difference). No seed describes the result, so it cannot be
    /// serialized; gather after reading a key, not before writing.
    ///
    /// # Panics
    /// If an index is out of range or repeats, or the parts differ in party, width or kind.
    pub fn gather(parts: &[SignSelectKey], idx: &[usize]) -> SignSelectKey {
        let first = parts.first().expect("at least one batch");
        let kind = |p: &SignSelectKey| (p.party, p.m_bits, p.same);
        assert!(
            parts.iter().all(|p| kind(p) == kind(first)),
            "batches of one party, width and kind"
        );
        let lens: Vec<usize> = parts.iter().map(SignSelectKey::len).collect();
        let n = idx.len();
        let mut key = SignSelectKey {
            party: first.party,
            m_bits: first.m_bits,
            same: first.same,
            seed: None,
            x_masks: Vec::with_capacity(n),
            flips: Vec::with_capacity(n),
            rho: Vec::with_capacity(n),
            y_masks: Vec::with_capacity(n),
            rho_y: Vec::with_capacity(n),
            dcf: Vec::with_capacity(n),
        };
        for (b, j) in super::gate_positions("sign-select", &lens, idx) {
            let p = &parts[b];
            key.x_masks.push(p.x_masks[j]);
            key.flips.push(p.flips[j]);
            key.rho.push(p.rho[j]);
            key.y_masks.push(p.y_masks[j]);
            key.rho_y.push(p.rho_y[j]);
            key.dcf.push(p.dcf[j].clone());
        }
        key
    }

    /// Serializes: the batch header (party, [`Self::width_byte`], gate count, seed), then
    /// per gate the DCF's correction words and, for party 1, a_1 and c_1 (8 bytes LE each).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = SignSelectKey::byte_len(self.party, self.m_bits, self.len());
        let mut out = Vec::with_capacity(len);
        let header = BatchHeader {
            party: self.party,
            width: u32::from(SignSelectKey::width_byte(self.m_bits, self.same)),
            count: self.len(),
            seed: (self.seed)
                .expect("a gathered sign-select key has no seed and is not serialized"),
        };
        header.write(&mut out);
        for (i, key) in self.dcf.iter().enumerate() {
            key.correction_words().write(&mut out);
            if self.party == 1 {
                out.extend_from_slice(&self.rho[i].to_le_bytes());
                out.extend_from_slice(&self.rho_y[i].to_le_bytes());
            }
        }
        out
    }

    /// Parses [`SignSelectKey::to_bytes`] output and re-expands the seed.
    ///
    /// # Errors
    /// If the bytes are not such a batch.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignSelectKey, FssError> {
        let mut r = Reader::new(bytes);
        let h = BatchHeader::read(&mut r, |party, w| {
            let m = w & !u32::from(SAME_FLAG);
            check_width(m).map(|()| SignSelectKey::element_bytes(party, m))
        })?;
        let same = h.width & u32::from(SAME_FLAG) != 0;
        let m_bits = h.width & !u32::from(SAME_FLAG);
        let mut s = Stream::expand(&h.seed, same, h.count);
        let mut dcf = Vec::with_capacity(h.count);
        for i in 0..h.count {
            let cw = DcfBitKey::read_corrections(m_bits - 1, &mut r)?;
            dcf.push(DcfBitKey::from_parts(h.party, s.roots[i], cw));
            if h.party == 1 {
                s.rho[i] = r.u64()?;
                s.rho_y[i] = r.u64()?;
            }
        }
        Ok(SignSelectKey::assemble(
            h.party, m_bits, same, h.seed, s, dcf,
        ))
    }
}

impl fmt::Debug for SignSelectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignSelectKey")
            .field("party", &self.party)
            .field("m_bits", &self.m_bits)
            .field("same", &self.same)
            .field("gates", &self.len())
            .finish_non_exhaustive()
    }
}
