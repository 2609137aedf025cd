//! The one dispatch over [`Protocol`]: for a communicating node, what material it is dealt
//! ([`deal`]), how it starts ([`start`], or [`start_gathered`] on the active entries of a
//! sparse FFN) and how each of its rounds ends ([`finish`]). The interpreter calls only
//! these; it reaches a node's operands through [`Node`], and the material through
//! [`Deal`].

use std::borrow::Cow;

use comet_ir::protocol::Protocol;
use comet_ir::{NodeId, Op};
use ndarray::{Array2, ArrayD};

use super::b2a::B2aMaterial;
use super::bit_mux::BitMuxMaterial;
use super::fixed::FixedOperand;
use super::material::{Deal, MaterialError, Pair, Product};
use super::row_max::LevelMaterial;
use super::{
    MessageError, PartyId, Share, Step, XorShare, b2a, beaver_matmul, beaver_mul, bit_mux,
    block_matmul, cache_masked, cache_matmul, drelu, fixed, gmw, lut, mux, pack, pack_bits,
    packed_len, reveal, ring_ops, row_max, sign_select, square, trunc_fss, trunc_stochastic,
    unpack, unpack_bits,
};

/// One node's material for one party.
pub enum NodeMaterial {
    /// Beaver triple (mul, matmul, mux).
    Triple(beaver_mul::TripleMaterial),
    /// Square pair.
    Square(square::SquareMaterial),
    /// Per-call material of a product with a fixed operand.
    Fixed(fixed::FixedCallMaterial),
    /// DReLU keys.
    Drelu(drelu::DreluMaterial),
    /// The AND triples of a GMW DReLU.
    GmwDrelu(gmw::GmwDreluMaterial),
    /// daBits of a B2A.
    B2a(B2aMaterial),
    /// A select with XOR-shared bits (GMW).
    BitMux(BitMuxMaterial),
    /// Per level of a row maximum: the comparison's and the select's material.
    RowMax(Vec<LevelMaterial>),
    /// Per-call material of a block-sparse product.
    BlockMatMul(block_matmul::BlockMatMulMaterial),
    /// Lookup-table keys.
    Lut(lut::LutMaterial),
    /// Per-call material of a product with the KV cache.
    Cache(cache_matmul::CacheMatMulMaterial),
    /// Sign-select keys.
    SignSelect(sign_select::SignSelectMaterial),
    /// Faithful-truncation keys.
    Trunc(trunc_fss::TruncMaterial),
    /// Stochastic-truncation masks.
    StochasticTrunc(trunc_stochastic::StochasticTruncMaterial),
}

/// What dealing a node's material needs to know of the node.
#[derive(Debug)]
pub struct NodeSpec<'a> {
    /// The node.
    pub id: NodeId,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its op.
    pub op: &'a Op,
    /// How many nodes read its opening (a stochastic truncation's).
    pub readers: usize,
    /// Whether comparisons are GMW circuits (else FSS).
    pub gmw: bool,
    /// Its operands.
    pub operands: Vec<NodeId>,
    /// Their evaluated shapes.
    pub shapes: Vec<Vec<usize>>,
    /// The fixed operand of a product with one.
    pub fixed: Option<NodeId>,
    /// The signed width its comparisons work at (DReLU, row maximum; 64 = the ring), or a
    /// stochastic truncation's width (its input in `[−2^(bits−2), 2^(bits−2))`). A table
    /// lookup's index width is its op's.
    pub bits: u32,
}

