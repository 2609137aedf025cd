//! Select with an XOR-shared bit, `b · x` for `b` from a GMW comparison ([`super::gmw`])
//! and an arithmetic `x` (PROTOCOLS.md "select / bit × arith (mux)", 1 round), with the
//! bit's conversion folded into the product instead of a B2A round before it.
//!
//! The dealer hands out a random bit `r` (XOR shares from the parties' seeds, arithmetic
//! shares `ρ`: party 1's a correction), a mask `a` of `x` (from the seeds) and arithmetic
//! shares of `r·a` (party 1's a correction). Both open `c = b ⊕ r` (a bit: eight to a
//! byte for a select node, [`start_at`]; a byte per element of `b` in the GMW row
//! maximum's levels, [`start`]) and `e = x − a` (64 bits per element of `x`, or w when
//! the select's value is read mod 2^w). With
//! `b = c + (1 − 2c)·r` and `x = e + a`:
//! `b·x = [b]·e + c·a + (1 − 2c)·(r·a)`, linear in the shares of `r`, `a` and `r·a`
//! (party 0 adds the public `c` to `[b]`). Online: 2·(8⌈n_b/8⌉ + w·n_x) bits for a select
//! node, 2·(8·n_b + 64·n_x) in a row maximum's level; dealer:
//! 64·(n_b + n_out) bits. Broadcasting as [`super::beaver_mul`]: each operand is opened
//! at its own size.

use std::fmt;

use ndarray::ArrayD;

use super::material::{
    self, DealerStreams, MaterialError, PartyStreams, draw, draw_product, shaped, words,
};
use super::xor::XorShare;
use super::{
    MessageError, PartyId, Share, bits, check_party, pack, pack_bits, packed_len, ring_ops,
    unpack_bits,
};

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    width: u32,
    /// Whether `e = x − a` is public already (a truncation's opening,
    /// [`start_opened`]): only the bits travel.
    opened: bool,
    /// Whether the opened bits are packed eight to a byte (else a byte per bit).
    dense: bool,
    m: BitMuxMaterial,
    c: ArrayD<u64>,
    e: ArrayD<u64>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bit_mux::State")
            .field("party", &self.party)
            .field("material", &self.m)
            .finish_non_exhaustive()
    }
}

/// Starts `bit · x`: the message is `bit_p ⊕ r_p` (a byte per bit) then `x_p − a_p`
/// (little-endian `u64`s).
///
/// # Panics
/// If the material belongs to another party or does not match the operands' shapes.
pub fn start(party: PartyId, bit: &XorShare, x: &Share, m: BitMuxMaterial) -> (State, Vec<u8>) {
    begin(party, bit, x, m, 64, false)
}

/// [`start`] for a select node (`select` in a plan): the opened bits packed eight to a
/// byte (⌈n_b/8⌉ bytes), and `x_p − a_p` sent mod 2^`width`, packed at `width` bits, for
/// a select whose value is read modulo 2^`width` only (a multiple of 8, at most 64; pass
/// `narrow-openings`): the output is correct mod 2^`width`.
///
/// # Panics
/// As [`start`], or if `width` is not in 1..=64.
pub fn start_at(
    party: PartyId,
    bit: &XorShare,
    x: &Share,
    m: BitMuxMaterial,
    width: u32,
) -> (State, Vec<u8>) {
    begin(party, bit, x, m, width, true)
}

fn begin(
    party: PartyId,
    bit: &XorShare,
    x: &Share,
    m: BitMuxMaterial,
    width: u32,
    dense: bool,
) -> (State, Vec<u8>) {
    check_party(party);
    assert_eq!(
        m.party, party,
        "material of party {} used by party {party}",
        m.party
    );
    assert_eq!(
        bit.shape(),
        m.r.shape(),
        "the bit and its mask have one shape"
    );
    assert_eq!(x.shape(), m.a.shape(), "x and its mask have one shape");
    let c = ndarray::Zip::from(&bit.0)
        .and(&m.r)
        .map_collect(|b, r| (b ^ r) & 1);
    let e = ring_ops::sub(x.0.view(), m.a.view());
    let flat_c: Vec<u64> = c.iter().copied().collect();
    let mut msg = match dense {
        true => pack_bits(&flat_c, 1),
        false => bits::pack(flat_c.len(), &[(&flat_c, 1)]),
    };
    msg.extend(pack_bits(&ring_ops::flat(&e).collect::<Vec<_>>(), width));
    let state = State {
        party,
        width,
        opened: false,
        dense,
        m,
        c,
        e,
    };
    (state, msg)
}

