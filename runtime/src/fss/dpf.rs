//! Distributed point function (DPF) with early termination, output in Z_2^ℓ (ℓ ≤ 64).
//!
//! For an n-bit point α (1 ≤ n ≤ 64), a payload β and an output width ℓ (1 ≤ ℓ ≤ 64),
//! [`keygen`] returns keys k0, k1 with
//!
//! ```text
//! eval(0, k0, x) + eval(1, k1, x) = β if x = α else 0      (mod 2^ℓ)
//! ```
//!
//! For ℓ = 1 the sum is an XOR: the outputs are XOR shares of the bit β·\[x = α\].
//!
//! ## Construction (BGI16, "Function Secret Sharing: Improvements and Extensions", CCS 2016,
//! ePrint 2018/707, Fig. 1 and the early-termination optimization of its Section 3.2.1)
//! Both parties walk a binary tree along the bits of x, most significant first, from their
//! own root seed; party b starts with control bit b. At each level the seed correction
//! s_cw and the two control-bit corrections make the parties' states on the child that
//! leaves α's path equal (so everything below it cancels) and keep them different, with
//! exactly one control bit set, on α's path. The tree stops ν levels early,
//!
//! ```text
//! ν = min(n, 7 − ⌈log2 ℓ⌉)      (2^ν slots of ℓ bits fit in one 128-bit block)
//! ```
//!
//! and the leaf seed s is turned into one block H(s ⊕ 2) (see [`super::prg`]) read as 2^ν
//! slots of ℓ bits, one per value of the low ν bits of x. The output correction (2^ν·ℓ
//! bits) sets the sum of the two parties' slots at the leaf on α's path to β in slot α mod
//! 2^ν and to 0 elsewhere. The brief's ν = ⌈log2(λ/ℓ)⌉ would overflow the block when ℓ is
//! not a power of two; the floor is used here.
//!
//! ## Key contents and size
//! A key is its party's root seed (λ = 128 bits) plus [`DpfCorrections`] identical in both
//! keys: per tree level (n − ν of them) a seed correction (128 bits) and two control-bit
//! corrections, then the output correction. Serialized ([`DpfCorrections::byte_len`]):
//!
//! ```text
//! 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν·ℓ/8⌉ bytes   ≈ (n − ν)(λ + 2) + 2^ν·ℓ bits
//! ```
//!
//! (with ℓ = 1 and n ≥ 7: (n − 7)(λ + 2) + λ bits; BGI16 counts the root seed too, which
//! adds λ). [`DpfKey::byte_len`] adds party, widths and the 16-byte root seed.
//!
//! ## Cost
//! Point evaluation ([`eval_batch`]): two AES blocks per level (both children: the
//! comparison of [`super::dcf_bit`] needs the sibling's control bit, and one walker serves
//! both) plus one for the leaf, eight keys in lock-step. Full-domain evaluation
//! ([`eval_all`]): 2^(n−ν+1) − 2 blocks for the tree plus 2^(n−ν) leaf blocks.

use std::fmt;

use rand::CryptoRng;

use super::codec::{Reader, control_bytes, deinterleave, interleave};
use super::dcf::random_root;
use super::prg::{Prg, Seed, TWEAK_VALUES, clear_control, control_bit};
use super::{FssError, check_party, low_mask};

/// Keys evaluated in lock-step by the batch walker.
const LANES: usize = 8;

/// The widths of a DPF: input n bits, output ℓ bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpfShape {
    /// Input width n, 1..=64.
    pub n_bits: u32,
    /// Output width ℓ, 1..=64 (1 = XOR-shared bit).
    pub out_bits: u32,
}

impl DpfShape {
    /// Checks both widths are in 1..=64.
    pub fn new(n_bits: u32, out_bits: u32) -> Result<DpfShape, FssError> {
        if !(1..=64).contains(&n_bits) {
            return Err(FssError::Width(n_bits));
        }
        if !(1..=64).contains(&out_bits) {
            return Err(FssError::OutputWidth(out_bits));
        }
        Ok(DpfShape { n_bits, out_bits })
    }

    /// ν = min(n, 7 − ⌈log2 ℓ⌉): the levels replaced by the packed leaf block.
    pub const fn early_levels(self) -> u32 {
        let cut = 7 - ceil_log2(self.out_bits);
        if self.n_bits < cut { self.n_bits } else { cut }
    }