/// Deals the material of the node `n`, per party (none for a protocol that needs none).
///
/// # Errors
/// If `deal` cannot produce it, or the shapes do not combine.
pub fn deal<D: Deal + ?Sized>(
    n: &NodeSpec,
    deal: &mut D,
) -> Result<Pair<NodeMaterial>, MaterialError> {
    let (xs, s) = (&n.operands, &n.shapes);
    let count = |k: usize| s[k].iter().product::<usize>();
    let kind = match n.op {
        Op::MatMul => Product::MatMul,
        _ => Product::Elementwise,
    };
    Ok(match n.protocol {
        Protocol::CacheMatMul => {
            let op = cache_product(n.op).ok_or_else(|| {
                MaterialError::Shape("cache_matmul computes cache_matmul nodes".into())
            })?;
            wrap(
                deal.cache_matmul(op, &s[0], &s[1], &s[2])?,
                NodeMaterial::Cache,
            )
        }
        Protocol::Mux => wrap(deal.bit_mux(&s[0], &s[1])?, NodeMaterial::BitMux),
        Protocol::MuxOpened => wrap(
            deal.bit_mux_opened(xs[1], &s[0], &s[1])?,
            NodeMaterial::BitMux,
        ),
        Protocol::BeaverMul | Protocol::BeaverMatMul => {
            wrap(deal.triple(kind, &s[0], &s[1])?, NodeMaterial::Triple)
        }
        Protocol::Square => wrap(deal.square(&s[0])?, NodeMaterial::Square),
        Protocol::FixedMul | Protocol::FixedMatMul => {
            let w = n.fixed.unwrap_or(xs[1]);
            let k = usize::from(xs[1] == w);
            wrap(deal.fixed_call(w, kind, &s[1 - k])?, NodeMaterial::Fixed)
        }
        Protocol::DreluFss => wrap(deal.drelu(count(0), n.bits)?, NodeMaterial::Drelu),
        Protocol::DreluOpened => wrap(
            deal.drelu_opened(xs[0], count(0), n.bits)?,
            NodeMaterial::Drelu,
        ),
        Protocol::DreluGmw => wrap(deal.gmw_drelu(count(0))?, NodeMaterial::GmwDrelu),
        Protocol::B2A => wrap(deal.b2a(count(0))?, NodeMaterial::B2a),
        Protocol::RowMaxTree => deal_row_max(deal, &s[0], n.gmw, n.bits)?,
        Protocol::SignSelect => {
            let same = xs.len() == 1;
            let m = deal.sign_select(count(0), n.bits, same)?;
            wrap(m, NodeMaterial::SignSelect)
        }
        Protocol::FaithfulTrunc => {
            let Op::FaithfulTrunc { bits } = *n.op else {
                unreachable!("the faithful_trunc protocol computes faithful_trunc nodes")
            };
            wrap(deal.faithful_trunc(count(0), bits)?, NodeMaterial::Trunc)
        }
        Protocol::StochasticTrunc => {
            let Op::StochasticTrunc { bits } = *n.op else {
                unreachable!("the stochastic_trunc protocol computes stochastic_trunc nodes")
            };
            let m = match n.readers {
                0 => deal.stochastic_trunc(count(0), bits, n.bits)?,
                k => deal.stochastic_trunc_opened(n.id, k, count(0), bits, n.bits)?,
            };
            wrap(m, NodeMaterial::StochasticTrunc)
        }
        Protocol::Lut => {
            let Op::Lut { bits, .. } = *n.op else {
                unreachable!("the lut protocol computes lut nodes")
            };
            wrap(deal.lut(count(0), bits)?, NodeMaterial::Lut)
        }
        Protocol::BlockFixedMatMul => {
            let Op::BlockMatMul { block, .. } = *n.op else {
                unreachable!("block_fixed_matmul computes block_matmul nodes")
            };
            let m = deal.block_matmul(xs[1], s[0][0], block as usize)?;
            wrap(m, NodeMaterial::BlockMatMul)
        }
        _ => [None, None],
    })
}

/// The product a `cache_matmul` node computes.
fn cache_product(op: &Op) -> Option<cache_matmul::CacheProduct> {
    match *op {
        Op::CacheMatMul {
            slot,
            transpose,
            groups,
        } => Some(cache_matmul::CacheProduct {
            slot,
            transpose,
            groups,
        }),
        _ => None,
    }
}

fn wrap<T>(m: Pair<T>, f: impl Fn(T) -> NodeMaterial) -> Pair<NodeMaterial> {
    m.map(|m| m.map(&f))
}

/// Per level of a row maximum over `x`: the sign-select keys of width `bits` (FSS), or the
/// GMW comparison's triples and the select's material.
fn deal_row_max<D: Deal + ?Sized>(
    deal: &mut D,
    x: &[usize],
    gmw: bool,
    bits: u32,
) -> Result<Pair<NodeMaterial>, MaterialError> {
    let rows: usize = x[..x.len() - 1].iter().product();
    let mut k = x[x.len() - 1];
    let mut levels = [Vec::new(), Vec::new()];
    while k > 1 {
        let pairs = [rows, k / 2];
        let level: Pair<LevelMaterial> = if gmw {
            let d = deal.gmw_drelu(rows * (k / 2))?;
            let m = deal.bit_mux(&pairs, &pairs)?;
            zip_pair(d, m, LevelMaterial::Gmw)
        } else {
            let d = deal.sign_select(rows * (k / 2), bits, true)?;
            wrap_level(d)
        };
        for (p, l) in level.into_iter().enumerate() {
            if let Some(l) = l {
                levels[p].push(l);
            }
        }
        k = k.div_ceil(2);
    }
    let [l0, l1] = levels;
    let wrap = |l: Vec<_>| (!l.is_empty()).then_some(NodeMaterial::RowMax(l));
    Ok([wrap(l0), wrap(l1)])
}

fn wrap_level(d: Pair<sign_select::SignSelectMaterial>) -> Pair<LevelMaterial> {
    d.map(|m| m.map(LevelMaterial::Fss))
}

