//! Distributed comparison function (DCF) with payload in Z_2^64.
//!
//! For an n-bit point α (1 ≤ n ≤ 64) and a payload β, [`keygen`] returns keys k0, k1 with
//!
//! ```text
//! eval(0, k0, x) + eval(1, k1, x) = β if x < α else 0      (wrapping, x and α as n-bit unsigned)
//! ```
//!
//! and neither key alone reveals α or β. This is the tree construction of BCG+21 (ePrint
//! 2020/1392, the DCF Gen/Eval figure), built on the DPF of BGI16: both parties walk the
//! binary tree along the bits of x, most significant first, from their own root seed. On
//! the path to α their seeds differ and exactly one of them holds control bit 1; off the
//! path, the seed and value corrections make both parties' states equal, so their further
//! contributions cancel. At each level the pair of paths leaves α's path either to the
//! left (x < α in that subtree) or to the right, and the level's value correction V_cw
//! sets the sum accumulated so far to β or 0 at that point.
//!
//! The crate-internal entry `keygen_from_roots` generalizes the payload to
//! f(x) = β·\[x < α\] + γ: the offset γ is folded into the same correction words (it moves
//! the target sum of every subtree and of the leaf α by γ), at no extra key size. The
//! DReLU gate uses it to absorb the mask's sign bit (see [`super::drelu`]).
//!
//! ## Key contents and size
//! A key is its party's root seed plus [`CorrectionWords`] identical in both keys: per
//! level a seed correction (128 bits), a value correction (64 bits) and two control-bit
//! corrections; one final value correction (64 bits). Serialized
//! ([`CorrectionWords::byte_len`]): 24n + ⌈2n/8⌉ + 8 bytes, i.e. n(λ + l + 2) + l bits up
//! to byte padding (BCG+21: n(λ + l + 2) + λ + l with the root seed). [`DcfKey::byte_len`]
//! adds the party, the width and the 16-byte root seed.
//!
//! ## Cost
//! Eval: two AES blocks per level (the chosen child and the value block, see
//! [`super::prg`]); batches run eight keys in lock-step so one pipelined AES call serves
//! sixteen blocks. Keygen: six AES blocks per level (three per party).

use std::fmt;

use rand::CryptoRng;

use super::codec::{Reader, control_bytes, deinterleave, interleave};
use super::prg::{Prg, Seed, TWEAK_VALUES, clear_control, control_bit, convert, split_values};
use super::{FssError, check_party, low_mask};

/// Keys evaluated in lock-step by the batch evaluator.
const LANES: usize = 8;

/// The correction words of one DCF instance: the part of a key both parties share.
#[derive(Clone, PartialEq, Eq)]
pub struct CorrectionWords {
    /// Input width n (tree depth), 1..=64.
    n_bits: u32,
    /// Seed correction s_cw per level (control bit clear).
    seeds: Vec<Seed>,
    /// Value correction V_cw per level.
    values: Vec<u64>,
    /// `controls[side]` bit i: the control-bit correction of the left (0) or right (1)
    /// child at level i.
    controls: [u64; 2],
    /// The leaf correction CW^(n+1).
    last: u64,
}

/// One party's DCF key: its root seed and the shared correction words.
#[derive(Clone, PartialEq, Eq)]
pub struct DcfKey {
    party: u8,
    seed: Seed,
    cw: CorrectionWords,
}

/// The function a key pair shares: f(x) = β·\[x < α\] + γ over n-bit x.
#[derive(Clone, Copy)]
pub(crate) struct Comparison {
    /// The point α, already reduced to n bits.
    pub alpha: u64,
    /// Input width n.
    pub n_bits: u32,
    /// The payload β on x < α.
    pub beta: u64,
    /// The offset γ added everywhere.
    pub gamma: u64,
}

/// Generates a key pair for x ↦ β·\[x < α\] over n-bit inputs (α is reduced mod 2^n).
///
/// # Panics
/// If `n_bits` is not in 1..=64.
pub fn keygen<R: CryptoRng + ?Sized>(
    alpha: u64,
    n_bits: u32,
    beta: u64,
    rng: &mut R,
) -> (DcfKey, DcfKey) {
    check_width(n_bits);
    let f = Comparison {
        alpha: alpha & low_mask(n_bits),
        n_bits,
        beta,
        gamma: 0,
    };
    keygen_from_roots([random_root(rng), random_root(rng)], &f)
}

