//! A product with the KV cache whose rows are opened once ([`comet_ir::Op::CacheMatMul`],
//! pass `cache-openings`): `Z = X · view(K)` with `K = concat(cached, new)` along the
//! positions, `view` = repetition per query group, then transposition if asked.
//!
//! ## Protocol
//! Every row `t` of a cache slot has a mask `B_t`, shared `B_t = B_t,0 + B_t,1`, drawn
//! fresh when the row is written: party `p` draws a 32-byte seed from its stream and
//! expands its share of the new rows' masks from it. In the call that writes the rows,
//! both parties open `F_new = K_new − B_new`; the opened rows `F` of the slot are kept by
//! both parties between calls (public to them: each is one-time-padded by its own `B_t`).
//! A call, with a fresh `A` (shaped like `X`) and the dealer's `C = A · view(B)` shared:
//!
//! 1. one round: party `p` sends `X_p − A_p` and `K_new,p − B_new,p`;
//! 2. with `E = X − A` and `F = concat(F_cached, F_new)`, party `p` outputs
//!    `Z_p = C_p + E · view(K_p − [p = 0]·F) + X_p · view(F)`.
//!
//! `K_p − [p = 0]·F` is a sharing of `B = K − F`, so the sum is
//! `A·view(B) + (X − A)·view(B) + X·view(F) = X·view(K)`. Nothing is opened but `X − A`
//! (a fresh mask per call) and each row's `K_t − B_t` once (a fresh mask per row): the
//! rows cached by earlier calls cost nothing online, whatever the context length.
//!
//! The dealer keeps the two seeds of each written block of rows per slot
//! ([`KvMasks`], 64 bytes a block) and re-expands `B` of the cached rows for each call's
//! correction: its working set is one slot's masks at a time, never the whole cache. A
//! call at `past = 0` starts a new sequence: the slot's earlier blocks are forgotten, and
//! rows are never re-opened under a mask used before.
//!
//! ## Sizes
//! Online `2l·(|X| + |K_new|)` bits (both parties), 1 round; dealer `l·|Z|` (party 1's
//! correction of `C`), as for a Beaver product; local work two products of `|Z|·k`.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{ArrayD, Axis, IxDyn, concatenate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::material::{self, DealerStreams, MaterialError, PartyStreams, Product};
use super::{MessageError, PartyId, Share, check_len, check_party, ring_ops};
use crate::movement::cache_view;

/// What the product is: its slot and how it reads the cache operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheProduct {
    /// The cache slot.
    pub slot: u32,
    /// Whether the cache operand is transposed.
    pub transpose: bool,
    /// Query heads per cached head.
    pub groups: u64,
}

impl CacheProduct {
    /// `view(c)` as the product reads it.
    pub(crate) fn view(&self, c: &ArrayD<u64>) -> Result<ArrayD<u64>, String> {
        cache_view(&c.view(), self.transpose, self.groups)
    }
}

/// One party's material for one call: its masks of `X` and of the new rows, and its share
/// of `C = A · view(B)`.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheMatMulMaterial {
    /// The party it belongs to.
    pub party: PartyId,
    a: ArrayD<u64>,
    mask: ArrayD<u64>,
    c: ArrayD<u64>,
}

impl fmt::Debug for CacheMatMulMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes = [
            ("a", self.a.shape()),
            ("mask", self.mask.shape()),
            ("c", self.c.shape()),
        ];
        material::redact(f, "CacheMatMulMaterial", self.party, &shapes)
    }
}

/// A party's `A_p`, `B_new,p` and `C_p`.
pub(crate) type MaterialParts = (ArrayD<u64>, ArrayD<u64>, ArrayD<u64>);

impl CacheMatMulMaterial {
    /// `A_p`, `B_new,p` and `C_p`, after checking the party and the operands' shapes.
    ///
    /// # Errors
    /// If the material is another party's or another shape's.
    pub(crate) fn into_parts(
        self,
        party: PartyId,
        x: &[usize],
        new: &[usize],
    ) -> Result<MaterialParts, String> {
        if self.party != party || self.a.shape() != x || self.mask.shape() != new {
            return Err(format!(
                "material for x {:?} and new rows {:?} used for x {x:?} and new rows {new:?}",
                self.a.shape(),
                self.mask.shape(),
            ));
        }
        Ok((self.a, self.mask, self.c))
    }
}