/// Combines two pairs party by party.
fn zip_pair<A, B, T>(a: Pair<A>, b: Pair<B>, f: impl Fn(A, B) -> T) -> Pair<T> {
    let [a0, a1] = a;
    let [b0, b1] = b;
    [
        a0.zip(b0).map(|(a, b)| f(a, b)),
        a1.zip(b1).map(|(a, b)| f(a, b)),
    ]
}

/// A communicating node between its start and its finish.
pub enum Pending {
    /// A Beaver product (mul, matmul, mux).
    Beaver(beaver_mul::State),
    /// A square.
    Square(square::State),
    /// A product with a fixed operand.
    Fixed(fixed::State),
    /// An FSS DReLU.
    Drelu(drelu::State),
    /// A reveal or an opening.
    Reveal(reveal::State),
    /// A GMW DReLU between its rounds.
    Gmw(gmw::State),
    /// A B2A conversion.
    B2a(b2a::State),
    /// A select with XOR-shared bits.
    BitMux(bit_mux::State),
    /// A row maximum between its rounds.
    RowMax(Box<row_max::State>),
    /// A block-sparse product with its fixed operand.
    Block(block_matmul::State),
    /// A table lookup between its rounds.
    Lut(Box<lut::State>),
    /// A product with the KV cache.
    Cache(Box<cache_matmul::State>),
    /// A head-masked product with the KV cache.
    CacheMasked(Box<cache_masked::State>),
    /// A sign select between its rounds.
    SignSelect(Box<sign_select::State>),
    /// A faithful truncation.
    Trunc(Box<trunc_fss::State>),
    /// A stochastic truncation.
    StochasticTrunc(Box<trunc_stochastic::State>),
    /// A comparison that reads its truncation's opening, waiting for it (nothing sent).
    DreluOpened(drelu::DreluMaterial),
}

/// The length in bytes of the peer's part of a round for a node in state `st`, given this
/// party's part (`mine`): equal, except for products with a one-sided fixed operand, where
/// one party sends and the other does not (`width` bits per element of its varying operand).
pub fn peer_len(st: &Pending, mine: usize, width: u32) -> usize {
    match st {
        Pending::Fixed(s) => fixed::peer_len(s, mine, width),
        _ => mine,
    }
}

/// What a node's round ended with: its value, or its next state and message.
pub enum Finished {
    /// The node's value (`None`: a reveal to the other party).
    Value(Option<ArrayD<u64>>),
    /// The next round's state and message.
    Next(Box<Pending>, Vec<u8>),
    /// The value of a product with the KV cache, and the cache slot's opened rows after
    /// the call (for the party to keep for later calls).
    Opened {
        /// This party's share of the product.
        value: ArrayD<u64>,
        /// The cache slot.
        slot: u32,
        /// The slot's opened rows `[h, past + seq, k]`.
        opened: ArrayD<u64>,
    },
    /// The value of a stochastic truncation with its output's free opening, which other
    /// nodes read ([`trunc_stochastic::finish_opened`]).
    WithOpening(trunc_stochastic::Opened),
    /// The value of a head-masked product with the KV cache, the slot's rows after the
    /// call (some may wait for their group) and what its refill did.
    Refilled {
        /// This party's share of the product.
        value: ArrayD<u64>,
        /// The cache slot.
        slot: u32,
        /// The slot's rows.
        kept: Box<cache_masked::Kept>,
        /// The refill's counts.
        refill: cache_masked::Refill,
    },
}

/// A communicating node as the interpreter holds it: its op and protocol, and this party's
/// view of its operands.
pub trait Node {
    /// The interpreter's error.
    type Error: From<MessageError>;

    /// This party.
    fn party(&self) -> PartyId;

    /// The node's protocol.
    fn protocol(&self) -> Protocol;

    /// The node's op.
    fn op(&self) -> &Op;

    /// An error about this node.
    fn fail(&self, message: String) -> Self::Error;

    /// This party's share of operand `k`.
    ///
    /// # Errors
    /// If it holds none.
    fn share(&self, k: usize) -> Result<&Share, Self::Error>;

    /// Operand `k` as this party reveals it: its share, or zeros where it holds nothing.
    ///
    /// # Errors
    /// If the operand cannot be revealed.
    fn revealed(&self, k: usize) -> Result<Cow<'_, Share>, Self::Error>;

    /// The public block mask at operand `k`, as bits `[seq, blocks]`.
    ///
    /// # Errors
    /// If it is not open or not 2-D.
    fn block_mask(&self, k: usize) -> Result<Array2<bool>, Self::Error>;

    /// Which operand of a product with a fixed operand is the fixed one.
    fn fixed_index(&self) -> Option<usize>;

