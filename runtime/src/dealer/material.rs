//! What the dealer hands each party for one protocol instance. Every type's `Debug` shows
//! party and shapes only, never values.

use std::fmt;

use ndarray::ArrayD;

use crate::fss::DreluKey;
use crate::protocols::PartyId;

/// Beaver triple shares for [`beaver_mul`](crate::protocols::beaver_mul),
/// [`mux`](crate::protocols::mux) and [`beaver_matmul`](crate::protocols::beaver_matmul):
/// this party's shares of `a` (shaped like `x`), `b` (like `y`) and `c = a ∘ b` (like the
/// output, `∘` the element-wise or matrix product).
#[derive(Clone, PartialEq, Eq)]
pub struct TripleMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Share of the mask of `x`.
    pub a: ArrayD<u64>,
    /// Share of the mask of `y`.
    pub b: ArrayD<u64>,
    /// Share of `a ∘ b` (party 1's is the materialised correction).
    pub c: ArrayD<u64>,
}

/// `(a, a²)` shares for [`square`](crate::protocols::square).
#[derive(Clone, PartialEq, Eq)]
pub struct SquareMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Share of the mask `a`.
    pub a: ArrayD<u64>,
    /// Share of `a²` (party 1's is the materialised correction).
    pub c: ArrayD<u64>,
}

/// This party's share of the mask `B` of a fixed operand, opened as `W − B` once at setup
/// ([`fixed`](crate::protocols::fixed)).
#[derive(Clone, PartialEq, Eq)]
pub struct FixedMaskMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Share of `B`.
    pub b: ArrayD<u64>,
}

/// Per-call material of a product with a fixed operand: a fresh mask `a` of the varying
/// operand and the share of `c = a ∘ B`.
#[derive(Clone, PartialEq, Eq)]
pub struct FixedCallMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Share of the mask of the varying operand.
    pub a: ArrayD<u64>,
    /// Share of `a ∘ B` (party 1's is the materialised correction).
    pub c: ArrayD<u64>,
}

/// DReLU keys for [`drelu`](crate::protocols::drelu).
#[derive(Clone, PartialEq, Eq)]
pub struct DreluMaterial {
    /// The FSS key batch.
    pub key: DreluKey,
}

/// Beaver bit triples for AND gates on the low `lanes` lanes of one word per element
/// ([`xor::and_start`](crate::protocols::xor::and_start)): this party's XOR shares of `a`,
/// `b` and `c = a ∧ b` (party 1's `c` is the materialised correction).
#[derive(Clone, PartialEq, Eq)]
pub struct BitTripleMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// Lanes per element (at most 64).
    pub lanes: u32,
    /// Share of the mask of `x`, per element.
    pub a: Vec<u64>,
    /// Share of the mask of `y`, per element.
    pub b: Vec<u64>,
    /// Share of `a ∧ b`, per element.
    pub c: Vec<u64>,
}

/// One level of the carry tree of a GMW DReLU ([`gmw`](crate::protocols::gmw)): two
/// triples per pair sharing the mask `a` of `P_hi`, with `b_g` masking `G_lo` and `b_p`
/// masking `P_lo` (lane `i` = pair `i`; the lowest pair has no `b_p`).
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

/// Material of a GMW DReLU over `n` elements ([`gmw`](crate::protocols::gmw)): the
/// correlation of the first round's AND of private words (party 0 masks its word with
/// `input_mask = a`, party 1 with `input_mask = b`; `input_c` shares `a ∧ b`), then one
/// [`GmwLevelMaterial`] per level of the tree. Party 1's `c` words are the corrections.
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

/// daBits for [`b2a`](crate::protocols::b2a): a random bit `r` per element, as this
/// party's XOR share (`r`, 0 or 1) and arithmetic share (`rho`; party 1's is the
/// correction).
#[derive(Clone, PartialEq, Eq)]
pub struct B2aMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    /// XOR share of `r`.
    pub r: Vec<u64>,
    /// Arithmetic share of `r`.
    pub rho: Vec<u64>,
}

/// Material of a select with an XOR-shared bit ([`bit_mux`](crate::protocols::bit_mux)):
/// a daBit `r` per bit (shaped like the bit), a mask `a` of `x` (shaped like `x`) and
/// shares of `r·a` (shaped like the output; party 1's `rho` and `c` are corrections).
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

fn redact(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    party: PartyId,
    shapes: &[(&str, &[usize])],
) -> fmt::Result {
    let mut s = f.debug_struct(name);
    s.field("party", &party);
    for (field, shape) in shapes {
        s.field(field, &format_args!("[..] shape {shape:?}"));
    }
    s.finish()
}

impl fmt::Debug for TripleMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [
            ("a", self.a.shape()),
            ("b", self.b.shape()),
            ("c", self.c.shape()),
        ];
        redact(f, "TripleMaterial", self.party, &shapes)
    }
}

impl fmt::Debug for SquareMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [("a", self.a.shape()), ("c", self.c.shape())];
        redact(f, "SquareMaterial", self.party, &shapes)
    }
}

impl fmt::Debug for FixedMaskMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redact(f, "FixedMaskMaterial", self.party, &[("b", self.b.shape())])
    }
}

impl fmt::Debug for FixedCallMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [("a", self.a.shape()), ("c", self.c.shape())];
        redact(f, "FixedCallMaterial", self.party, &shapes)
    }
}

impl fmt::Debug for DreluMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DreluMaterial")
            .field("key", &self.key)
            .finish()
    }
}

impl fmt::Debug for BitTripleMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitTripleMaterial")
            .field("party", &self.party)
            .field("lanes", &self.lanes)
            .field("elements", &self.a.len())
            .finish_non_exhaustive()
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

impl fmt::Debug for B2aMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("B2aMaterial")
            .field("party", &self.party)
            .field("elements", &self.r.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for BitMuxMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [
            ("r", self.r.shape()),
            ("rho", self.rho.shape()),
            ("a", self.a.shape()),
            ("c", self.c.shape()),
        ];
        redact(f, "BitMuxMaterial", self.party, &shapes)
    }
}