/// [`keygen`] for many (α, β) pairs of the same width; returns (party 0 keys, party 1 keys).
///
/// # Panics
/// If the slices differ in length or `n_bits` is not in 1..=64.
pub fn keygen_batch<R: CryptoRng + ?Sized>(
    alphas: &[u64],
    n_bits: u32,
    betas: &[u64],
    rng: &mut R,
) -> (Vec<DcfKey>, Vec<DcfKey>) {
    assert_eq!(alphas.len(), betas.len(), "one beta per alpha");
    alphas
        .iter()
        .zip(betas)
        .map(|(&a, &b)| keygen(a, n_bits, b, rng))
        .unzip()
}

/// This party's share of f(x); only the low n bits of `x` are read.
///
/// # Panics
/// If `party` is not the key's party.
pub fn eval(party: u8, key: &DcfKey, x: u64) -> u64 {
    let mut out = [0];
    eval_indexed(party, 1, |_| (key, x), &mut out);
    out[0]
}

/// Evaluates `keys[i]` at `xs[i]` for every i (eight keys in lock-step).
///
/// # Panics
/// If the slices differ in length or a key belongs to the other party.
pub fn eval_batch(party: u8, keys: &[DcfKey], xs: &[u64]) -> Vec<u64> {
    assert_eq!(keys.len(), xs.len(), "one input per key");
    let mut out = vec![0; xs.len()];
    eval_indexed(party, xs.len(), |i| (&keys[i], xs[i]), &mut out);
    out
}

/// Evaluates one key at every point of `xs`.
///
/// # Panics
/// If the key belongs to the other party.
pub fn eval_points(party: u8, key: &DcfKey, xs: &[u64]) -> Vec<u64> {
    let mut out = vec![0; xs.len()];
    eval_indexed(party, xs.len(), |i| (key, xs[i]), &mut out);
    out
}

/// A key pair for `f` from given root seeds (control bits are cleared here).
pub(crate) fn keygen_from_roots(roots: [Seed; 2], f: &Comparison) -> (DcfKey, DcfKey) {
    let cw = correction_words(roots, f);
    let key = |party: usize, cw| DcfKey {
        party: party as u8,
        seed: clear_control(roots[party]),
        cw,
    };
    (key(0, cw.clone()), key(1, cw))
}

/// A uniformly random root seed.
pub(crate) fn random_root<R: CryptoRng + ?Sized>(rng: &mut R) -> Seed {
    let lo = Seed::from(rng.next_u64());
    clear_control(lo | (Seed::from(rng.next_u64()) << 64))
}

fn check_width(n_bits: u32) {
    assert!(
        (1..=64).contains(&n_bits),
        "DCF input width must be 1..=64, got {n_bits}"
    );
}

/// Bit `level` of x counted from the most significant of n bits (level 0 = MSB).
fn bit_at(x: u64, n_bits: u32, level: usize) -> bool {
    (x >> (n_bits as usize - 1 - level)) & 1 == 1
}

/// Key generation: walks α's path with both parties' states (BCG+21, DCF Gen).
fn correction_words(roots: [Seed; 2], f: &Comparison) -> CorrectionWords {
    check_width(f.n_bits);
    let mut cw = CorrectionWords::with_capacity(f.n_bits);
    let mut state = GenState {
        seeds: roots.map(clear_control),
        controls: [false, true],
        acc: 0,
    };
    for level in 0..f.n_bits as usize {
        state.level(f, level, &mut cw);
    }
    cw.last = state.leaf_correction(f.gamma);
    cw
}

/// Both parties' states on α's path during key generation.
struct GenState {
    seeds: [Seed; 2],
    controls: [bool; 2],
    /// Sum of both parties' outputs accumulated on α's path (party 0 minus party 1 terms).
    acc: u64,
}

impl GenState {
    /// (−1)^{t_1}·x: party 1 holds control bit 1 exactly when its terms enter negated.
    fn signed(&self, x: u64) -> u64 {
        if self.controls[1] {
            x.wrapping_neg()
        } else {
            x
        }
    }

    /// One tree level: emits the level's corrections and descends towards α.
    fn level(&mut self, f: &Comparison, level: usize, cw: &mut CorrectionWords) {
        let e = Prg::fixed().expand_pair(self.seeds);
        let keep = usize::from(bit_at(f.alpha, f.n_bits, level));
        let lose = 1 - keep;
        // Leaving α's path to the left means x < α in that whole subtree.
        let target = f.gamma.wrapping_add(if lose == 0 { f.beta } else { 0 });
        let diff = e[1].values[lose].wrapping_sub(e[0].values[lose]);
        let v_cw = self.signed(diff.wrapping_sub(self.acc).wrapping_add(target));
        let kept = e[0].values[keep].wrapping_sub(e[1].values[keep]);
        self.acc = self.acc.wrapping_add(kept).wrapping_add(self.signed(v_cw));
        let s_cw = e[0].seeds[lose] ^ e[1].seeds[lose];
        let t_cw = [0, 1].map(|side| e[0].controls[side] ^ e[1].controls[side] ^ (side == keep));
        for (b, node) in e.iter().enumerate() {
            let fix = if self.controls[b] { s_cw } else { 0 };
            self.seeds[b] = node.seeds[keep] ^ fix;
            self.controls[b] = node.controls[keep] ^ (self.controls[b] & t_cw[keep]);
        }
        cw.push(level, s_cw, v_cw, t_cw);
    }