/// [`start_at`] for a select of a stochastic truncation's output t that reads the
/// truncation's opening (`comet_ir::protocol::Protocol::MuxOpened`): `e = t + r_h` is
/// public already (`opened`, shaped like x, correct mod 2^`width`), and this party's share
/// of the mask `a = −r_h` is its negated share `h` of `r_h`, with material dealt for that
/// mask ([`deal_on_mask`]). Only the bits are opened (eight to a byte).
///
/// # Panics
/// As [`start_at`], or if `opened` or `h` is not shaped like the material's x.
pub fn start_opened(
    party: PartyId,
    bit: &XorShare,
    opened: ArrayD<u64>,
    h: ArrayD<u64>,
    mut m: BitMuxMaterial,
    width: u32,
) -> (State, Vec<u8>) {
    check_party(party);
    assert_eq!(m.party, party, "material of party {}", m.party);
    assert_eq!(
        bit.shape(),
        m.r.shape(),
        "the bit and its mask have one shape"
    );
    assert_eq!(opened.shape(), m.a.shape(), "x and its mask have one shape");
    assert_eq!(h.shape(), m.a.shape(), "x and its mask have one shape");
    m.a = h.mapv(|h| h.wrapping_neg());
    let c = ndarray::Zip::from(&bit.0)
        .and(&m.r)
        .map_collect(|b, r| (b ^ r) & 1);
    let flat_c: Vec<u64> = c.iter().copied().collect();
    let msg = pack_bits(&flat_c, 1);
    let state = State {
        party,
        width,
        opened: true,
        dense: true,
        m,
        c,
        e: opened,
    };
    (state, msg)
}

/// This party's share of `bit · x`.
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u8]) -> Result<Share, MessageError> {
    let State {
        party,
        width,
        opened,
        dense,
        m,
        c,
        e,
    } = state;
    let (nb, nx) = (c.len(), e.len());
    let bit_bytes = if dense { packed_len(nb, 1) } else { nb };
    let e_bytes = if opened { 0 } else { packed_len(nx, width) };
    let expected = bit_bytes + e_bytes;
    if peer.len() != expected {
        return Err(MessageError::Length {
            expected,
            actual: peer.len(),
        });
    }
    let (pc, pe) = peer.split_at(bit_bytes);
    let theirs_c = match dense {
        true => unpack_bits(pc, nb, 1)?,
        false => bits::unpack(pc, nb, &[1])?.remove(0),
    };
    let c = ring_ops::from_flat(
        c.shape(),
        &(c.iter().zip(&theirs_c))
            .map(|(a, b)| a ^ b)
            .collect::<Vec<_>>(),
    );
    let e = match opened {
        true => e,
        false => ring_ops::add(
            e.view(),
            ring_ops::from_flat(e.shape(), &unpack_bits(pe, nx, width)?).view(),
        ),
    };
    // [b] = c + (1 − 2c)·ρ (party 0 adds c); the sign 1 − 2c is 1 or −1
    let sign = c.mapv(|c| if c == 1 { u64::MAX } else { 1 });
    let mut b = ring_ops::mul(sign.view(), m.rho.view());
    if party == 0 {
        b = ring_ops::add(b.view(), c.view());
    }
    let mut z = ring_ops::mul(b.view(), e.view());
    z = ring_ops::add(z.view(), ring_ops::mul(c.view(), m.a.view()).view());
    z = ring_ops::add(z.view(), ring_ops::mul(sign.view(), m.c.view()).view());
    Ok(Share(z))
}

/// Material of a select with an XOR-shared bit ([`bit_mux`](self)): a daBit `r` per bit
/// (shaped like the bit), a mask `a` of `x` (shaped like `x`) and shares of `r·a` (shaped
/// like the output; party 1's `rho` and `c` are corrections).
#[derive(Clone, PartialEq, Eq)]
pub struct BitMuxMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// XOR share of `r`.
    pub r: ArrayD<u64>,
    /// Arithmetic share of `r`.
    pub rho: ArrayD<u64>,
    /// Share of the mask of `x`.
    pub a: ArrayD<u64>,
    /// Share of `r·a`.
    pub c: ArrayD<u64>,
}

impl fmt::Debug for BitMuxMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [
            ("r", self.r.shape()),
            ("rho", self.rho.shape()),
            ("a", self.a.shape()),
            ("c", self.c.shape()),
        ];
        material::redact(f, "BitMuxMaterial", self.party, &shapes)
    }
}

impl BitMuxMaterial {
    /// The material of the entries `idx` only (flat indices), for a select on a sparse
    /// FFN's active entries.
    ///
    /// # Panics
    /// If the bit, `x` and the output do not have one shape, or an index is out of range.
    #[must_use]
    pub fn gather(&self, idx: &[usize]) -> BitMuxMaterial {
        let n = self.c.len();
        assert!(
            self.r.len() == n && self.a.len() == n,
            "only an element-wise select without broadcasting gathers: r {:?}, a {:?}, c {:?}",
            self.r.shape(),
            self.a.shape(),
            self.c.shape()
        );
        material::check_indices(idx, n);
        BitMuxMaterial {
            party: self.party,
            r: material::take(&self.r, idx),
            rho: material::take(&self.rho, idx),
            a: material::take(&self.a, idx),
            c: material::take(&self.c, idx),
        }
    }
}