    /// The fixed operand after its setup.
    ///
    /// # Errors
    /// If it was not set up.
    fn fixed_operand(&self) -> Result<&FixedOperand, Self::Error>;

    /// The rows of cache `slot` opened by earlier calls, if it was written.
    fn opened_rows(&self, slot: u32) -> Option<&ArrayD<u64>>;

    /// The rows of cache `slot` as a head-masked product keeps them, if it was written.
    fn slot_rows(&self, slot: u32) -> Option<cache_masked::Prior<'_>>;

    /// Whether head-masked cache products refill missed rows naively (an exchange per
    /// miss request) rather than merged into their round.
    fn naive_refill(&self) -> bool;

    /// The fixed-point scale of the node's value.
    fn scale(&self) -> u32;

    /// The fixed-point scale of operand `k`.
    fn operand_scale(&self, k: usize) -> u32;

    /// The number of operands.
    fn operand_count(&self) -> usize;

    /// The node's width ([`comet_ir::graph::Node::cmp_width`], 64 when unset): for a
    /// product that opens masked operands, the width its openings are packed at.
    fn width(&self) -> u32;

    /// Whether a comparison reads this node's opening (a stochastic truncation's:
    /// [`Protocol::DreluOpened`]).
    fn opening_read(&self) -> bool {
        false
    }

    /// The opening operand `k` (a stochastic truncation) left for this node.
    ///
    /// # Errors
    /// If there is none.
    fn opening(&self, k: usize) -> Result<OpeningView<'_>, Self::Error> {
        Err(self.fail(format!("operand {k} left no opening to read")))
    }

    /// Whether a sign select of x by its own sign or a row maximum opens `x + r` at its
    /// comparison width ([`comet_ir::graph::Node::open_at_cmp_width`]).
    fn opens_at_cmp_width(&self) -> bool {
        false
    }
}

/// `v mod 2^w`.
fn low_bits(v: u64, w: u32) -> u64 {
    match w {
        64 => v,
        w => v & ((1 << w) - 1),
    }
}

/// A comparison's thresholds as ring values at its operand's scale.
fn ring_thresholds<N: Node>(n: &N, thresholds: &[f64]) -> Vec<u64> {
    (thresholds.iter())
        .map(|t| crate::ring::encode(*t, n.operand_scale(0)))
        .collect()
}

/// A stochastic truncation's opening as a node that reads it sees it.
#[derive(Debug)]
pub struct OpeningView<'a> {
    /// `t + r_h mod 2^(m−s)` per element (public).
    pub opened: &'a [u64],
    /// This party's share of `r_h` per element.
    pub h: &'a [u64],
    /// The truncation's shape.
    pub shape: Vec<usize>,
}

/// This party's XOR share of bits at operand `k`.
fn bits<N: Node>(n: &N, k: usize) -> Result<XorShare, N::Error> {
    n.share(k).map(|s| XorShare(s.0.clone()))
}

/// Starts node `n` with its material (none for a reveal or an opening): its state and this
/// party's message of its first round.
///
/// # Errors
/// If an operand is not held, or the material is of another protocol.
pub fn start<N: Node>(n: &N, m: Option<NodeMaterial>) -> Result<(Pending, Vec<u8>), N::Error> {
    let p = n.party();
    match n.protocol() {
        Protocol::Reveal => return start_reveal(n),
        Protocol::Open => return Ok(arith(Pending::Reveal, reveal::start(p, None, n.share(0)?))),
        _ => {}
    }
    let m = m.ok_or_else(|| n.fail("no dealer material".into()))?;
    start_with(n, m)
}

fn arith<S>(f: impl FnOnce(S) -> Pending, started: (S, Vec<u64>)) -> (Pending, Vec<u8>) {
    arith_at(f, started, 64)
}

/// [`arith`] for a product whose openings are taken mod 2^`width` (pass
/// `narrow-openings`): each value packed at `width` bits.
fn arith_at<S>(
    f: impl FnOnce(S) -> Pending,
    (st, msg): (S, Vec<u64>),
    width: u32,
) -> (Pending, Vec<u8>) {
    (f(st), pack_at(&msg, width))
}

/// `msg`'s values mod 2^`width`, `width` bits each ([`pack`] at 64).
fn pack_at(msg: &[u64], width: u32) -> Vec<u8> {
    match width {
        64 => pack(msg),
        w => pack_bits(msg, w),
    }
}

/// [`pack_at`] for a message of two parts (`parts[0]` values, then the rest), each packed
/// on its own, so that each is ⌈n·width/8⌉ bytes as the cost model counts it.
fn pack_parts(msg: &[u64], parts: [usize; 2], width: u32) -> Vec<u8> {
    let (a, b) = msg.split_at(parts[0].min(msg.len()));
    let mut out = pack_at(a, width);
    out.extend(pack_at(b, width));
    out
}