/// One block of rows written by one call: its first row, its length and both parties'
/// mask seeds.
#[derive(Clone, PartialEq, Eq)]
struct Block {
    start: usize,
    len: usize,
    seeds: [[u8; 32]; 2],
}

/// The dealer's record of the masks of every cache slot's rows: per slot, the blocks of
/// rows in order.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct KvMasks {
    slots: BTreeMap<u32, Vec<Block>>,
}

impl fmt::Debug for KvMasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = self
            .slots
            .iter()
            .map(|(s, b)| (s, b.last().map_or(0, |b| b.start + b.len)));
        f.debug_map().entries(rows).finish()
    }
}

impl KvMasks {
    /// `B` of the slot's rows `0..past` (`[h, past, k]`), re-expanded from the recorded
    /// seeds, after forgetting blocks at or past `past`.
    fn cached(
        &mut self,
        slot: u32,
        past: usize,
        h: usize,
        k: usize,
    ) -> Result<ArrayD<u64>, MaterialError> {
        let blocks = self.slots.entry(slot).or_default();
        blocks.retain(|b| b.start < past);
        let mut parts = Vec::with_capacity(blocks.len());
        let mut next = 0;
        for b in blocks.iter() {
            if b.start != next || b.start + b.len > past {
                break;
            }
            let [m0, m1] = b.seeds.map(|s| expand_mask(s, &[h, b.len, k]));
            parts.push(ring_ops::add(m0.view(), m1.view()));
            next += b.len;
        }
        if next != past {
            return Err(MaterialError::Shape(format!(
                "cache slot {slot}: the dealer knows the masks of rows 0..{next}, the call reads \
                 {past} cached rows (calls dealt out of order?)"
            )));
        }
        if parts.is_empty() {
            return Ok(ArrayD::zeros(IxDyn(&[h, 0, k])));
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        Ok(concatenate(Axis(1), &views).expect("blocks of one slot share h and k"))
    }

    fn record(&mut self, slot: u32, start: usize, len: usize, seeds: [[u8; 32]; 2]) {
        (self.slots.entry(slot).or_default()).push(Block { start, len, seeds });
    }
}

/// The shape of `view(c)` for a cache operand shaped `c`.
///
/// # Errors
/// If `c` is not `[h, t, k]`.
pub fn view_shape(op: CacheProduct, c: &[usize]) -> Result<Vec<usize>, MaterialError> {
    let (h, t, k) = dims("cache operand", c)?;
    let h = h
        .checked_mul(op.groups.max(1) as usize)
        .ok_or_else(|| MaterialError::Shape(format!("{} query groups of {h} heads", op.groups)))?;
    Ok(if op.transpose {
        vec![h, k, t]
    } else {
        vec![h, t, k]
    })
}

/// The new rows' mask share of `shape` from a party's seed.
fn expand_mask(seed: [u8; 32], shape: &[usize]) -> ArrayD<u64> {
    material::expand(&mut ChaCha12Rng::from_seed(seed), shape)
}

fn draw_seed(rng: &mut ChaCha12Rng) -> [u8; 32] {
    let mut s = [0; 32];
    rng.fill_bytes(&mut s);
    s
}

/// `[h, t, k]` of a cache operand.
fn dims(what: &str, c: &[usize]) -> Result<(usize, usize, usize), MaterialError> {
    match *c {
        [h, t, k] => Ok((h, t, k)),
        _ => Err(MaterialError::Shape(format!(
            "{what} {c:?} is not [h, t, k]"
        ))),
    }
}

/// Deals one call of the product: `x`, `c` and `new` are the operands' shapes.
///
/// # Errors
/// If the shapes do not combine, or the dealer does not know the masks of the cached
/// rows (`kv` was not given the slot's earlier calls).
pub fn deal(
    d: &mut dyn DealerStreams,
    kv: &mut KvMasks,
    op: CacheProduct,
    x: &[usize],
    c: &[usize],
    new: &[usize],
) -> Result<[CacheMatMulMaterial; 2], MaterialError> {
    let (h, t, k) = dims("cache operand", c)?;
    let (hn, seq, kn) = dims("new rows", new)?;
    if (hn, kn) != (h, k) || seq > t {
        return Err(MaterialError::Shape(format!(
            "new rows {new:?} of cache operand {c:?}"
        )));
    }
    let past = t - seq;
    let cached = kv.cached(op.slot, past, h, k)?;
    let a = material::masks(d, x);
    let seeds = [0, 1].map(|p| draw_seed(d.stream(p)));
    let masks = seeds.map(|s| expand_mask(s, new));
    let b = concatenate(Axis(1), &[cached.view(), material::sum(&masks).view()])
        .expect("cached and new rows share h and k");
    kv.record(op.slot, past, seq, seeds);
    let view = op.view(&b).map_err(MaterialError::Shape)?;
    Product::MatMul.shape(x, view.shape())?;
    let cm = material::correct(d, Product::MatMul.apply(&material::sum(&a), &view));
    let ([a0, a1], [m0, m1], [c0, c1]) = (a, masks, cm);
    Ok([
        CacheMatMulMaterial {
            party: 0,
            a: a0,
            mask: m0,
            c: c0,
        },
        CacheMatMulMaterial {
            party: 1,
            a: a1,
            mask: m1,
            c: c1,
        },
    ])
}

/// What a party's material body carries: party 1's share of `C`.
pub fn body(m: &[CacheMatMulMaterial; 2]) -> [Vec<u8>; 2] {
    material::correction_body(&m[1].c)
}

/// One party's material, re-derived as [`deal`] drew it (`out`: the product's shape).
///
/// # Errors
/// If the body cannot be read.
pub fn replay(
    r: &mut dyn PartyStreams,
    x: &[usize],
    new: &[usize],
    out: &[usize],
) -> Result<CacheMatMulMaterial, MaterialError> {
    let a = material::own_mask(r, x);
    let mask = expand_mask(draw_seed(r.stream()), new);
    let c = material::product_share(r, out)?;
    Ok(CacheMatMulMaterial {
        party: r.party(),
        a,
        mask,
        c,
    })
}

/// Between [`start`] and [`finish`].
pub struct State {
    party: PartyId,
    op: CacheProduct,
    x: ArrayD<u64>,
    c: ArrayD<u64>,
    f_cached: ArrayD<u64>,
    e: ArrayD<u64>,
    f: ArrayD<u64>,
    cm: ArrayD<u64>,
}

impl State {
    /// The cache slot.
    pub fn slot(&self) -> u32 {
        self.op.slot
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("cache_matmul::State")
            .field("party", &self.party)
            .field("op", &self.op)
            .field("shape", &self.c.shape())
            .finish_non_exhaustive()
    }
}

/// Starts the product: `x`, the cache operand `c` and its `new` rows (this party's
/// shares), and the slot's rows opened by earlier calls (`[h, past, k]`; `None` before the
/// slot's first write). The message is `X_p − A_p` then `K_new,p − B_new,p`.
///
/// # Errors
/// If the opened rows do not match the cache operand, or the material does not match the
/// operands.
pub fn start(
    party: PartyId,
    op: CacheProduct,
    [x, c, new]: [&Share; 3],
    opened: Option<&ArrayD<u64>>,
    m: CacheMatMulMaterial,
) -> Result<(State, Vec<u64>), String> {
    check_party(party);
    if m.party != party || m.a.shape() != x.shape() || m.mask.shape() != new.shape() {
        return Err(format!(
            "material for x {:?} and new rows {:?} used for x {:?} and new rows {:?}",
            m.a.shape(),
            m.mask.shape(),
            x.shape(),
            new.shape()
        ));
    }
    let (h, t, k) = dims("cache operand", c.shape()).map_err(|e| e.to_string())?;
    let seq = new.shape()[1];
    let past = t.checked_sub(seq).ok_or("more new rows than cache rows")?;
    let f_cached = match opened {
        Some(f) if f.shape() == [h, past, k] => f.clone(),
        None if past == 0 => ArrayD::zeros(IxDyn(&[h, 0, k])),
        _ => {
            return Err(format!(
                "cache slot {}: {past} cached rows but {} opened rows (a cache written \
                 without its openings)",
                op.slot,
                opened.map_or(0, |f| f.shape().get(1).copied().unwrap_or(0))
            ));
        }
    };
    let e = ring_ops::sub(x.0.view(), m.a.view());
    let f = ring_ops::sub(new.0.view(), m.mask.view());
    let msg = ring_ops::flat(&e).chain(ring_ops::flat(&f)).collect();
    let state = State {
        party,
        op,
        x: x.0.clone(),
        c: c.0.clone(),
        f_cached,
        e,
        f,
        cm: m.c,
    };
    Ok((state, msg))
}

impl State {
    /// The values of each part of this party's message: `X − A`, then the new rows under
    /// their masks (the peer's message has the same parts).
    pub fn parts(&self) -> [usize; 2] {
        [self.e.len(), self.f.len()]
    }
}

/// This party's share of the product, and the slot's opened rows after this call
/// (`[h, past + seq, k]`: the earlier ones and the new rows).
///
/// # Errors
/// If the peer's message has the wrong length.
pub fn finish(state: State, peer: &[u64]) -> Result<(Share, ArrayD<u64>), MessageError> {
    let State {
        party,
        op,
        x,
        c,
        f_cached,
        e,
        f,
        cm,
    } = state;
    check_len(peer, e.len() + f.len())?;
    let (pe, pf) = peer.split_at(e.len());
    let e = ring_ops::add(e.view(), ring_ops::from_flat(e.shape(), pe).view());
    let f_new = ring_ops::add(f.view(), ring_ops::from_flat(f.shape(), pf).view());
    let opened = concatenate(Axis(1), &[f_cached.view(), f_new.view()])
        .expect("cached and new rows share h and k");
    let b = if party == 0 {
        ring_ops::sub(c.view(), opened.view())
    } else {
        c
    };
    let view = |t: &ArrayD<u64>| op.view(t).expect("a cache operand of [h, t, k]");
    let mut z = ring_ops::add(cm.view(), Product::MatMul.apply(&e, &view(&b)).view());
    z = ring_ops::add(z.view(), Product::MatMul.apply(&x, &view(&opened)).view());
    Ok((Share(z), opened))
}

/// Row `i` of the opened rows, for tests.
#[cfg(test)]
pub(crate) fn opened_row(f: &ArrayD<u64>, head: usize, i: usize) -> Vec<u64> {
    f.slice(ndarray::s![head, i, ..]).to_vec()
}

/// One call of a cache product in tests, with random operands and the dealer's material.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::dealer::Dealer;
    use ndarray::Array;
    use rand::RngExt;