impl BitMuxMaterial {
    /// The material of rows `rows` of a select whose bits, values and output each lead
    /// with the same `lead` rows (`material::take_rows`).
    ///
    /// # Panics
    /// If an array does not split into `lead` rows.
    pub fn gather_rows(&self, rows: &[usize], lead: usize) -> BitMuxMaterial {
        let take = |x| material::take_rows(x, rows, lead);
        BitMuxMaterial {
            party: self.party,
            r: take(&self.r),
            rho: take(&self.rho),
            a: take(&self.a),
            c: take(&self.c),
        }
    }
}

/// Party `party`'s material for bits shaped `bit` and values shaped `x` (output `out`)
/// from its stream: `r`, (party 0) `rho`, `a`, (party 0) `c`.
fn draw_material(
    rng: &mut rand_chacha::ChaCha12Rng,
    party: PartyId,
    [bit, x, out]: [&[usize]; 3],
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

/// Bytes of party 1's corrections: `rho` and `c`, 8 bytes per element.
fn body_len(bit: &[usize], out: &[usize]) -> usize {
    8 * (bit.iter().product::<usize>() + out.iter().product::<usize>())
}

/// Deals a select's material for bits shaped `bit` and values shaped `x`: party 1's
/// `rho = r − rho0` and `c = r·a − c0` (broadcast; counted).
///
/// # Panics
/// If the shapes do not broadcast.
pub fn deal(d: &mut dyn DealerStreams, bit: &[usize], x: &[usize]) -> [BitMuxMaterial; 2] {
    deal_with(d, bit, x, None)
}

/// [`deal`], with the mask of x `a` if given, else the sum of the parties' draws.
fn deal_with(
    d: &mut dyn DealerStreams,
    bit: &[usize],
    x: &[usize],
    a: Option<&ArrayD<u64>>,
) -> [BitMuxMaterial; 2] {
    let out = crate::movement::broadcast_shape(bit, x).expect("shapes broadcast");
    let [m0, mut m1] = [0, 1].map(|p| draw_material(d.stream(p), p, [bit, x, &out]));
    let r = ndarray::Zip::from(&m0.r)
        .and(&m1.r)
        .map_collect(|a, b| a ^ b);
    m1.rho = ring_ops::sub(r.view(), m0.rho.view());
    let drawn;
    let a = match a {
        Some(a) => a,
        None => {
            drawn = ring_ops::add(m0.a.view(), m1.a.view());
            &drawn
        }
    };
    let ra = ring_ops::mul(r.view(), a.view());
    m1.c = ring_ops::sub(ra.view(), m0.c.view());
    d.count_offline(body_len(bit, &out) as u64);
    [m0, m1]
}

/// [`deal`] for a select whose x is a stochastic truncation's output read through the
/// truncation's opening ([`start_opened`]): the mask of x is `a` (the truncation's
/// `−r_h`, shaped like x), not the parties' draws (drawn all the same, so that a party's
/// stream is the same either way; the parties use their shares of `r_h` instead), and
/// party 1's `c = r·a − c0` is computed with it. A party replays it with [`replay`].
///
/// # Panics
/// If the shapes do not broadcast or `a` is not shaped like x.
pub fn deal_on_mask(
    d: &mut dyn DealerStreams,
    bit: &[usize],
    x: &[usize],
    a: &ArrayD<u64>,
) -> [BitMuxMaterial; 2] {
    assert_eq!(a.shape(), x, "the mask is shaped like x");
    deal_with(d, bit, x, Some(a))
}

/// What a party's material body carries: party 1's `rho` then `c`, little-endian.
pub fn body(m: &[BitMuxMaterial; 2]) -> [Vec<u8>; 2] {
    let values: Vec<u64> = m[1].rho.iter().chain(&m[1].c).copied().collect();
    [Vec::new(), pack(&values)]
}

/// One party's select material, as [`deal`] drew it.
///
/// # Errors
/// If the shapes do not broadcast or the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    bit: &[usize],
    x: &[usize],
) -> Result<BitMuxMaterial, MaterialError> {
    let out = material::Product::Elementwise.shape(bit, x)?;
    let party = r.party();
    let mut m = draw_material(r.stream(), party, [bit, x, &out]);
    if party == 1 {
        let bytes = r.body(body_len(bit, &out))?;
        let (rho, c) = bytes.split_at(8 * m.rho.len());
        m.rho = shaped(bit, words(rho));
        m.c = shaped(&out, words(c));
    }
    Ok(m)
}
