//! DReLU, `[x ≥ 0]`, by GMW: the sign of `x = x0 + x1 mod 2^64` from a carry circuit on the
//! two parties' shares, as SPU's `msb_a2b` and CrypTen's `_ltz` (A2B restricted to the
//! most significant bit). The output is an **XOR** share of the bit ([`super::xor`]), which
//! [`super::b2a`] or [`super::bit_mux`] consume.
//!
//! **Circuit.** `msb(x) = x0[63] ⊕ x1[63] ⊕ c63`, where `c63` is the carry into bit 63 of
//! `x0 + x1`: the generate bit of the group of bits 0..62. Party 0's word is its share
//! `x0`, party 1's is `x1`, so the propagate bits `p = x0 ⊕ x1` are already XOR-shared
//! (each party's share is its own word) and only ANDs cost a round:
//!
//! 1. round 1: the generate bits `g = x0 ∧ x1` on lanes 0..62, an AND of two *private*
//!    words: party 0 sends `x0 ⊕ a`, party 1 sends `x1 ⊕ b` (63 bits each), and the
//!    dealer's correlation `c = a ∧ b` finishes it (one correction bit per gate);
//! 2. rounds 2–7: a binary tree over the groups (63 → 32 → 16 → 8 → 4 → 2 → 1, an odd top
//!    group passing through): a pair `(hi, lo)` becomes `G = G_hi ⊕ (P_hi ∧ G_lo)` (the
//!    two terms exclude each other) and `P = P_hi ∧ P_lo`, except that the lowest group
//!    never needs its `P`. The two ANDs share their left operand `P_hi`, so a pair opens
//!    `P_hi ⊕ a`, `G_lo ⊕ b`, `P_lo ⊕ b'` (3 bits; 2 for the lowest pair) from two triples
//!    with one `a`.
//!
//! Groups sit in the low lanes of a word per element; a level splits the odd (`hi`) and
//! even (`lo`) lanes (`bits::even_lanes`). Per element and party, the rounds open
//! [`opened_bits`] = 63, 92, 47, 23, 11, 5, 2 bits, each padded to whole bytes: 8, 12, 6,
//! 3, 2, 1, 1 = [`MESSAGE_BYTES_PER_ELEMENT`] = 33 bytes (264 bits). The dealer corrects
//! [`AND_GATES_PER_ELEMENT`] = 63 + 61 + 31 + 15 + 7 + 3 + 1 = 181 AND gates, one bit each,
//! packed per element in [`CORRECTION_BYTES_PER_ELEMENT`] = 23 bytes (184 bits), for party
//! 1 only. Rounds: [`ROUNDS`] = 7, the circuit's AND depth.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

use super::bits::{self, even_lanes, low};
use super::xor::{XorShare, beaver_and};
use super::{MessageError, PartyId, Share, Step, check_party};
use rand_chacha::ChaCha12Rng;

use super::bits::{BitReader, BitWriter};
use super::material::{DealerStreams, MaterialError, PartyStreams, draw, draw_product};

/// The bits below the sign: the carry into bit 63 comes from bits 0..62.
pub const LOW_BITS: u32 = 63;

/// Pairs combined per level of the carry tree (groups 63 → 32 → 16 → 8 → 4 → 2 → 1).
pub const LEVEL_PAIRS: [u32; 6] = [31, 16, 8, 4, 2, 1];

/// Rounds of a GMW DReLU: the generate bits, then one per level of the tree.
pub const ROUNDS: usize = 1 + LEVEL_PAIRS.len();

/// The field widths a party opens per element in level `level` (0-based) of the tree:
/// `P_hi ⊕ a`, `G_lo ⊕ b` for `q` pairs and `P_lo ⊕ b'` for all but the lowest.
pub const fn level_widths(level: usize) -> [u32; 3] {
    let q = LEVEL_PAIRS[level];
    [q, q, q - 1]
}

/// Bits one party opens per element in round `round` (0-based).
pub const fn opened_bits(round: usize) -> u32 {
    if round == 0 {
        LOW_BITS
    } else {
        let [a, b, c] = level_widths(round - 1);
        a + b + c
    }
}

/// Bytes one party sends per element in round `round`: [`opened_bits`] padded to bytes.
pub const fn message_bytes(round: usize) -> usize {
    opened_bits(round).div_ceil(8) as usize
}

/// Bytes one party sends per element over the whole DReLU (33).
pub const MESSAGE_BYTES_PER_ELEMENT: usize = {
    let mut total = 0;
    let mut r = 0;
    while r < ROUNDS {
        total += message_bytes(r);
        r += 1;
    }
    total
};