    /// CW^(n+1): sets the sum at the leaf α itself to γ (α < α is false).
    fn leaf_correction(&self, gamma: u64) -> u64 {
        let diff = convert(self.seeds[1]).wrapping_sub(convert(self.seeds[0]));
        self.signed(diff.wrapping_sub(self.acc).wrapping_add(gamma))
    }
}

/// Runs `pair(i)` for i in 0..len through the lock-step evaluator, in runs of up to
/// [`LANES`] keys of equal width.
fn eval_indexed<'a>(
    party: u8,
    len: usize,
    pair: impl Fn(usize) -> (&'a DcfKey, u64),
    out: &mut [u64],
) {
    check_party(party);
    let mut start = 0;
    while start < len {
        let end = run_end(start, len, &pair);
        let mut lanes = [LaneState::new(party, pair(start).0, 0); LANES];
        for (i, lane) in (start..end).zip(lanes.iter_mut()) {
            let (key, x) = pair(i);
            *lane = LaneState::new(party, key, x);
        }
        eval_lanes(party, &mut lanes[..end - start], &mut out[start..end]);
        start = end;
    }
}

/// The end of the run that starts at `start`: at most [`LANES`] keys of one width.
fn run_end<'a>(start: usize, len: usize, pair: &impl Fn(usize) -> (&'a DcfKey, u64)) -> usize {
    let n_bits = pair(start).0.n_bits();
    let limit = len.min(start + LANES);
    (start + 1..limit)
        .find(|&i| pair(i).0.n_bits() != n_bits)
        .unwrap_or(limit)
}

/// Evaluates equal-width lanes level by level, hashing all lanes' blocks in one call.
fn eval_lanes(party: u8, lanes: &mut [LaneState<'_>], out: &mut [u64]) {
    let n_bits = lanes[0].key.n_bits();
    let mut blocks = [0; 2 * LANES];
    let blocks = &mut blocks[..2 * lanes.len()];
    for level in 0..n_bits as usize {
        for (k, lane) in lanes.iter().enumerate() {
            [blocks[2 * k], blocks[2 * k + 1]] = lane.input_blocks(level);
        }
        Prg::fixed().hash_in_place(blocks);
        for (k, lane) in lanes.iter_mut().enumerate() {
            lane.absorb(level, blocks[2 * k], blocks[2 * k + 1]);
        }
    }
    for (lane, y) in lanes.iter().zip(out.iter_mut()) {
        *y = lane.output(party);
    }
}

/// One evaluation in flight: the state at the current node of x's path.
#[derive(Clone, Copy)]
struct LaneState<'a> {
    key: &'a DcfKey,
    x: u64,
    seed: Seed,
    control: bool,
    acc: u64,
}

impl<'a> LaneState<'a> {
    fn new(party: u8, key: &'a DcfKey, x: u64) -> LaneState<'a> {
        assert_eq!(
            key.party, party,
            "DCF key of party {} evaluated as party {party}",
            key.party
        );
        LaneState {
            key,
            x,
            seed: key.seed,
            control: party == 1,
            acc: 0,
        }
    }

    /// The PRG inputs of this level: the child on x's side and the value block.
    fn input_blocks(&self, level: usize) -> [Seed; 2] {
        let right = Seed::from(bit_at(self.x, self.key.n_bits(), level));
        [self.seed ^ right, self.seed ^ TWEAK_VALUES]
    }

    /// Takes the hashed blocks, applies the corrections if the control bit is set.
    fn absorb(&mut self, level: usize, child: Seed, values: Seed) {
        // Branch-free: t and the input bits are close to random, so branches mispredict.
        let cw = &self.key.cw;
        let right = bit_at(self.x, cw.n_bits, level);
        let t = self.control;
        let v_fix = cw.values[level] & u64::from(t).wrapping_neg();
        let s_fix = cw.seeds[level] & Seed::from(t).wrapping_neg();
        self.acc = self
            .acc
            .wrapping_add(split_values(values, right))
            .wrapping_add(v_fix);
        self.seed = clear_control(child) ^ s_fix;
        self.control = control_bit(child) ^ (t & cw.control(level, right));
    }

    /// The leaf term, then party 1 negates its whole sum.
    fn output(&self, party: u8) -> u64 {
        let fix = self.key.cw.last & u64::from(self.control).wrapping_neg();
        let y = self.acc.wrapping_add(convert(self.seed)).wrapping_add(fix);
        if party == 1 { y.wrapping_neg() } else { y }
    }
}

impl CorrectionWords {
    /// Serialized size of the correction words of an n-bit DCF: 24n + ⌈2n/8⌉ + 8 bytes.
    pub const fn byte_len(n_bits: u32) -> usize {
        let n = n_bits as usize;
        24 * n + control_bytes(n_bits) + 8
    }

