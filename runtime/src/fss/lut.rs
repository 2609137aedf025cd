//! The FSS lookup-table gate: arithmetic shares in Z_2^64 of T\[x\] for a public table T of
//! 2^n entries and a secret x ∈ Z_2^n (1 ≤ n ≤ [`LUT_MAX_BITS`]), in two rounds.
//!
//! ## Protocol (the 1-bit-DPF table lookup of SIGMA, ePrint 2023/1269, after Pika, ePrint
//! 2022/1284)
//! Offline, the dealer draws a 32-byte ChaCha12 seed per party; party b expands from it, per
//! gate, a DPF root seed, a mask share r_b ∈ Z_2^n, an output mask share M_b ∈ Z_2^64 and
//! one more 64-bit value (S_1 for party 1, P_0 for party 0). With r = r_0 + r_1 mod 2^n the
//! dealer generates a 1-bit DPF ([`super::dpf`], ℓ = 1) at r, whose outputs u_b(j) are XOR
//! shares of \[j = r\]. Then u_0(j) − u_1(j) = 0 for j ≠ r and = σ := (−1)^{u_1(r)} at r, a
//! sign only the dealer knows. It sends S_0 = σ − S_1 to party 0 and P_1 = σ·M − P_0 to
//! party 1 (M = M_0 + M_1), so S_0 + S_1 = σ and P_0 + P_1 = σ·M.
//!
//! 1. Round 1, [`lut_online_message`]: party b sends x_b + r_b mod 2^n (n bits); both get
//!    x̂ = x + r mod 2^n.
//! 2. Round 2, [`lut_reveal_message`]: party b evaluates its DPF on the whole domain
//!    (EvalAll) and sends y_b = z_b + M_b (64 bits) with
//!    z_b = (−1)^b·Σ_j u_b(j)·T\[(x̂ − j) mod 2^n\], so that z_0 + z_1 = σ·T\[x̂ − r\] = σ·T\[x\].
//!    y = y_0 + y_1 = σ·T\[x\] + M is uniform to both parties.
//! 3. [`lut_finish`]: party b outputs S_b·y − P_b; the sum is σ·(σ·T\[x\] + M) − σ·M = T\[x\].
//!
//! The second round removes the DPF's unknown sign σ, which a 1-bit DPF cannot avoid. The
//! one-round variant [`one_round`] evaluates a DPF with payload in Z_2^64 instead (ν = 1: key
//! 16(n − 1) + ⌈2(n − 1)/8⌉ + 16 bytes, [`super::dpf::DpfCorrections::byte_len`] with ℓ =
//! 64) and sums Σ_j d_b(j)·T\[x̂ − j\] directly: one round and 64 online bits fewer per
//! party, for larger keys (n = 13: 211 B against 122 B) and 3·2^(n−1) AES blocks of
//! EvalAll per gate against ≈ 3·2^(n−7) here (measured about 30× slower at n = 13).
//!
//! ## Sizes
//! Key per gate and party: the DPF's correction words plus one 64-bit correction,
//! [`LutKey::element_bytes`] = 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν/8⌉ + 8 bytes with ν =
//! min(n, 7), i.e. ≈ DPF(n) + 64 bits (SIGMA's DPF(n) + n + 2ℓ across both parties with ℓ
//! = 64; the mask shares come from the seeds) — n = 8: 41 B, n = 13: 122 B; plus
//! [`super::BATCH_HEADER_BYTES`] per batch. Online: **2 rounds**, n + 64 bits per party and gate
//! (2n + 128 in total). Local work per gate: EvalAll into packed bits
//! ([`dpf::eval_all_bits`], ≈ 3·2^(n−7) AES blocks), a rotation of those bits by x̂ and
//! 2^n/4 branch-free reads of per-nibble subset sums of the reversed table (4·2^n words,
//! built once per batch); see [`lut_reveal_message`].

use std::fmt;