/// The inverse of [`pack_parts`] for a peer's message of the same parts.
fn unpack_parts(peer: &[u8], parts: [usize; 2], width: u32) -> Result<Vec<u64>, MessageError> {
    let first = match width {
        64 => parts[0] * 8,
        w => packed_len(parts[0], w),
    };
    if peer.len() < first {
        return Err(MessageError::Length {
            expected: first,
            actual: peer.len(),
        });
    }
    let (a, b) = peer.split_at(first);
    let mut out = unpack_at(a, width)?;
    out.extend(unpack_at(b, width)?);
    Ok(out)
}

/// The inverse of [`pack_at`]: as many values as the bytes hold. At a width w ≥ 8 the
/// count is ⌊8·bytes/w⌋ (⌈n·w/8⌉ bytes hold n values and less than one more), and
/// [`unpack_bits`] refuses a length or padding that does not match it.
fn unpack_at(peer: &[u8], width: u32) -> Result<Vec<u64>, MessageError> {
    if width == 64 {
        return unpack(peer);
    }
    let n = peer.len() * 8 / width.max(8) as usize;
    unpack_bits(peer, n, width)
}

fn start_reveal<N: Node>(n: &N) -> Result<(Pending, Vec<u8>), N::Error> {
    let Op::Reveal { to } = *n.op() else {
        unreachable!("the reveal protocol computes reveal nodes")
    };
    let x = n.revealed(0)?;
    let started = reveal::start(n.party(), Some(to.index() as PartyId), &x);
    Ok(arith(Pending::Reveal, started))
}

fn start_with<N: Node>(n: &N, m: NodeMaterial) -> Result<(Pending, Vec<u8>), N::Error> {
    let p = n.party();
    let bad = || n.fail("dealer material of another protocol".into());
    Ok(match (n.protocol(), m) {
        (Protocol::BeaverMul, NodeMaterial::Triple(m)) => {
            let (st, msg) = beaver_mul::start(p, n.share(0)?, n.share(1)?, m);
            let bytes = pack_parts(&msg, st.parts(), n.width());
            (Pending::Beaver(st), bytes)
        }
        (Protocol::Mux, NodeMaterial::BitMux(m)) => {
            let (st, msg) = mux::start_at(p, n.share(0)?, n.share(1)?, m, n.width());
            (Pending::BitMux(st), msg)
        }
        (Protocol::MuxOpened, NodeMaterial::BitMux(m)) => {
            let o = n.opening(1)?;
            let w = n.width();
            let e: Vec<u64> = o.opened.iter().map(|&v| low_bits(v, w)).collect();
            let (e, h) = (
                ring_ops::from_flat(&o.shape, &e),
                ring_ops::from_flat(&o.shape, o.h),
            );
            let (st, msg) = mux::start_opened(p, n.share(0)?, e, h, m, w);
            (Pending::BitMux(st), msg)
        }
        (Protocol::BeaverMatMul, NodeMaterial::Triple(m)) => {
            let (st, msg) = beaver_matmul::start(p, n.share(0)?, n.share(1)?, m);
            let bytes = pack_parts(&msg, st.parts(), n.width());
            (Pending::Beaver(st), bytes)
        }
        (Protocol::Square, NodeMaterial::Square(m)) => {
            arith_at(Pending::Square, square::start(p, n.share(0)?, m), n.width())
        }
        (proto @ (Protocol::FixedMul | Protocol::FixedMatMul), NodeMaterial::Fixed(m)) => {
            let k = n.fixed_index().ok_or_else(bad)?;
            let x = n.share(1 - k)?;
            let started = if proto == Protocol::FixedMatMul {
                fixed::matmul_start(p, x, m)
            } else {
                fixed::mul_start(p, x, m)
            };
            arith_at(Pending::Fixed, started, n.width())
        }
        (Protocol::DreluFss, NodeMaterial::Drelu(m)) => {
            let (st, msg) = drelu::start(p, n.share(0)?, m);
            (Pending::Drelu(st), msg)
        }
        // nothing to send: the truncation's opening, in the same round, is its input
        (Protocol::DreluOpened, NodeMaterial::Drelu(m)) => (Pending::DreluOpened(m), Vec::new()),
        (Protocol::DreluGmw, NodeMaterial::GmwDrelu(m)) => {
            let (st, msg) = gmw::start(p, n.share(0)?, m);
            (Pending::Gmw(st), msg)
        }
        (Protocol::B2A, NodeMaterial::B2a(m)) => {
            let (st, msg) = b2a::start(p, &bits(n, 0)?, m);
            (Pending::B2a(st), msg)
        }
        (Protocol::RowMaxTree, NodeMaterial::RowMax(levels)) => {
            let (st, msg) = row_max::start_at(p, n.share(0)?, levels, n.opens_at_cmp_width());
            (Pending::RowMax(Box::new(st)), msg)
        }
        (Protocol::BlockFixedMatMul, NodeMaterial::BlockMatMul(m)) => start_block(n, m)?,
        (Protocol::Lut, NodeMaterial::Lut(m)) => start_lut(n, m)?,
        (Protocol::CacheMatMul, NodeMaterial::Cache(m)) => start_cache(n, m)?,
        (Protocol::SignSelect, NodeMaterial::SignSelect(m)) => {
            let y = match n.operand_count() {
                1 => None,
                _ => Some(n.share(1)?),
            };
            if m.same() != y.is_none() {
                return Err(bad());
            }
            let (st, msg) = sign_select::start_at(p, n.share(0)?, y, m, n.opens_at_cmp_width());
            (Pending::SignSelect(Box::new(st)), msg)
        }
        (Protocol::FaithfulTrunc, NodeMaterial::Trunc(m)) => {
            let (st, msg) = trunc_fss::start(p, n.share(0)?, m);
            (Pending::Trunc(Box::new(st)), msg)
        }
        (Protocol::StochasticTrunc, NodeMaterial::StochasticTrunc(m)) => {
            let (st, msg) = trunc_stochastic::start(p, n.share(0)?, m);
            (Pending::StochasticTrunc(Box::new(st)), msg)
        }
        _ => return Err(bad()),
    })
}