/// AND gates per element (181): one dealer correction bit each.
pub const AND_GATES_PER_ELEMENT: u32 = {
    let mut total = LOW_BITS;
    let mut k = 0;
    while k < LEVEL_PAIRS.len() {
        total += 2 * LEVEL_PAIRS[k] - 1;
        k += 1;
    }
    total
};

/// Correction bytes per element, party 1's only (23: the 181 bits padded to bytes).
pub const CORRECTION_BYTES_PER_ELEMENT: usize = AND_GATES_PER_ELEMENT.div_ceil(8) as usize;

/// Between rounds: the current groups and what this party opened last.
pub struct State {
    party: PartyId,
    shape: Vec<usize>,
    /// The round whose message was sent last (0-based).
    round: usize,
    m: GmwDreluMaterial,
    /// This party's bit 63 and bits 0..62.
    top: Vec<u64>,
    own: Vec<u64>,
    /// Shares of the groups' generate and propagate bits, one group per lane.
    g: Vec<u64>,
    p: Vec<u64>,
    groups: u32,
    /// What this party opened in the current level: `P_hi ⊕ a`, `G_lo ⊕ b`, `P_lo ⊕ b'`.
    sent: [Vec<u64>; 3],
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("gmw::State")
            .field("party", &self.party)
            .field("shape", &self.shape)
            .field("round", &self.round)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Starts `[x ≥ 0]` element-wise: the message of round 1 is `x_p ⊕ mask` on bits 0..62.
///
/// # Panics
/// If the material belongs to another party or covers another number of elements.
pub fn start(party: PartyId, x: &Share, m: GmwDreluMaterial) -> (State, Vec<u8>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(x.len(), m.len(), "one set of AND triples per element");
    let top: Vec<u64> = x.0.iter().map(|v| v >> 63).collect();
    let own: Vec<u64> = x.0.iter().map(|v| v & low(LOW_BITS)).collect();
    let masked: Vec<u64> = (own.iter().zip(&m.input_mask))
        .map(|(v, r)| (v ^ r) & low(LOW_BITS))
        .collect();
    let msg = bits::pack(own.len(), &[(&masked, LOW_BITS)]);
    let state = State {
        party,
        shape: x.shape().to_vec(),
        round: 0,
        m,
        top,
        own,
        g: Vec::new(),
        p: Vec::new(),
        groups: 0,
        sent: [Vec::new(), Vec::new(), Vec::new()],
    };
    (state, msg)
}

/// Ends a round with the peer's message: the next round's state and message, or this
/// party's XOR share of the bits after the last round.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn step(mut st: State, peer: &[u8]) -> Result<Step<State, XorShare>, MessageError> {
    if st.round == 0 {
        generate(&mut st, peer)?;
    } else {
        combine(&mut st, peer)?;
    }
    st.round += 1;
    if st.round == ROUNDS {
        return Ok(Step::Done(output(st)));
    }
    let msg = open_level(&mut st);
    Ok(Step::Next(st, msg))
}

/// Round 1's end: `g = x0 ∧ x1` (private inputs), `p` = this party's own word.
fn generate(st: &mut State, peer: &[u8]) -> Result<(), MessageError> {
    let n = st.own.len();
    let theirs = bits::unpack(peer, n, &[LOW_BITS])?.remove(0);
    let m = &st.m;
    st.g = (0..n)
        .map(|i| {
            // party 0: x0 ∧ (x1 ⊕ b); party 1: (x0 ⊕ a) ∧ b; with c = a ∧ b they add up
            let z = if st.party == 0 {
                st.own[i] & theirs[i]
            } else {
                theirs[i] & m.input_mask[i]
            };
            z ^ m.input_c[i]
        })
        .collect();
    st.p = std::mem::take(&mut st.own);
    st.groups = LOW_BITS;
    Ok(())
}

/// Opens the next level's AND inputs: `P_hi ⊕ a`, `G_lo ⊕ b`, `P_lo ⊕ b'`.
fn open_level(st: &mut State) -> Vec<u8> {
    let level = st.round - 1;
    let [wd, we, wp] = level_widths(level);
    debug_assert_eq!(st.groups / 2, LEVEL_PAIRS[level]);
    let lm = &st.m.levels[level];
    let n = st.g.len();
    let mut sent = [
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    ];
    for i in 0..n {
        let (g, p) = (st.g[i], st.p[i]);
        sent[0].push((even_lanes(p >> 1) ^ lm.a[i]) & low(wd));
        sent[1].push((even_lanes(g) ^ lm.b_g[i]) & low(we));
        sent[2].push((even_lanes(p) ^ lm.b_p[i]) & low(wd) & !1);
    }
    let shifted: Vec<u64> = sent[2].iter().map(|v| v >> 1).collect();
    let msg = bits::pack(n, &[(&sent[0], wd), (&sent[1], we), (&shifted, wp)]);
    st.sent = sent;
    msg
}