    /// Input width n of the comparison.
    pub fn n_bits(&self) -> u32 {
        self.n_bits
    }

    fn with_capacity(n_bits: u32) -> CorrectionWords {
        let n = n_bits as usize;
        CorrectionWords {
            n_bits,
            seeds: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            controls: [0; 2],
            last: 0,
        }
    }

    fn push(&mut self, level: usize, s_cw: Seed, v_cw: u64, t_cw: [bool; 2]) {
        self.seeds.push(s_cw);
        self.values.push(v_cw);
        self.controls[0] |= u64::from(t_cw[0]) << level;
        self.controls[1] |= u64::from(t_cw[1]) << level;
    }

    /// The control-bit correction of the left or right child at `level`.
    fn control(&self, level: usize, right: bool) -> bool {
        (self.controls[usize::from(right)] >> level) & 1 == 1
    }

    /// Appends the serialized form: per level s_cw (16 bytes) and V_cw (8 bytes, both
    /// little-endian), the control bits (bit 2i left, 2i+1 right), then CW^(n+1).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for (s, v) in self.seeds.iter().zip(&self.values) {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        let packed = interleave(self.controls);
        out.extend_from_slice(&packed.to_le_bytes()[..control_bytes(self.n_bits)]);
        out.extend_from_slice(&self.last.to_le_bytes());
    }

    /// Reads what [`CorrectionWords::write`] wrote; the caller has checked the length.
    pub(crate) fn read(n_bits: u32, r: &mut Reader<'_>) -> Result<CorrectionWords, FssError> {
        let mut cw = CorrectionWords::with_capacity(n_bits);
        for _ in 0..n_bits {
            cw.seeds.push(r.seed()?);
            cw.values.push(r.u64()?);
        }
        let packed = r.le_uint(control_bytes(n_bits))?;
        if packed.checked_shr(2 * n_bits).unwrap_or(0) != 0 {
            return Err(FssError::Malformed("control bits"));
        }
        cw.controls = deinterleave(packed);
        cw.last = r.u64()?;
        Ok(cw)
    }
}

impl DcfKey {
    /// Serialized size of an n-bit key: party, width, root seed, correction words.
    pub const fn byte_len(n_bits: u32) -> usize {
        2 + 16 + CorrectionWords::byte_len(n_bits)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// Input width n of the comparison.
    pub fn n_bits(&self) -> u32 {
        self.cw.n_bits
    }

    /// The shared correction words.
    pub fn correction_words(&self) -> &CorrectionWords {
        &self.cw
    }

    /// A key from a root seed (expanded elsewhere) and received correction words.
    pub(crate) fn from_parts(party: u8, seed: Seed, cw: CorrectionWords) -> DcfKey {
        DcfKey {
            party,
            seed: clear_control(seed),
            cw,
        }
    }

    /// Serializes as party (1 byte), n (1 byte), root seed (16 bytes LE), correction words.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DcfKey::byte_len(self.cw.n_bits));
        out.extend_from_slice(&[self.party, self.cw.n_bits as u8]);
        out.extend_from_slice(&self.seed.to_le_bytes());
        self.cw.write(&mut out);
        out
    }

    /// Parses [`DcfKey::to_bytes`] output, checking length, party, width and clear bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<DcfKey, FssError> {
        let mut r = Reader::new(bytes);
        let party = r.party()?;
        let n_bits = u32::from(r.u8()?);
        if !(1..=64).contains(&n_bits) {
            return Err(FssError::Width(n_bits));
        }
        r.expect_total(DcfKey::byte_len(n_bits))?;
        let seed = r.seed()?;
        let cw = CorrectionWords::read(n_bits, &mut r)?;
        Ok(DcfKey { party, seed, cw })
    }
}

impl fmt::Debug for CorrectionWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorrectionWords")
            .field("n_bits", &self.n_bits)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DcfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcfKey")
            .field("party", &self.party)
            .field("n_bits", &self.cw.n_bits)
            .finish_non_exhaustive()
    }
}