fn start_block<N: Node>(
    n: &N,
    m: block_matmul::BlockMatMulMaterial,
) -> Result<(Pending, Vec<u8>), N::Error> {
    let Op::BlockMatMul { block, .. } = *n.op() else {
        return Err(n.fail("dealer material of another protocol".into()));
    };
    let h = n.share(0)?;
    let mask = n.block_mask(2)?;
    let started = block_matmul::start(n.party(), h, mask.view(), block as usize, m);
    Ok(arith_at(Pending::Block, started, n.width()))
}

/// The naive KV refill of a head-masked cache product that just started (`st`): each of
/// its miss requests in an exchange of its own, before the product's round, packed at the
/// node's width (nothing for another node, or for the merged refill).
///
/// # Errors
/// If an exchange fails or the peer's rows do not match.
pub fn refill_naive<N: Node, F>(n: &N, st: &mut Pending, mut exchange: F) -> Result<(), N::Error>
where
    F: FnMut(&[u8]) -> Result<Vec<u8>, N::Error>,
{
    let Pending::CacheMasked(s) = st else {
        return Ok(());
    };
    let w = n.width();
    let mut peers = Vec::new();
    for msg in s.refill_messages() {
        let peer = exchange(&pack_at(&msg, w))?;
        peers.push(unpack_at(&peer, w)?);
    }
    s.accept_refills(&peers)?;
    Ok(())
}

/// Starts a product with the KV cache, with the slot's rows opened by earlier calls.
fn start_cache<N: Node>(
    n: &N,
    m: cache_matmul::CacheMatMulMaterial,
) -> Result<(Pending, Vec<u8>), N::Error> {
    let op = cache_product(n.op()).ok_or_else(|| n.fail("not a cache product".into()))?;
    let xs = [n.share(0)?, n.share(1)?, n.share(2)?];
    if n.operand_count() == 4 {
        let mask = n.block_mask(3)?;
        let prior = n.slot_rows(op.slot);
        let started =
            cache_masked::start(n.party(), op, xs, mask.view(), prior, m, n.naive_refill());
        let (st, msg) = started.map_err(|e| n.fail(e))?;
        let bytes = pack_parts(&msg, st.parts(), n.width());
        return Ok((Pending::CacheMasked(Box::new(st)), bytes));
    }
    let started = cache_matmul::start(n.party(), op, xs, n.opened_rows(op.slot), m);
    let (st, msg) = started.map_err(|e| n.fail(e))?;
    let bytes = pack_parts(&msg, st.parts(), n.width());
    Ok((Pending::Cache(Box::new(st)), bytes))
}

/// Starts a table lookup: its table at the node's scale, its index read from operand 0 at
/// the operand's scale.
fn start_lut<N: Node>(n: &N, m: lut::LutMaterial) -> Result<(Pending, Vec<u8>), N::Error> {
    let Op::Lut { func, bits, frac } = *n.op() else {
        return Err(n.fail("dealer material of another protocol".into()));
    };
    let in_scale = n.operand_scale(0);
    if frac > in_scale || bits + in_scale - frac > 64 || m.bits() != bits {
        return Err(n.fail(format!(
            "a {bits}-bit table index of {frac} fractional bits cannot be read from an \
             input at scale {in_scale} with {}-bit keys",
            m.bits()
        )));
    }
    let table = lut::Table::new(func, bits, frac, n.scale());
    let (st, msg) = lut::start_at(n.party(), n.share(0)?, in_scale, table, m, n.width());
    Ok((Pending::Lut(Box::new(st)), msg))
}