use rand::{CryptoRng, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::codec::{BATCH_HEADER_BYTES, BatchHeader, Reader};
use super::dcf::random_root;
use super::dpf::{self, DpfCorrections, DpfKey, DpfShape, FullDomainScratch};
use super::drelu::{PartySeed, random_party_seed};
use super::prg::Seed;
use super::{FssError, check_batch, low_mask, masked_message};

pub mod one_round;

pub use one_round::{LutOneRoundKey, lut1_finish, lut1_offline, lut1_online_message};

/// The widest table input supported: 2^20 entries.
pub const LUT_MAX_BITS: u32 = 20;

/// One party's key material for a batch of table lookups on n-bit inputs.
#[derive(Clone, PartialEq, Eq)]
pub struct LutKey {
    party: u8,
    n_bits: u32,
    /// The seed the per-gate values expand from; `None` once gathered ([`LutKey::gather`]).
    seed: Option<PartySeed>,
    /// r_b per gate, in Z_2^n.
    masks: Vec<u64>,
    /// M_b per gate.
    out_masks: Vec<u64>,
    /// S_b per gate (shares of the sign σ).
    signs: Vec<u64>,
    /// P_b per gate (shares of σ·M).
    products: Vec<u64>,
    dpf: Vec<DpfKey>,
}

/// Dealer: keys for `count` lookups on `n_bits`-bit inputs, one per party.
///
/// # Panics
/// If `n_bits` is not in 1..=[`LUT_MAX_BITS`].
pub fn lut_offline<R: CryptoRng + ?Sized>(
    n_bits: u32,
    count: usize,
    rng: &mut R,
) -> (LutKey, LutKey) {
    let shape = lut_shape(n_bits).unwrap_or_else(|e| panic!("{e}"));
    let seeds = [random_party_seed(rng), random_party_seed(rng)];
    let mut streams = [0, 1].map(|b| Stream::expand(&seeds[b], b as u8, n_bits, count));
    let (k0, k1) = (0..count).map(|i| deal(&mut streams, shape, i)).unzip();
    let [s0, s1] = streams;
    (
        LutKey::assemble(0, n_bits, seeds[0], s0, k0),
        LutKey::assemble(1, n_bits, seeds[1], s1, k1),
    )
}

/// Round 1: this party's message x_b + r_b mod 2^n.
///
/// # Panics
/// If `party` is not the key's party or `x_share` does not have one entry per gate.
pub fn lut_online_message(party: u8, key: &LutKey, x_share: &[u64]) -> Vec<u64> {
    key.check(party, x_share.len());
    masked_message(x_share, &key.masks, 0, key.n_bits)
}

/// Round 2: this party's y_b = z_b + M_b per gate, from x̂ = the sum of both round-1
/// messages (read mod 2^n). `table[j]` is T\[j\].
///
/// # Panics
/// If `party` is not the key's party, `x_hat` does not have one entry per gate or the table
/// does not have 2^n entries.
pub fn lut_reveal_message(party: u8, key: &LutKey, table: &[u64], x_hat: &[u64]) -> Vec<u64> {
    key.check(party, x_hat.len());
    assert_eq!(
        table.len(),
        1 << key.n_bits,
        "a table of 2^{} entries",
        key.n_bits
    );
    let nibbles = nibble_sums(table);
    let mut scratch = FullDomainScratch::default();
    let mut bits = Vec::with_capacity(table.len().div_ceil(64));
    (0..x_hat.len())
        .map(|i| {
            dpf::eval_all_bits_with(party, &key.dpf[i], &mut scratch, &mut bits);
            let z = rotated_dot(&bits, &nibbles, table, x_hat[i]);
            let z = if party == 1 { z.wrapping_neg() } else { z };
            z.wrapping_add(key.out_masks[i])
        })
        .collect()
}

/// Subset sums of the reversed table R\[m\] = T\[−m mod N\] (N = 2^n ≥ 64) per aligned
/// nibble: entry 16q + s is Σ_{i < 4, bit i of s set} R\[4q + i\] (4N entries, built once
/// per batch with one addition each). Empty for N < 64.
fn nibble_sums(table: &[u64]) -> Vec<u64> {
    let n = table.len();
    if n < 64 {
        return Vec::new();
    }
    let mut sums = vec![0u64; 4 * n];
    for (q, group) in sums.chunks_exact_mut(16).enumerate() {
        for s in 1..16usize {
            let i = s.trailing_zeros() as usize;
            let r = table[(n - (4 * q + i)) & (n - 1)];
            group[s] = group[s & (s - 1)].wrapping_add(r);
        }
    }
    sums
}

/// Σ_j u(j)·T\[(x̂ − j) mod N\] for the packed bits u (bit j mod 64 of word j / 64).
///
/// With R\[m\] = T\[−m mod N\] the sum is Σ_m v(m)·R\[m\] for v(m) = u((m + x̂) mod N): the
/// bit vector rotated by x̂ (a word shift and a bit shift), read four bits at a time
/// against [`nibble_sums`], i.e. N/4 branch-free table reads per gate. Tables under 64
/// entries are summed bit by bit.
fn rotated_dot(bits: &[u64], nibbles: &[u64], table: &[u64], x_hat: u64) -> u64 {
    let n = table.len();
    let shift = x_hat as usize & (n - 1);
    if n < 64 {
        return (0..n)
            .filter(|j| (bits[0] >> j) & 1 == 1)
            .fold(0u64, |z, j| {
                z.wrapping_add(table[(shift + n - j) & (n - 1)])
            });
    }
    let words = n / 64;
    let (q, r) = (shift / 64, (shift % 64) as u32);
    let mut acc = [0u64; 4];
    for (k, group) in nibbles.chunks_exact(256).enumerate() {
        let lo = bits[(k + q) & (words - 1)];
        let hi = bits[(k + q + 1) & (words - 1)];
        let v = if r == 0 {
            lo
        } else {
            (lo >> r) | (hi << (64 - r))
        };
        for (c, sums) in group.chunks_exact(16).enumerate() {
            let a = &mut acc[c % 4];
            *a = a.wrapping_add(sums[((v >> (4 * c)) & 15) as usize]);
        }
    }
    acc.iter().fold(0u64, |z, a| z.wrapping_add(*a))
}

/// The previous evaluation, kept as a reference for tests and timing: EvalAll into one
/// `u64` per point, then 2^n table reads. Returns this party's y_b.
#[cfg(test)]
pub(super) fn reveal_reference(party: u8, key: &LutKey, table: &[u64], x_hat: &[u64]) -> Vec<u64> {
    key.check(party, x_hat.len());
    let mask = table.len() - 1;
    (0..x_hat.len())
        .map(|i| {
            let u = dpf::eval_all(party, &key.dpf[i]);
            let z = (0..table.len())
                .filter(|&j| u[j] == 1)
                .fold(0u64, |acc, j| {
                    acc.wrapping_add(table[(x_hat[i] as usize).wrapping_sub(j) & mask])
                });
            let z = if party == 1 { z.wrapping_neg() } else { z };
            z.wrapping_add(key.out_masks[i])
        })
        .collect()
}

/// This party's arithmetic share in Z_2^64 of T\[x\] per gate: S_b·y − P_b with y the sum
/// of both round-2 messages.
///
/// # Panics
/// If `party` is not the key's party or a message does not have one entry per gate.
pub fn lut_finish(party: u8, key: &LutKey, mine: &[u64], theirs: &[u64]) -> Vec<u64> {
    key.check(party, mine.len());
    key.check(party, theirs.len());
    (0..mine.len())
        .map(|i| {
            let y = mine[i].wrapping_add(theirs[i]);
            key.signs[i].wrapping_mul(y).wrapping_sub(key.products[i])
        })
        .collect()
}

fn lut_shape(n_bits: u32) -> Result<DpfShape, FssError> {
    match (1..=LUT_MAX_BITS).contains(&n_bits) {
        true => DpfShape::new(n_bits, 1),
        false => Err(FssError::Width(n_bits)),
    }
}

/// Gate i: the DPF keys at r, party 0's S_0 and party 1's P_1.
fn deal(streams: &mut [Stream; 2], shape: DpfShape, i: usize) -> (DpfKey, DpfKey) {
    let r = streams[0].masks[i].wrapping_add(streams[1].masks[i]) & low_mask(shape.n_bits);
    let roots = [streams[0].roots[i], streams[1].roots[i]];
    let (k0, k1) = dpf::keygen_from_roots(roots, shape, r, 1);
    let sigma = match dpf::eval(1, &k1, r) {
        0 => 1u64,
        _ => u64::MAX,
    };
    let m = streams[0].out_masks[i].wrapping_add(streams[1].out_masks[i]);
    streams[0].signs[i] = sigma.wrapping_sub(streams[1].signs[i]);
    streams[1].products[i] = sigma.wrapping_mul(m).wrapping_sub(streams[0].products[i]);
    (k0, k1)
}

/// What a party expands from its seed: per gate a root seed, r_b, M_b and its own 64-bit
/// share (P_0 for party 0, S_1 for party 1); the other share is left 0 for the dealer.
struct Stream {
    roots: Vec<Seed>,
    masks: Vec<u64>,
    out_masks: Vec<u64>,
    signs: Vec<u64>,
    products: Vec<u64>,
}

impl Stream {
    fn expand(seed: &PartySeed, party: u8, n_bits: u32, count: usize) -> Stream {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        let mut s = Stream {
            roots: Vec::with_capacity(count),
            masks: Vec::with_capacity(count),
            out_masks: Vec::with_capacity(count),
            signs: vec![0; count],
            products: vec![0; count],
        };
        for i in 0..count {
            s.roots.push(random_root(&mut rng));
            s.masks.push(rng.next_u64() & low_mask(n_bits));
            s.out_masks.push(rng.next_u64());
            *s.expanded_share(party, i) = rng.next_u64();
        }
        s
    }

    /// The 64-bit share a party expands itself (the other one the dealer sends).
    fn expanded_share(&mut self, party: u8, i: usize) -> &mut u64 {
        match party {
            0 => &mut self.products[i],
            _ => &mut self.signs[i],
        }
    }

    /// The 64-bit share the dealer sends this party.
    fn sent_share(&mut self, party: u8, i: usize) -> &mut u64 {
        match party {
            0 => &mut self.signs[i],
            _ => &mut self.products[i],
        }
    }
}

impl LutKey {
    /// Bytes per gate the dealer sends each party: the 1-bit DPF's correction words and one
    /// 64-bit share: 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν/8⌉ + 8, ν = min(n, 7).
    pub const fn element_bytes(n_bits: u32) -> usize {
        DpfCorrections::byte_len(DpfShape {
            n_bits,
            out_bits: 1,
        }) + 8
    }

    /// Serialized size of a batch of `count` gates.
    pub const fn byte_len(n_bits: u32, count: usize) -> usize {
        BATCH_HEADER_BYTES + count * LutKey::element_bytes(n_bits)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The input width n.
    pub fn n_bits(&self) -> u32 {
        self.n_bits
    }

    /// Number of gates in the batch.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether the batch has no gates.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    fn assemble(party: u8, n_bits: u32, seed: PartySeed, s: Stream, dpf: Vec<DpfKey>) -> LutKey {
        LutKey {
            party,
            n_bits,
            seed: Some(seed),
            masks: s.masks,
            out_masks: s.out_masks,
            signs: s.signs,
            products: s.products,
            dpf,
        }
    }

    fn check(&self, party: u8, len: usize) {
        check_batch("LUT", self.party, party, self.len(), len);
    }

    /// The keys of gates `idx` of the batches `parts` (of one party and width; gates
    /// numbered across them in order), in that order: e.g. the active rows of a
    /// head-masked attention core. Each gate may be taken once (a key evaluated on two
    /// inputs reveals their difference). No seed describes the result, so it cannot be
    /// serialized; gather after reading a key, not before writing.
    ///
    /// # Panics
    /// If an index is out of range or repeats, or the parts differ in party or width.
    pub fn gather(parts: &[LutKey], idx: &[usize]) -> LutKey {
        let first = parts.first().expect("at least one batch");
        assert!(
            (parts.iter()).all(|p| (p.party, p.n_bits) == (first.party, first.n_bits)),
            "batches of one party and width"
        );
        let lens: Vec<usize> = parts.iter().map(LutKey::len).collect();
        let mut key = LutKey {
            party: first.party,
            n_bits: first.n_bits,
            seed: None,
            masks: Vec::with_capacity(idx.len()),
            out_masks: Vec::with_capacity(idx.len()),
            signs: Vec::with_capacity(idx.len()),
            products: Vec::with_capacity(idx.len()),
            dpf: Vec::with_capacity(idx.len()),
        };
        for (b, j) in super::gate_positions("LUT", &lens, idx) {
            let p = &parts[b];
            key.masks.push(p.masks[j]);
            key.out_masks.push(p.out_masks[j]);
            key.signs.push(p.signs[j]);
            key.products.push(p.products[j]);
            key.dpf.push(p.dpf[j].clone());
        }
        key
    }

    /// The 64-bit share the dealer sent for gate i.
    fn sent_share(&self, i: usize) -> u64 {
        match self.party {
            0 => self.signs[i],
            _ => self.products[i],
        }
    }

    /// Serializes: the batch header (party, n, gate count, seed), then per gate the DPF's
    /// correction words and the dealer's 64-bit share (S_0 or P_1, 8 bytes LE).
    ///
    /// # Panics
    /// If the key was gathered (no seed describes it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LutKey::byte_len(self.n_bits, self.len()));
        let header = BatchHeader {
            party: self.party,
            width: self.n_bits,
            count: self.len(),
            seed: self.seed.expect("a gathered LUT key is not serialized"),
        };
        header.write(&mut out);
        for (i, key) in self.dpf.iter().enumerate() {
            key.correction_words().write(&mut out);
            out.extend_from_slice(&self.sent_share(i).to_le_bytes());
        }
        out
    }

    /// Parses [`LutKey::to_bytes`] output and re-expands the seed.
    pub fn from_bytes(bytes: &[u8]) -> Result<LutKey, FssError> {
        let mut r = Reader::new(bytes);
        let h = BatchHeader::read(&mut r, |_, n| {
            lut_shape(n).map(|_| LutKey::element_bytes(n))
        })?;
        let shape = lut_shape(h.width)?;
        let mut s = Stream::expand(&h.seed, h.party, h.width, h.count);
        let mut dpf = Vec::with_capacity(h.count);
        for i in 0..h.count {
            let cw = DpfCorrections::read(shape, &mut r)?;
            dpf.push(DpfKey::from_parts(h.party, s.roots[i], cw));
            *s.sent_share(h.party, i) = r.u64()?;
        }
        Ok(LutKey::assemble(h.party, h.width, h.seed, s, dpf))
    }
}

impl fmt::Debug for LutKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LutKey")
            .field("party", &self.party)
            .field("n_bits", &self.n_bits)
            .field("gates", &self.len())
            .finish_non_exhaustive()
    }
}
