//! The material of the boolean (GMW) protocols: the order in which each party draws its
//! shares from its PRG stream, how the dealer computes party 1's corrections, and their
//! layout in a material file. The dealer ([`super::Dealer`]) and a replay
//! ([`super::PartyReplay`]) both draw through these functions, so a party's material is the
//! same from either source.
//!
//! Corrections, per element and padded to whole bytes per element
//! ([`crate::protocols::bits`]): an AND gate's is one bit; a GMW DReLU's are its 181 gate
//! bits in round order (23 bytes); a daBit's (B2A, and the select with an XOR bit) is its
//! 64-bit arithmetic share, little-endian, and the select's `r·a` likewise.

use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use rand_chacha::ChaCha12Rng;

use super::{B2aMaterial, BitMuxMaterial, BitTripleMaterial, GmwDreluMaterial, GmwLevelMaterial};
use crate::protocols::bits::{self, BitReader, BitWriter, low};
use crate::protocols::gmw::{CORRECTION_BYTES_PER_ELEMENT, LEVEL_PAIRS, LOW_BITS};
use crate::protocols::{PartyId, pack, ring_ops};

fn draw(rng: &mut ChaCha12Rng, n: usize, mask: u64) -> Vec<u64> {
    (0..n).map(|_| rng.next_u64() & mask).collect()
}

/// Party 0's share of a product, from its stream; party 1's is filled in later.
fn draw_product(party: PartyId, rng: &mut ChaCha12Rng, n: usize, mask: u64) -> Vec<u64> {
    if party == 0 {
        draw(rng, n, mask)
    } else {
        vec![0; n]
    }
}

fn shaped(shape: &[usize], v: Vec<u64>) -> ArrayD<u64> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("one value per element")
}

fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// AND triples on `lanes` lanes of `n` words: `a`, `b`, then (party 0) `c`.
pub(super) fn bit_triple_draw(
    rng: &mut ChaCha12Rng,
    party: PartyId,
    n: usize,
    lanes: u32,
) -> BitTripleMaterial {
    let m = low(lanes);
    let (a, b) = (draw(rng, n, m), draw(rng, n, m));
    let c = draw_product(party, rng, n, m);
    BitTripleMaterial {
        party,
        lanes,
        a,
        b,
        c,
    }
}

/// Party 1's `c = (a0 ⊕ a1) ∧ (b0 ⊕ b1) ⊕ c0`.
pub(super) fn bit_triple_correct([m0, m1]: &mut [BitTripleMaterial; 2]) {
    for i in 0..m0.a.len() {
        m1.c[i] = ((m0.a[i] ^ m1.a[i]) & (m0.b[i] ^ m1.b[i])) ^ m0.c[i];
    }
}

pub(super) fn bit_triple_len(n: usize, lanes: u32) -> usize {
    n * bits::bytes_per_element(&[lanes])
}

pub(super) fn bit_triple_bytes(m: &BitTripleMaterial) -> Vec<u8> {
    bits::pack(m.c.len(), &[(&m.c, m.lanes)])
}

pub(super) fn bit_triple_read(m: &mut BitTripleMaterial, bytes: &[u8]) {
    m.c = bits::unpack(bytes, m.a.len(), &[m.lanes])
        .expect("the caller read the length")
        .remove(0);
}