    /// n − ν: the levels of the tree that carry corrections.
    pub const fn tree_levels(self) -> u32 {
        self.n_bits - self.early_levels()
    }

    /// 2^ν: outputs packed in one leaf block.
    pub const fn slots(self) -> usize {
        1 << self.early_levels()
    }

    /// Bits of the output correction: 2^ν·ℓ ≤ 128.
    pub const fn output_bits(self) -> u32 {
        (self.slots() as u32) * self.out_bits
    }

    fn panic_unless_valid(self) {
        if let Err(e) = DpfShape::new(self.n_bits, self.out_bits) {
            panic!("{e}");
        }
    }
}

/// ⌈log2 x⌉ for x ≥ 1.
const fn ceil_log2(x: u32) -> u32 {
    if x <= 1 {
        0
    } else {
        32 - (x - 1).leading_zeros()
    }
}

/// The correction words of one DPF instance: the part of a key both parties share.
#[derive(Clone, PartialEq, Eq)]
pub struct DpfCorrections {
    shape: DpfShape,
    /// Seed correction per tree level (control bit clear).
    seeds: Vec<Seed>,
    /// `controls[side]` bit i: the control-bit correction of the left (0) / right (1) child
    /// at level i.
    controls: [u64; 2],
    /// The output correction: 2^ν slots of ℓ bits, slot j in bits jℓ..(j+1)ℓ.
    output: u128,
}

/// One party's DPF key: its root seed and the shared correction words.
#[derive(Clone, PartialEq, Eq)]
pub struct DpfKey {
    party: u8,
    seed: Seed,
    cw: DpfCorrections,
}

/// A node of the tree as one party sees it.
#[derive(Clone, Copy)]
pub(crate) struct Node {
    seed: Seed,
    control: bool,
}

/// Generates a key pair for x ↦ β·\[x = α\] (mod 2^ℓ) over n-bit inputs (α is reduced mod
/// 2^n, β mod 2^ℓ).
///
/// # Panics
/// If a width is outside 1..=64.
pub fn keygen<R: CryptoRng + ?Sized>(
    alpha: u64,
    shape: DpfShape,
    beta: u64,
    rng: &mut R,
) -> (DpfKey, DpfKey) {
    keygen_from_roots([random_root(rng), random_root(rng)], shape, alpha, beta)
}

/// A key pair from given root seeds (control bits are cleared here).
pub(crate) fn keygen_from_roots(
    roots: [Seed; 2],
    shape: DpfShape,
    alpha: u64,
    beta: u64,
) -> (DpfKey, DpfKey) {
    shape.panic_unless_valid();
    let cw = correction_words(
        roots.map(clear_control),
        shape,
        alpha & low_mask(shape.n_bits),
        beta,
    );
    let key = |party: usize, cw| DpfKey {
        party: party as u8,
        seed: clear_control(roots[party]),
        cw,
    };
    (key(0, cw.clone()), key(1, cw))
}

/// This party's share of β·\[x = α\]; only the low n bits of `x` are read.
///
/// # Panics
/// If `party` is not the key's party.
pub fn eval(party: u8, key: &DpfKey, x: u64) -> u64 {
    eval_batch(party, std::slice::from_ref(key), &[x])[0]
}

/// Evaluates `keys[i]` at `xs[i]` for every i (eight keys in lock-step).
///
/// # Panics
/// If the slices differ in length or a key belongs to the other party.
pub fn eval_batch(party: u8, keys: &[DpfKey], xs: &[u64]) -> Vec<u64> {
    let refs: Vec<&DpfKey> = keys.iter().collect();
    let ends = walk_batch(party, &refs, xs);
    let slot = |i: usize| (xs[i] as usize) & (keys[i].cw.shape.slots() - 1);
    (0..xs.len())
        .map(|i| {
            keys[i]
                .cw
                .leaf_slot(party, ends[i].node, ends[i].leaf, slot(i))
        })
        .collect()
}

/// Full-domain evaluation: this party's share at every x in 0..2^n, in order.
///
/// # Panics
/// If `party` is not the key's party or n > 32 (the output would not fit in memory).
pub fn eval_all(party: u8, key: &DpfKey) -> Vec<u64> {
    let mut out = Vec::new();
    eval_all_with(party, key, &mut FullDomainScratch::default(), &mut out);
    out
}