/// Starts a node of a sparse FFN's masked region on its active entries `idx` only:
/// `xs` are its operands gathered there, and its (dense) material is gathered likewise.
/// The entries come in active (token, block) pairs of `block` entries each; a stochastic
/// truncation packs each pair's message on its own (its cost per pair is a constant).
///
/// # Errors
/// If the protocol does not run on active entries, or the material is of another one.
pub fn start_gathered(
    party: PartyId,
    protocol: Protocol,
    xs: &[Share],
    m: NodeMaterial,
    idx: &[usize],
    block: usize,
) -> Result<(Pending, Vec<u8>), String> {
    Ok(match (protocol, m) {
        (Protocol::DreluFss, NodeMaterial::Drelu(t)) => {
            let (st, msg) = drelu::start(party, &xs[0], t.gather(idx));
            (Pending::Drelu(st), msg)
        }
        (Protocol::Mux, NodeMaterial::BitMux(t)) => {
            let (st, msg) = mux::start_gathered(party, &xs[0], &xs[1], t.gather(idx));
            (Pending::BitMux(st), msg)
        }
        (Protocol::BeaverMul, NodeMaterial::Triple(t)) => arith(
            Pending::Beaver,
            beaver_mul::start(party, &xs[0], &xs[1], t.gather(idx)),
        ),
        (Protocol::Square, NodeMaterial::Square(t)) => {
            arith(Pending::Square, square::start(party, &xs[0], t.gather(idx)))
        }
        (Protocol::StochasticTrunc, NodeMaterial::StochasticTrunc(m)) => {
            let (st, msg) = trunc_stochastic::start_in_blocks(party, &xs[0], m.gather(idx), block);
            (Pending::StochasticTrunc(Box::new(st)), msg)
        }
        (Protocol::FaithfulTrunc, NodeMaterial::Trunc(m)) => {
            let (st, msg) = trunc_fss::start(party, &xs[0], m.gather(idx));
            (Pending::Trunc(Box::new(st)), msg)
        }
        (Protocol::SignSelect, NodeMaterial::SignSelect(m)) => {
            let y = match xs.len() {
                1 => None,
                _ => Some(&xs[1]),
            };
            if m.same() != y.is_none() {
                return Err(format!(
                    "`sign_select` keys dealt for y {} x, the node has {} operands",
                    if m.same() { "=" } else { "≠" },
                    xs.len()
                ));
            }
            let (st, msg) = sign_select::start(party, &xs[0], y, m.gather(idx));
            (Pending::SignSelect(Box::new(st)), msg)
        }
        (protocol, _) => {
            return Err(format!(
                "`{protocol}` does not run on the active blocks of a sparse FFN"
            ));
        }
    })
}