    /// A call's plaintext and shared operands and dealt material.
    pub struct Call {
        /// The cache operand after the call (its earlier rows and the new ones).
        pub c: ArrayD<u64>,
        /// The plaintext product.
        pub want: ArrayD<u64>,
        /// The shares of `x`, `c` and `new`, per party.
        pub shares: [[Share; 3]; 2],
        /// The dealt material, per party.
        pub material: [CacheMatMulMaterial; 2],
        /// The shape of `x`.
        pub x_shape: Vec<usize>,
    }

    /// Uniform ring elements of `shape`.
    pub fn random(rng: &mut ChaCha12Rng, shape: &[usize]) -> ArrayD<u64> {
        Array::from_shape_simple_fn(IxDyn(shape), || rng.random::<u64>())
    }

    /// Two additive shares of `v`.
    pub fn split(rng: &mut ChaCha12Rng, v: &ArrayD<u64>) -> [Share; 2] {
        let r = random(rng, v.shape());
        [Share(r.clone()), Share(ring_ops::sub(v.view(), r.view()))]
    }

    /// A call of `op` writing `seq` new rows `[hkv, seq, k]` after `cache`, with `x` of
    /// `hkv · groups` heads.
    pub fn call(
        rng: &mut ChaCha12Rng,
        (dealer, kv): (&mut Dealer, &mut KvMasks),
        op: CacheProduct,
        cache: Option<&ArrayD<u64>>,
        [hkv, seq, k]: [usize; 3],
    ) -> Call {
        let new = random(rng, &[hkv, seq, k]);
        let c = match cache {
            Some(old) => concatenate(Axis(1), &[old.view(), new.view()]).unwrap(),
            None => new.clone(),
        };
        let x = random(rng, &[hkv * op.groups as usize, seq, k]);
        let want = Product::MatMul.apply(&x, &op.view(&c).unwrap());
        let material = deal(dealer, kv, op, x.shape(), c.shape(), new.shape()).unwrap();
        let ([x0, x1], [c0, c1], [n0, n1]) = (split(rng, &x), split(rng, &c), split(rng, &new));
        Call {
            c,
            want,
            shares: [[x0, c0, n0], [x1, c1, n1]],
            material,
            x_shape: x.shape().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dealer::Dealer;

    /// Two calls (a prefill of 3 rows, a decode step of 1) of `q · view(k)` with GQA and a
    /// transpose: each equals the plaintext product, and the second opens only its new row.
    #[test]
    fn two_calls_equal_the_plaintext_product() {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        let mut dealer = Dealer::from_u64(3);
        let mut kv = KvMasks::default();
        let op = CacheProduct {
            slot: 4,
            transpose: true,
            groups: 2,
        };
        let (hkv, k) = (2, 3);
        let mut cache: Option<ArrayD<u64>> = None;
        let mut opened: [Option<ArrayD<u64>>; 2] = [None, None];
        for seq in [3, 1] {
            let call = testing::call(
                &mut rng,
                (&mut dealer, &mut kv),
                op,
                cache.as_ref(),
                [hkv, seq, k],
            );
            let [m0, m1] = call.material;
            let [s0, s1] = call.shares;
            let x_len = call.x_shape.iter().product::<usize>();
            let (s0, msg0) =
                start(0, op, [&s0[0], &s0[1], &s0[2]], opened[0].as_ref(), m0).unwrap();
            let (s1, msg1) =
                start(1, op, [&s1[0], &s1[1], &s1[2]], opened[1].as_ref(), m1).unwrap();
            assert_eq!(
                msg0.len(),
                x_len + hkv * seq * k,
                "only x and the new rows travel"
            );
            let (z0, f0) = finish(s0, &msg1).unwrap();
            let (z1, f1) = finish(s1, &msg0).unwrap();
            assert_eq!(f0, f1, "both parties hold the same opened rows");
            assert_ne!(opened_row(&f0, 0, 0), opened_row(&call.c, 0, 0), "masked");
            assert_eq!(ring_ops::add(z0.0.view(), z1.0.view()), call.want);
            opened = [Some(f0), Some(f1)];
            cache = Some(call.c);
        }
    }

    #[test]
    fn a_cache_without_its_openings_is_refused() {
        let mut dealer = Dealer::from_u64(1);
        let mut kv = KvMasks::default();
        let op = CacheProduct {
            slot: 0,
            transpose: false,
            groups: 1,
        };
        let e = deal(&mut dealer, &mut kv, op, &[1, 1, 3], &[1, 3, 2], &[1, 1, 2]).unwrap_err();
        assert!(e.to_string().contains("rows 0..0"), "{e}");
        let m = deal(&mut dealer, &mut kv, op, &[1, 1, 1], &[1, 1, 2], &[1, 1, 2]).unwrap();
        let zero = |s: &[usize]| Share(ArrayD::zeros(IxDyn(s)));
        let [m0, _] = m;
        let x = zero(&[1, 1, 1]);
        let (c, new) = (zero(&[1, 2, 2]), zero(&[1, 1, 2]));
        let e = start(0, op, [&x, &c, &new], None, m0).unwrap_err();
        assert!(
            e.contains("1 cached rows but 0 opened rows") || e.contains("material"),
            "{e}"
        );
    }
}