/// [`eval_all`] into `out` (overwritten, 2^n values) with caller-held scratch buffers.
pub(crate) fn eval_all_with(
    party: u8,
    key: &DpfKey,
    scratch: &mut FullDomainScratch,
    out: &mut Vec<u64>,
) {
    expand_leaves(party, key, scratch);
    let cw = &key.cw;
    out.clear();
    let leaves = scratch.nodes.iter().zip(&scratch.blocks);
    if cw.shape.out_bits == 64 {
        // Two whole 64-bit slots per leaf (ν = 1): leaf_slot without shifts and masks.
        for (node, leaf) in leaves {
            let fix = if node.control { cw.output } else { 0 };
            for half in [0, 64] {
                let y = ((leaf >> half) as u64).wrapping_add((fix >> half) as u64);
                out.push(if party == 1 { y.wrapping_neg() } else { y });
            }
        }
    } else {
        for (node, leaf) in leaves {
            out.extend((0..cw.shape.slots()).map(|j| cw.leaf_slot(party, *node, *leaf, j)));
        }
    }
}

/// Full-domain evaluation of a 1-bit DPF (ℓ = 1) into packed bits: bit x mod 64 of word
/// x / 64 is this party's share at x, for every x in 0..2^n; the ⌈2^n/64⌉ words are
/// written over `out` (bits at and above 2^n are 0). Bit-identical to [`eval_all`].
///
/// # Panics
/// If `party` is not the key's party, ℓ ≠ 1 or n > 32.
pub fn eval_all_bits(party: u8, key: &DpfKey, out: &mut Vec<u64>) {
    eval_all_bits_with(party, key, &mut FullDomainScratch::default(), out);
}

/// Reusable buffers of [`eval_all_with`] and [`eval_all_bits_with`]: the nodes of one tree level and their
/// blocks, so that evaluating a batch of keys allocates nothing per key.
#[derive(Default)]
pub(crate) struct FullDomainScratch {
    nodes: Vec<Node>,
    blocks: Vec<Seed>,
}

/// [`eval_all_bits`] with caller-held scratch buffers: each leaf g ⊕ t·CW (2^ν = 128
/// slots when n ≥ 7) is stored as two little-endian words.
pub(crate) fn eval_all_bits_with(
    party: u8,
    key: &DpfKey,
    scratch: &mut FullDomainScratch,
    out: &mut Vec<u64>,
) {
    let shape = key.cw.shape;
    assert_eq!(
        shape.out_bits, 1,
        "packed evaluation of an ℓ = {} DPF",
        shape.out_bits
    );
    expand_leaves(party, key, scratch);
    let FullDomainScratch { nodes, blocks } = scratch;
    out.clear();
    let slot_mask = u128::MAX >> (128 - shape.slots());
    for (node, leaf) in nodes.iter().zip(blocks.iter()) {
        let fix = if node.control { key.cw.output } else { 0 };
        let bits = (leaf ^ fix) & slot_mask;
        out.push(bits as u64);
        if shape.slots() > 64 {
            out.push((bits >> 64) as u64);
        }
    }
}

/// Fills `scratch` with every leaf node at depth n − ν, left to right (`nodes`), and its
/// hashed block H(s ⊕ 2) (`blocks`). The tree is expanded level by level in place:
/// children 2i, 2i + 1 overwrite parent i, from the right.
///
/// # Panics
/// If `party` is not the key's party or n > 32.
fn expand_leaves(party: u8, key: &DpfKey, scratch: &mut FullDomainScratch) {
    key.check(party);
    let shape = key.cw.shape;
    assert!(
        shape.n_bits <= 32,
        "full-domain evaluation of a {}-bit DPF",
        shape.n_bits
    );
    let FullDomainScratch { nodes, blocks } = scratch;
    nodes.clear();
    nodes.push(key.root(party));
    for level in 0..shape.tree_levels() as usize {
        blocks.clear();
        blocks.extend(nodes.iter().flat_map(|n| [n.seed, n.seed ^ 1]));
        Prg::fixed().hash_in_place(blocks);
        let width = nodes.len();
        nodes.resize(2 * width, nodes[0]);
        for i in (0..width).rev() {
            let parent = nodes[i];
            nodes[2 * i + 1] = key.cw.step(level, parent, blocks[2 * i + 1], true);
            nodes[2 * i] = key.cw.step(level, parent, blocks[2 * i], false);
        }
    }
    blocks.clear();
    blocks.extend(nodes.iter().map(|n| n.seed ^ TWEAK_VALUES));
    Prg::fixed().hash_in_place(blocks);
}