/// Ends a round of node `n` with the peer's part: its value, or its next round.
///
/// # Errors
/// If the peer's part has the wrong size, or a fixed operand was not set up.
pub fn finish<N: Node>(n: &N, st: Pending, peer: &[u8]) -> Result<Finished, N::Error> {
    let value = |s: Share| Finished::Value(Some(s.0));
    Ok(match st {
        Pending::Beaver(s) => {
            let peer = unpack_parts(peer, s.parts(), n.width())?;
            value(beaver_mul::finish(s, &peer)?)
        }
        Pending::Square(s) => value(square::finish(s, &unpack_at(peer, n.width())?)?),
        Pending::Drelu(s) => match n.op() {
            Op::Compare { thresholds } => {
                value(drelu::finish_at(s, peer, &ring_thresholds(n, thresholds))?)
            }
            _ => value(drelu::finish(s, peer)?),
        },
        Pending::Fixed(s) => {
            let peer = unpack_at(peer, n.width())?;
            value(fixed::finish(s, n.fixed_operand()?, &peer)?)
        }
        Pending::Reveal(s) => Finished::Value(reveal::finish(s, &unpack(peer)?)?),
        Pending::BitMux(s) => value(bit_mux::finish(s, peer)?),
        Pending::B2a(s) => {
            // the bit as the fixed-point 0 or 1 of the node's scale
            let one = 1u64.checked_shl(n.scale()).unwrap_or(0);
            value(Share(b2a::finish(s, peer)?.0.mapv(|v| v.wrapping_mul(one))))
        }
        Pending::Gmw(s) => match gmw::step(s, peer)? {
            Step::Next(s, msg) => Finished::Next(Box::new(Pending::Gmw(s)), msg),
            Step::Done(bits) => Finished::Value(Some(bits.0)),
        },
        Pending::RowMax(s) => match row_max::step(*s, peer)? {
            Step::Next(s, msg) => Finished::Next(Box::new(Pending::RowMax(Box::new(s))), msg),
            Step::Done(max) => value(max),
        },
        Pending::Block(s) => {
            let peer = unpack_at(peer, n.width())?;
            value(block_matmul::finish(s, n.fixed_operand()?, &peer)?)
        }
        Pending::Cache(s) => {
            let slot = s.slot();
            let peer = unpack_parts(peer, s.parts(), n.width())?;
            let (z, opened) = cache_matmul::finish(*s, &peer)?;
            Finished::Opened {
                value: z.0,
                slot,
                opened,
            }
        }
        Pending::CacheMasked(s) => {
            let (slot, k) = (s.slot(), s.row_len() as u64);
            let peer = unpack_parts(peer, s.parts(), n.width())?;
            let (z, kept, mut refill) = cache_masked::finish(*s, &peer)?;
            refill.missed_bits = 2 * refill.missed * k * u64::from(n.width());
            Finished::Refilled {
                value: z.0,
                slot,
                kept: Box::new(kept),
                refill,
            }
        }
        Pending::Lut(s) => match lut::step(*s, peer)? {
            Step::Next(s, msg) => Finished::Next(Box::new(Pending::Lut(Box::new(s))), msg),
            Step::Done(v) => value(v),
        },
        Pending::SignSelect(s) => match sign_select::step(*s, peer)? {
            Step::Next(s, msg) => Finished::Next(Box::new(Pending::SignSelect(Box::new(s))), msg),
            Step::Done(v) => value(v),
        },
        Pending::Trunc(s) => value(trunc_fss::finish(*s, peer)?),
        Pending::StochasticTrunc(s) if n.opening_read() => {
            Finished::WithOpening(trunc_stochastic::finish_opened(*s, peer)?)
        }
        Pending::StochasticTrunc(s) => value(trunc_stochastic::finish(*s, peer)?),
        Pending::DreluOpened(m) => {
            if !peer.is_empty() {
                return Err(MessageError::Length {
                    expected: 0,
                    actual: peer.len(),
                }
                .into());
            }
            let Op::Compare { thresholds } = n.op() else {
                return Err(n.fail("only a `compare` reads a truncation's opening".into()));
            };
            let ts = ring_thresholds(n, thresholds);
            let o = n.opening(0)?;
            let w = n.width();
            let x_hat: Vec<u64> = o.opened.iter().map(|&v| low_bits(v, w)).collect();
            value(drelu::finish_opened(n.party(), &m, &x_hat, &o.shape, &ts)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two parts packed apart at any width from 8 bits come back as sent, mod 2^w, and
    /// each part takes ⌈n·w/8⌉ bytes.
    #[test]
    fn parts_round_trip_at_any_width() {
        let msg: Vec<u64> = (0..8u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for w in [8u32, 13, 37, 63, 64] {
            let bytes = pack_parts(&msg, [5, 3], w);
            let len = |n: usize| (n * w as usize).div_ceil(8);
            assert_eq!(bytes.len(), len(5) + len(3), "width {w}");
            let back = unpack_parts(&bytes, [5, 3], w).unwrap();
            let mask = if w == 64 { u64::MAX } else { (1 << w) - 1 };
            let want: Vec<u64> = msg.iter().map(|v| v & mask).collect();
            assert_eq!(back, want, "width {w}");
        }
    }

    /// A peer's message a byte short, a byte long, or with bits set in its padding is a
    /// length error, never a wrong value.
    #[test]
    fn a_malformed_narrow_message_is_refused() {
        let msg = vec![u64::MAX; 5];
        let bytes = pack_at(&msg, 13); // 65 bits: 9 bytes, 7 bits of padding
        assert_eq!(bytes.len(), 9);
        assert_eq!(unpack_at(&bytes, 13).unwrap().len(), 5);
        // a byte more holds a sixth value: the count the protocol's length check refuses
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(unpack_at(&long, 13).unwrap().len(), 6);
        // at 37 bits a byte more holds no further value: refused here
        let one = pack_at(&[1], 37);
        assert!(unpack_at(&[one.as_slice(), &[0]].concat(), 37).is_err());
        let mut dirty = bytes.clone();
        *dirty.last_mut().unwrap() |= 0x80;
        assert!(matches!(
            unpack_at(&dirty, 13),
            Err(MessageError::Length { .. })
        ));
        let parts = pack_parts(&msg, [2, 3], 13);
        assert!(unpack_parts(&parts[..parts.len() - 1], [2, 3], 13).is_err());
        assert!(unpack_parts(&parts[..2], [2, 3], 13).is_err());
    }
}
