//! # Two-party protocols over additive shares in Z_2^64
//!
//! Every protocol is a pure state machine (docs/runtime.md, "Protocols"; STYLE.md, "Core vs
//! IO"): `start(party, inputs, material)` returns a state and this party's message of the
//! round (`Vec<u64>`), `finish(state, peer_message)` returns this party's output. Nothing
//! here does IO: the interpreter (or [`driver`] in tests) packs the messages of a round
//! little-endian ([`pack`], [`unpack`]), makes one [`Channel::exchange`], and hands the
//! peer's message back. So the payload bytes of a round are exactly `8 ×` the `u64`s sent,
//! which is what the cost model's bits count (`bits / 8`).
//!
//! **One protocol = one file.** A protocol's file holds its state, its material type
//! (what the dealer hands one party for one instance), `deal` (both parties' halves drawn
//! from the dealer's streams, [`material::DealerStreams`]), `body` (the bytes of each
//! party's material body: what it cannot derive from its seed), `replay` (one party's half
//! re-derived from its stream and its body, [`material::PartyStreams`]), `start` and
//! `finish`. Below the protocols: [`crate::ring`] (party ids, [`Share`], [`XorShare`],
//! wrapping ops, message and bit packing) and [`crate::fss`]; above them, the dealer
//! (streams, seeds, counters, recording, files, service), which calls into each
//! protocol's `deal`/`body`/`replay` and is never imported here.
//!
//! | module | rounds | message per party | material type: what is materialised |
//! |---|---|---|---|
//! | [`share`] | 0 | none: the peer's share is a PRG stream | none |
//! | [`reveal`] | 1 | the sender's share; the receiver sends nothing | none |
//! | [`beaver_mul`] | 1 | `x − a`, `y − b` (own sizes, broadcast after opening) | [`TripleMaterial`](beaver_mul::TripleMaterial): `c = ab` correction |
//! | [`mux`] (select with an FSS bit) | 1 | as [`bit_mux`], on the bit's lowest bit | as [`bit_mux`] |
//! | [`square`] | 1 | `x − a` | [`SquareMaterial`](square::SquareMaterial): `a²` correction |
//! | [`beaver_matmul`] | 1 | `X − A`, `Y − B` | as [`beaver_mul`]: `C = AB` correction |
//! | [`fixed`] (`fixed_mul`, `fixed_matmul`) | 1 (+ setup) | `x − a`; `W − B` once at setup | [`FixedMaskMaterial`](fixed::FixedMaskMaterial) (free), [`FixedCallMaterial`](fixed::FixedCallMaterial): `C = AB` correction |
//! | [`drelu`] | 1 | `x + r` | [`DreluMaterial`](drelu::DreluMaterial): DCF keys ([`crate::fss`]) |
//! | [`lut`] (table lookup) | 2 | `k + r mod 2^n` (n bits per element), then `y_b` (64 bits, or the node's width) | [`LutMaterial`](lut::LutMaterial): 1-bit DPF keys and a 64-bit correction ([`crate::fss::lut`]) |
//! | [`sign_select`] (`y·[x ≥ 0]`: ReLU, a max level) | 2 | `x + r` (and `y + s` when y ≠ x), then a bit `e` (8 per byte) | [`SignSelectMaterial`](sign_select::SignSelectMaterial): 1-bit DCF keys, party 1's corrections of `ρ` and `ρ·s` ([`crate::fss::sign_select`]) |
//! | [`trunc_fss`] (faithful truncation) | 1 | `x + r + 2^62` (64 bits) | [`TruncMaterial`](trunc_fss::TruncMaterial): an s-bit DCF key per element, party 1's share of `msb(r)` ([`crate::fss::trunc`]) |
//! | [`trunc_stochastic`] (stochastic truncation) | 1 | `x + r + 2^(m−2) mod 2^m` (m bits, the node's width; 64 by default) | [`StochasticTruncMaterial`](trunc_stochastic::StochasticTruncMaterial): party 1's shares of `⌊r/2^s⌋` and `msb_m(r)`, 16 bytes |
//! | [`xor`] (AND gates) | 1 | `x ⊕ a`, `y ⊕ b` (bits, per element padded to bytes) | [`BitTripleMaterial`](xor::BitTripleMaterial): one correction bit per gate |
//! | [`gmw`] (DReLU by a carry circuit) | 7 | 33 bytes per element | [`GmwDreluMaterial`](gmw::GmwDreluMaterial): 181 correction bits (23 bytes) per element |
//! | [`b2a`] | 1 | `b ⊕ r` (a byte per bit) | [`B2aMaterial`](b2a::B2aMaterial): daBits, 64-bit correction per bit |
//! | [`bit_mux`] | 1 | `b ⊕ r` (eight bits to a byte for a select node; a byte per bit in a GMW row maximum's level), `x − a` | [`BitMuxMaterial`](bit_mux::BitMuxMaterial): 64-bit corrections of `r` and `r·a` |
//! | [`row_max`] | 2 or 8 per level | per level: a [`sign_select`] (FSS), or a GMW comparison then a select | per level, the sign select's, or the comparison's and the select's |
//! | [`shuffle`] (rows by `π1∘π0`) | 2 (one-way) | per step, the masker's `v − a` | [`ShuffleMaterial`](shuffle::ShuffleMaterial): per step, `Δ = π(a) − b` |
//! | [`block_matmul`] (block-sparse `H·W`, `W` fixed) | 1 (+ setup) | `H − A'` at the active entries | [`BlockMatMulMaterial`](block_matmul::BlockMatMulMaterial): `A'_b·B_b` per token and block |
//! | [`local`] | 0 | none (add, sub, public products, truncation) | none |
//!
//! A product (`beaver_mul`, `square`, `beaver_matmul`, `fixed`, `cache_matmul`), a
//! select (`mux`) or a table (`lut`, its second round) whose node has a width w < 64 (pass
//! `narrow-openings`: its value is read modulo 2^w only) sends its opened values modulo
//! 2^w, packed at w bits ([`dispatch`] packs and unpacks them; `mux` and `lut` take the
//! width themselves); its output shares are then correct modulo 2^w.
//!
//! [`material`] holds what the dealing of every protocol shares: the stream traits, the
//! [`Deal`](material::Deal) source, [`MaterialError`](material::MaterialError),
//! [`Product`](material::Product) and the draw/correct helpers. [`dispatch`] is the one
//! place keyed by [`Protocol`](comet_ir::protocol::Protocol): for a node, it deals its
//! material, starts it and finishes each of its rounds.
//!
//! Beaver's multiplication (Beaver, CRYPTO 1991): with `x = a + e`, `y = b + f` and `e`, `f`
//! opened, `xy = c + e·b + a·f + e·f`, which each party evaluates on its shares of `a`, `b`,
//! `c`, party 0 adding the public `e·f`. All secret values have redacting `Debug`.
//!
//! Boolean protocols (the GMW comparison and what consumes its XOR-shared bits) send bits:
//! their messages are bytes, packed per element (`bits`), and a multi-round protocol
//! ([`gmw`], [`row_max`]) returns a [`Step`] after each round.
//!
//! [`Channel::exchange`]: crate::transport::Channel::exchange

pub mod b2a;
pub mod beaver_matmul;
pub mod beaver_mul;
pub mod bit_mux;
pub mod block_matmul;
pub mod cache_masked;
pub mod cache_matmul;
pub mod dispatch;
pub mod drelu;
pub mod driver;
pub mod fixed;
pub mod fixed_mask;
pub mod gmw;
pub mod local;
pub mod lut;
pub mod material;
pub mod mux;
pub mod reveal;
pub mod row_max;
pub mod share;
pub mod shuffle;
pub mod sign_select;
pub mod square;
pub mod trunc_fss;
pub mod trunc_stochastic;
pub mod xor;

pub(crate) use crate::ring::message::check_len;
pub(crate) use crate::ring::share::check_party;
pub use crate::ring::{
    MessageError, PartyId, Share, XorShare, pack, pack_bits, packed_len, unpack, unpack_bits,
};
pub(crate) use crate::ring::{bits, ops as ring_ops};

/// What a multi-round protocol does after a round: send the next message, or stop with
/// its output.
#[derive(Debug)]
pub enum Step<S, T> {
    /// The state and this party's message for the next round.
    Next(S, Vec<u8>),
    /// The output.
    Done(T),
}