/// Where one evaluation path ends, as the batch walker reports it.
#[derive(Clone, Copy)]
pub(crate) struct PathEnd {
    /// Bit n − ν − 1 − i: the corrected control bit of the child at level i that is *not*
    /// on x's path (so the bits line up with x >> ν).
    pub siblings: u64,
    /// The node reached at depth n − ν.
    pub node: Node,
    /// Its hashed leaf block H(s ⊕ 2).
    pub leaf: Seed,
}

/// Walks `keys[i]` along the top n − ν bits of `xs[i]`, eight keys in lock-step.
///
/// # Panics
/// If the slices differ in length or a key belongs to the other party.
pub(crate) fn walk_batch(party: u8, keys: &[&DpfKey], xs: &[u64]) -> Vec<PathEnd> {
    check_party(party);
    assert_eq!(keys.len(), xs.len(), "one input per key");
    let mut out = Vec::with_capacity(xs.len());
    let mut start = 0;
    while start < xs.len() {
        let end = run_end(keys, start);
        walk_run(party, &keys[start..end], &xs[start..end], &mut out);
        start = end;
    }
    out
}

/// The end of the run that starts at `start`: at most [`LANES`] keys of one shape.
fn run_end(keys: &[&DpfKey], start: usize) -> usize {
    let limit = keys.len().min(start + LANES);
    (start + 1..limit)
        .find(|&i| keys[i].cw.shape != keys[start].cw.shape)
        .unwrap_or(limit)
}

/// Walks up to [`LANES`] keys of one shape, hashing all lanes' blocks in one call per level.
fn walk_run(party: u8, keys: &[&DpfKey], xs: &[u64], out: &mut Vec<PathEnd>) {
    let shape = keys[0].cw.shape;
    let depth = shape.tree_levels() as usize;
    let mut ends: Vec<PathEnd> = keys.iter().map(|k| k.start(party)).collect();
    let mut blocks = [0; 2 * LANES];
    let blocks = &mut blocks[..2 * keys.len()];
    for level in 0..depth {
        for (k, end) in ends.iter().enumerate() {
            [blocks[2 * k], blocks[2 * k + 1]] = [end.node.seed, end.node.seed ^ 1];
        }
        Prg::fixed().hash_in_place(blocks);
        for (k, end) in ends.iter_mut().enumerate() {
            let right = bit_at(xs[k], shape.n_bits, level);
            let cw = &keys[k].cw;
            let sibling = cw.step(level, end.node, blocks[2 * k + usize::from(!right)], !right);
            end.siblings |= u64::from(sibling.control) << (depth - 1 - level);
            end.node = cw.step(level, end.node, blocks[2 * k + usize::from(right)], right);
        }
    }
    finish_leaves(&mut ends);
    out.extend(ends);
}

/// Fills in every end's hashed leaf block, in one pipelined call.
fn finish_leaves(ends: &mut [PathEnd]) {
    let mut blocks: Vec<Seed> = ends.iter().map(|e| e.node.seed ^ TWEAK_VALUES).collect();
    Prg::fixed().hash_in_place(&mut blocks);
    for (end, leaf) in ends.iter_mut().zip(blocks) {
        end.leaf = leaf;
    }
}

/// Bit `level` of x counted from the most significant of n bits (level 0 = MSB).
fn bit_at(x: u64, n_bits: u32, level: usize) -> bool {
    (x >> (n_bits as usize - 1 - level)) & 1 == 1
}

/// Slot j (ℓ bits) of a packed block.
fn slot(block: Seed, j: usize, out_bits: u32) -> u64 {
    (block >> (j as u32 * out_bits)) as u64 & low_mask(out_bits)
}

/// Key generation: walks α's path with both parties' states (BGI16, Gen).
fn correction_words(roots: [Seed; 2], shape: DpfShape, alpha: u64, beta: u64) -> DpfCorrections {
    let mut cw = DpfCorrections::empty(shape);
    let mut nodes = [0, 1].map(|b| Node {
        seed: roots[b],
        control: b == 1,
    });
    for level in 0..shape.tree_levels() as usize {
        gen_level(
            &mut cw,
            &mut nodes,
            level,
            bit_at(alpha, shape.n_bits, level),
        );
    }
    cw.output = output_correction(shape, nodes, alpha, beta);
    cw
}