/// A GMW DReLU's triples for `n` elements: the first round's mask and (party 0) product
/// share, then per level `a`, `b_g`, `b_p` and (party 0) `c_g`, `c_p`.
pub(super) fn gmw_draw(rng: &mut ChaCha12Rng, party: PartyId, n: usize) -> GmwDreluMaterial {
    let input_mask = draw(rng, n, low(LOW_BITS));
    let input_c = draw_product(party, rng, n, low(LOW_BITS));
    let levels = LEVEL_PAIRS
        .iter()
        .map(|&q| {
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
        })
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
pub(super) fn gmw_correct([m0, m1]: &mut [GmwDreluMaterial; 2]) {
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

pub(super) fn gmw_len(n: usize) -> usize {
    n * CORRECTION_BYTES_PER_ELEMENT
}

/// Party 1's corrections, per element: the first round's 63 bits, then per level `c_g`
/// (`q` bits) and `c_p` without its unused lane 0 (`q − 1` bits).
pub(super) fn gmw_bytes(m: &GmwDreluMaterial) -> Vec<u8> {
    let mut w = BitWriter::with_capacity(gmw_len(m.len()));
    for i in 0..m.len() {
        w.push(m.input_c[i], LOW_BITS);
        for (l, &q) in m.levels.iter().zip(&LEVEL_PAIRS) {
            w.push(l.c_g[i], q);
            w.push(l.c_p[i] >> 1, q - 1);
        }
        w.end_element();
    }
    w.finish()
}

pub(super) fn gmw_read(m: &mut GmwDreluMaterial, bytes: &[u8]) {
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

/// daBits for `n` bits: `r`, then (party 0) `rho`.
pub(super) fn b2a_draw(rng: &mut ChaCha12Rng, party: PartyId, n: usize) -> B2aMaterial {
    let r = draw(rng, n, 1);
    let rho = draw_product(party, rng, n, u64::MAX);
    B2aMaterial { party, r, rho }
}

/// Party 1's `rho = (r0 ⊕ r1) − rho0`.
pub(super) fn b2a_correct([m0, m1]: &mut [B2aMaterial; 2]) {
    for i in 0..m0.r.len() {
        m1.rho[i] = (m0.r[i] ^ m1.r[i]).wrapping_sub(m0.rho[i]);
    }
}

pub(super) fn b2a_len(n: usize) -> usize {
    8 * n
}

pub(super) fn b2a_bytes(m: &B2aMaterial) -> Vec<u8> {
    pack(&m.rho)
}

pub(super) fn b2a_read(m: &mut B2aMaterial, bytes: &[u8]) {
    m.rho = words(bytes);
}

/// A select's material for bits shaped `bit` and values shaped `x` (output `out`): `r`,
/// (party 0) `rho`, `a`, (party 0) `c`.
pub(super) fn bit_mux_draw(
    rng: &mut ChaCha12Rng,
    party: PartyId,
    bit: &[usize],
    x: &[usize],
    out: &[usize],
) -> BitMuxMaterial {
    let n = |s: &[usize]| s.iter().product::<usize>();
    let r = shaped(bit, draw(rng, n(bit), 1));
    let rho = shaped(bit, draw_product(party, rng, n(bit), u64::MAX));
    let a = shaped(x, draw(rng, n(x), u64::MAX));
    let c = shaped(out, draw_product(party, rng, n(out), u64::MAX));
    BitMuxMaterial {
        party,
        r,
        rho,
        a,
        c,
    }
}

/// Party 1's `rho = r − rho0` and `c = r·a − c0` (broadcast).
pub(super) fn bit_mux_correct([m0, m1]: &mut [BitMuxMaterial; 2]) {
    let r = ndarray::Zip::from(&m0.r)
        .and(&m1.r)
        .map_collect(|a, b| a ^ b);
    m1.rho = ring_ops::sub(r.view(), m0.rho.view());
    let a = ring_ops::add(m0.a.view(), m1.a.view());
    let ra = ring_ops::mul(r.view(), a.view());
    m1.c = ring_ops::sub(ra.view(), m0.c.view());
}

pub(super) fn bit_mux_len(bit: &[usize], out: &[usize]) -> usize {
    8 * (bit.iter().product::<usize>() + out.iter().product::<usize>())
}

pub(super) fn bit_mux_bytes(m: &BitMuxMaterial) -> Vec<u8> {
    let values: Vec<u64> = m.rho.iter().chain(&m.c).copied().collect();
    pack(&values)
}

pub(super) fn bit_mux_read(m: &mut BitMuxMaterial, bytes: &[u8]) {
    let (rho, c) = bytes.split_at(8 * m.rho.len());
    m.rho = shaped(m.rho.shape(), words(rho));
    m.c = shaped(m.c.shape(), words(c));
}