/// A level's end: `G = G_hi ⊕ (P_hi ∧ G_lo)`, `P = P_hi ∧ P_lo`, an odd top group carried.
fn combine(st: &mut State, peer: &[u8]) -> Result<(), MessageError> {
    let level = st.round - 1;
    let widths = level_widths(level);
    let q = widths[0];
    let n = st.g.len();
    let theirs = bits::unpack(peer, n, &widths)?;
    let lm = &st.m.levels[level];
    let odd = st.groups % 2 == 1;
    let sent = &st.sent;
    for (i, (g, p)) in st.g.iter_mut().zip(st.p.iter_mut()).enumerate() {
        let d = sent[0][i] ^ theirs[0][i];
        let e_g = sent[1][i] ^ theirs[1][i];
        let e_p = sent[2][i] ^ (theirs[2][i] << 1);
        let t = beaver_and(st.party, d, e_g, lm.a[i], lm.b_g[i], lm.c_g[i]) & low(q);
        let s = beaver_and(st.party, d, e_p, lm.a[i], lm.b_p[i], lm.c_p[i]) & low(q) & !1;
        let mut new_g = (even_lanes(*g >> 1) ^ t) & low(q);
        let mut new_p = s;
        if odd {
            new_g |= even_lanes(*g) & (1 << q);
            new_p |= even_lanes(*p) & (1 << q);
        }
        *g = new_g;
        *p = new_p;
    }
    st.groups = st.groups.div_ceil(2);
    Ok(())
}

/// `[x ≥ 0] = 1 ⊕ msb = 1 ⊕ x0[63] ⊕ x1[63] ⊕ c63`: party 0 adds the constant 1.
fn output(st: State) -> XorShare {
    debug_assert_eq!(st.groups, 1);
    let flip = u64::from(st.party == 0);
    let bits: Vec<u64> = (st.top.iter().zip(&st.g))
        .map(|(t, g)| t ^ (g & 1) ^ flip)
        .collect();
    XorShare(ArrayD::from_shape_vec(IxDyn(&st.shape), bits).expect("one bit per element"))
}

/// One level of the carry tree of a GMW DReLU: two triples per pair sharing the mask `a`
/// of `P_hi`, with `b_g` masking `G_lo` and `b_p` masking `P_lo` (lane `i` = pair `i`; the
/// lowest pair has no `b_p`).
#[derive(Clone, PartialEq, Eq)]
pub struct GmwLevelMaterial {
    /// Share of the mask of `P_hi`.
    pub a: Vec<u64>,
    /// Share of the mask of `G_lo`.
    pub b_g: Vec<u64>,
    /// Share of the mask of `P_lo`.
    pub b_p: Vec<u64>,
    /// Share of `a ∧ b_g`.
    pub c_g: Vec<u64>,
    /// Share of `a ∧ b_p`.
    pub c_p: Vec<u64>,
}

/// Material of a GMW DReLU over `n` elements: the correlation of the first round's AND of
/// private words (party 0 masks its word with `input_mask = a`, party 1 with
/// `input_mask = b`; `input_c` shares `a ∧ b`), then one [`GmwLevelMaterial`] per level of
/// the tree. Party 1's `c` words are the corrections.
#[derive(Clone, PartialEq, Eq)]
pub struct GmwDreluMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// This party's mask of its own word (bits 0..62), per element.
    pub input_mask: Vec<u64>,
    /// Share of `a ∧ b` of the first round, per element.
    pub input_c: Vec<u64>,
    /// Per level of the carry tree.
    pub levels: Vec<GmwLevelMaterial>,
}

impl GmwDreluMaterial {
    /// Elements covered.
    pub fn len(&self) -> usize {
        self.input_mask.len()
    }

    /// Whether it covers no element.
    pub fn is_empty(&self) -> bool {
        self.input_mask.is_empty()
    }
}

impl fmt::Debug for GmwDreluMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GmwDreluMaterial")
            .field("party", &self.party)
            .field("elements", &self.len())
            .field("levels", &self.levels.len())
            .finish_non_exhaustive()
    }
}