/// One level of Gen: emits s_cw and the control corrections, descends towards α.
fn gen_level(cw: &mut DpfCorrections, nodes: &mut [Node; 2], level: usize, keep: bool) {
    let mut blocks = [
        nodes[0].seed,
        nodes[0].seed ^ 1,
        nodes[1].seed,
        nodes[1].seed ^ 1,
    ];
    Prg::fixed().hash_in_place(&mut blocks);
    let [keep_i, lose_i] = [usize::from(keep), usize::from(!keep)];
    cw.seeds
        .push(clear_control(blocks[lose_i] ^ blocks[2 + lose_i]));
    for side in 0..2 {
        let t = control_bit(blocks[side]) ^ control_bit(blocks[2 + side]) ^ (side == keep_i);
        cw.controls[side] |= u64::from(t) << level;
    }
    for (b, node) in nodes.iter_mut().enumerate() {
        *node = cw.step(level, *node, blocks[2 * b + keep_i], keep);
    }
}

/// The output correction: per slot j, (−1)^{t_1}·(β·\[j = α mod 2^ν\] − g_0\[j\] + g_1\[j\]).
fn output_correction(shape: DpfShape, nodes: [Node; 2], alpha: u64, beta: u64) -> u128 {
    let mut leaves = nodes.map(|n| n.seed ^ TWEAK_VALUES);
    Prg::fixed().hash_in_place(&mut leaves);
    let l = shape.out_bits;
    let target = (alpha as usize) & (shape.slots() - 1);
    (0..shape.slots()).fold(0, |acc, j| {
        let want = if j == target { beta } else { 0 };
        let diff = want
            .wrapping_sub(slot(leaves[0], j, l))
            .wrapping_add(slot(leaves[1], j, l));
        let v = if nodes[1].control {
            diff.wrapping_neg()
        } else {
            diff
        };
        acc | (Seed::from(v & low_mask(l)) << (j as u32 * l))
    })
}

impl DpfCorrections {
    /// Serialized size: 16(n − ν) + ⌈2(n − ν)/8⌉ + ⌈2^ν·ℓ/8⌉ bytes.
    pub const fn byte_len(shape: DpfShape) -> usize {
        let depth = shape.tree_levels();
        16 * depth as usize + control_bytes(depth) + (shape.output_bits() as usize).div_ceil(8)
    }

    /// The widths of the DPF.
    pub fn shape(&self) -> DpfShape {
        self.shape
    }

    fn empty(shape: DpfShape) -> DpfCorrections {
        DpfCorrections {
            shape,
            seeds: Vec::with_capacity(shape.tree_levels() as usize),
            controls: [0; 2],
            output: 0,
        }
    }

    /// The control-bit correction of the left or right child at `level`.
    fn control(&self, level: usize, right: bool) -> bool {
        (self.controls[usize::from(right)] >> level) & 1 == 1
    }

    /// The child of `node` whose hashed block is `child`, with the level's corrections
    /// applied when the parent's control bit is set.
    fn step(&self, level: usize, node: Node, child: Seed, right: bool) -> Node {
        let t = node.control;
        let fix = if t { self.seeds[level] } else { 0 };
        Node {
            seed: clear_control(child) ^ fix,
            control: control_bit(child) ^ (t & self.control(level, right)),
        }
    }

    /// Party `party`'s output in slot j of a leaf: (−1)^b·(g\[j\] + t·CW\[j\]) mod 2^ℓ.
    pub(crate) fn leaf_slot(&self, party: u8, node: Node, leaf: Seed, j: usize) -> u64 {
        let l = self.shape.out_bits;
        let fix = if node.control {
            slot(self.output, j, l)
        } else {
            0
        };
        let y = slot(leaf, j, l).wrapping_add(fix);
        let y = if party == 1 { y.wrapping_neg() } else { y };
        y & low_mask(l)
    }

    /// A 1-bit DPF's (ℓ = 1) leaf as party b sees it: g ⊕ t·CW, slots 0..2^ν.
    pub(crate) fn leaf_block(&self, end: &PathEnd) -> u128 {
        let fix = if end.node.control { self.output } else { 0 };
        (end.leaf ^ fix) & (u128::MAX >> (128 - self.shape.slots()))
    }

    /// Appends the serialized form: per level s_cw (16 bytes LE), the control bits (bit 2i
    /// left, 2i + 1 right, ⌈2(n − ν)/8⌉ bytes), the output correction (⌈2^ν·ℓ/8⌉ bytes).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for s in &self.seeds {
            out.extend_from_slice(&s.to_le_bytes());
        }
        let depth = self.shape.tree_levels();
        out.extend_from_slice(&interleave(self.controls).to_le_bytes()[..control_bytes(depth)]);
        let len = (self.shape.output_bits() as usize).div_ceil(8);
        out.extend_from_slice(&self.output.to_le_bytes()[..len]);
    }

    /// Reads what [`DpfCorrections::write`] wrote, rejecting set padding bits.
    pub(crate) fn read(shape: DpfShape, r: &mut Reader<'_>) -> Result<DpfCorrections, FssError> {
        let mut cw = DpfCorrections::empty(shape);
        let depth = shape.tree_levels();
        for _ in 0..depth {
            cw.seeds.push(r.seed()?);
        }
        let packed = r.le_uint(control_bytes(depth))?;
        if packed.checked_shr(2 * depth).unwrap_or(0) != 0 {
            return Err(FssError::Malformed("control bits"));
        }
        cw.controls = deinterleave(packed);
        cw.output = r.le_uint((shape.output_bits() as usize).div_ceil(8))?;
        if cw.output.checked_shr(shape.output_bits()).unwrap_or(0) != 0 {
            return Err(FssError::Malformed("output correction"));
        }
        Ok(cw)
    }
}

impl DpfKey {
    /// Serialized size: party, n, ℓ (1 byte each), root seed (16), correction words.
    pub const fn byte_len(shape: DpfShape) -> usize {
        3 + 16 + DpfCorrections::byte_len(shape)
    }

    /// The party (0 or 1) this key belongs to.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// The widths of the DPF.
    pub fn shape(&self) -> DpfShape {
        self.cw.shape
    }

    /// The shared correction words.
    pub fn correction_words(&self) -> &DpfCorrections {
        &self.cw
    }

    /// A key from a root seed (expanded elsewhere) and received correction words.
    pub(crate) fn from_parts(party: u8, seed: Seed, cw: DpfCorrections) -> DpfKey {
        DpfKey {
            party,
            seed: clear_control(seed),
            cw,
        }
    }

    fn check(&self, party: u8) {
        check_party(party);
        assert_eq!(
            self.party, party,
            "DPF key of party {} evaluated as party {party}",
            self.party
        );
    }

    fn root(&self, party: u8) -> Node {
        Node {
            seed: self.seed,
            control: party == 1,
        }
    }

    fn start(&self, party: u8) -> PathEnd {
        self.check(party);
        PathEnd {
            siblings: 0,
            node: self.root(party),
            leaf: 0,
        }
    }

    /// Serializes as party, n, ℓ (1 byte each), root seed (16 bytes LE), correction words.
    pub fn to_bytes(&self) -> Vec<u8> {
        let shape = self.cw.shape;
        let mut out = Vec::with_capacity(DpfKey::byte_len(shape));
        out.extend_from_slice(&[self.party, shape.n_bits as u8, shape.out_bits as u8]);
        out.extend_from_slice(&self.seed.to_le_bytes());
        self.cw.write(&mut out);
        out
    }

    /// Parses [`DpfKey::to_bytes`] output, checking length, party, widths and clear bits.
    pub fn from_bytes(bytes: &[u8]) -> Result<DpfKey, FssError> {
        let mut r = Reader::new(bytes);
        let party = r.party()?;
        let n_bits = u32::from(r.u8()?);
        let shape = DpfShape::new(n_bits, u32::from(r.u8()?))?;
        r.expect_total(DpfKey::byte_len(shape))?;
        let seed = r.seed()?;
        let cw = DpfCorrections::read(shape, &mut r)?;
        Ok(DpfKey { party, seed, cw })
    }
}

impl fmt::Debug for DpfCorrections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpfCorrections")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DpfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpfKey")
            .field("party", &self.party)
            .field("shape", &self.cw.shape)
            .finish_non_exhaustive()
    }
}