/// One level's triples for `n` elements on `q` pairs: `a`, `b_g`, `b_p`, then (party 0)
/// `c_g`, `c_p`.
fn draw_level(rng: &mut ChaCha12Rng, party: PartyId, n: usize, q: u32) -> GmwLevelMaterial {
    let (all, upper) = (low(q), low(q) & !1);
    let (a, b_g, b_p) = (draw(rng, n, all), draw(rng, n, all), draw(rng, n, upper));
    let c_g = draw_product(party, rng, n, all);
    let c_p = draw_product(party, rng, n, upper);
    GmwLevelMaterial {
        a,
        b_g,
        b_p,
        c_g,
        c_p,
    }
}

/// Party `party`'s triples for `n` elements from its stream: the first round's mask and
/// (party 0) product share, then every level.
fn draw_material(rng: &mut ChaCha12Rng, party: PartyId, n: usize) -> GmwDreluMaterial {
    let input_mask = draw(rng, n, low(LOW_BITS));
    let input_c = draw_product(party, rng, n, low(LOW_BITS));
    let levels = (LEVEL_PAIRS.iter())
        .map(|&q| draw_level(rng, party, n, q))
        .collect();
    GmwDreluMaterial {
        party,
        input_mask,
        input_c,
        levels,
    }
}

/// Party 1's product shares: `a ∧ b ⊕ c0` for the first round (party 0's mask is `a`,
/// party 1's `b`) and for both triples of every level.
fn correct(m0: &GmwDreluMaterial, m1: &mut GmwDreluMaterial) {
    for i in 0..m0.len() {
        m1.input_c[i] = (m0.input_mask[i] & m1.input_mask[i]) ^ m0.input_c[i];
    }
    for (l0, l1) in m0.levels.iter().zip(&mut m1.levels) {
        for i in 0..l0.a.len() {
            let a = l0.a[i] ^ l1.a[i];
            l1.c_g[i] = (a & (l0.b_g[i] ^ l1.b_g[i])) ^ l0.c_g[i];
            l1.c_p[i] = (a & (l0.b_p[i] ^ l1.b_p[i])) ^ l0.c_p[i];
        }
    }
}

/// Deals the AND triples of `n` GMW DReLU gates; counts party 1's correction bytes.
pub fn deal(d: &mut dyn DealerStreams, n: usize) -> [GmwDreluMaterial; 2] {
    let [m0, mut m1] = [0, 1].map(|p| draw_material(d.stream(p), p, n));
    correct(&m0, &mut m1);
    d.count_offline((n * CORRECTION_BYTES_PER_ELEMENT) as u64);
    [m0, m1]
}

/// What a party's material body carries: party 1's corrections, per element the first
/// round's 63 bits, then per level `c_g` (`q` bits) and `c_p` without its unused lane 0
/// (`q − 1` bits), padded to bytes per element.
pub fn body(m: &[GmwDreluMaterial; 2]) -> [Vec<u8>; 2] {
    let m = &m[1];
    let mut w = BitWriter::with_capacity(m.len() * CORRECTION_BYTES_PER_ELEMENT);
    for i in 0..m.len() {
        w.push(m.input_c[i], LOW_BITS);
        for (l, &q) in m.levels.iter().zip(&LEVEL_PAIRS) {
            w.push(l.c_g[i], q);
            w.push(l.c_p[i] >> 1, q - 1);
        }
        w.end_element();
    }
    [Vec::new(), w.finish()]
}

/// Reads party 1's corrections as [`body`] wrote them.
fn read_body(m: &mut GmwDreluMaterial, bytes: &[u8]) {
    let mut r = BitReader::new(bytes);
    for i in 0..m.len() {
        m.input_c[i] = r.pull(LOW_BITS);
        for (l, &q) in m.levels.iter_mut().zip(&LEVEL_PAIRS) {
            l.c_g[i] = r.pull(q);
            l.c_p[i] = r.pull(q - 1) << 1;
        }
        r.end_element();
    }
}

/// One party's triples of `n` gates, as [`deal`] drew them.
///
/// # Errors
/// If the body cannot be read.
pub fn replay(r: &mut dyn PartyStreams, n: usize) -> Result<GmwDreluMaterial, MaterialError> {
    let party = r.party();
    let mut m = draw_material(r.stream(), party, n);
    if party == 1 {
        let bytes = r.body(n * CORRECTION_BYTES_PER_ELEMENT)?;
        read_body(&mut m, &bytes);
    }
    Ok(m)
}
