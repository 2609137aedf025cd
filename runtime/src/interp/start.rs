//! The rounds of a call: every communicating node active in a round starts (or takes its
//! next step), all messages travel in one exchange, and each node finishes its step. The
//! one dispatch from a node's protocol (as the plan's cost annotations name it) and its
//! material to the protocol's `start` and `finish`.

use comet_ir::protocol::Protocol;
use comet_ir::{Domain, Elem, Op};
use ndarray::{ArrayD, IxDyn};

use super::InterpError;
use super::material::{NodeMaterial, shape_of};
use super::party::Run;
use super::plan::Pos;
use crate::protocols::driver::round_bytes;
use crate::protocols::{
    MessageError, PartyId, Share, Step, XorShare, b2a, beaver_matmul, beaver_mul, bit_mux,
    block_matmul, drelu, fixed as fixed_proto, gmw, mux, pack, reveal, row_max, square, unpack,
};
use crate::ring::Ring;
use crate::transport::Channel;

/// A communicating node between its start and its finish.
pub(super) enum Pending {
    Beaver(beaver_mul::State),
    Square(square::State),
    Fixed(fixed_proto::State, Pos),
    Drelu(drelu::State),
    Reveal(reveal::State),
    /// A GMW DReLU between its rounds.
    Gmw(gmw::State),
    B2a(b2a::State),
    BitMux(bit_mux::State),
    /// A row maximum between its rounds.
    RowMax(Box<row_max::State>),
    /// A block-sparse product with its fixed operand.
    Block(block_matmul::State, Pos),
}

/// What a node's round ended with: its value, or its next state and message.
enum Finished {
    Value(Option<ArrayD<Ring>>),
    Next(Box<Pending>, Vec<u8>),
}

impl Run<'_> {
    /// Starts every node active in round `r` (or takes its next message, for a node in its
    /// later rounds), makes one exchange, and ends the round of each.
    pub(super) fn round<C: Channel + ?Sized>(
        &mut self,
        r: u64,
        ch: &mut C,
    ) -> Result<(), InterpError> {
        let plan = self.plan;
        let active = plan.round(r);
        if active.is_empty() {
            return Ok(());
        }
        let mut pending = Vec::with_capacity(active.len());
        let mut msg = Vec::new();
        for &i in active {
            let (st, part) = if plan.starts_in(i, r) {
                let started = self.start(i)?;
                self.release_reads(i);
                started
            } else {
                (self.in_flight.remove(&i))
                    .ok_or_else(|| self.fail(i, format!("no state in its round {r}")))?
            };
            pending.push((i, st, part.len()));
            msg.extend(part);
        }
        let peer = round_bytes(ch, &msg)?;
        drop(msg);
        // the peer's parts have the sizes its own starts produced; both parties' sizes are
        // equal except for one-way reveals, whose receiver part is split below
        let mut at = 0;
        for (i, st, mine) in pending {
            let n = self.peer_len(i, mine);
            let part = peer.get(at..at + n).ok_or(MessageError::Length {
                expected: at + n,
                actual: peer.len(),
            })?;
            at += n;
            match self.finish(i, st, part)? {
                Finished::Value(v) => {
                    let v = self.scatter_back(i, v);
                    self.values[i as usize] = match v {
                        Some(v) => super::party::Slot::Held(std::sync::Arc::new(Share(v))),
                        None => super::party::Slot::Absent,
                    };
                    self.count_active(i);
                }
                Finished::Next(st, next) => {
                    self.in_flight.insert(i, (*st, next));
                }
            }
        }
        if at != peer.len() {
            return Err(MessageError::Length {
                expected: at,
                actual: peer.len(),
            }
            .into());
        }
        Ok(())
    }

    /// The length in bytes of the peer's part for the node at `i`, given this party's: the
    /// same, except for a one-way reveal (the receiver gets the sender's share and sends
    /// nothing).
    fn peer_len(&self, i: Pos, mine: usize) -> usize {
        let id = self.plan.id(i);
        match self.program.graph.node(id).op {
            Op::Reveal { to } if to.index() == usize::from(self.party) => {
                8 * shape_of(self.program, id, self.env)
                    .iter()
                    .product::<usize>()
            }
            Op::Reveal { .. } => 0,
            _ => mine,
        }
    }

    /// This party's share of operand `k` of the node at `i`.
    fn share_of(&self, i: Pos, k: usize) -> Result<&Share, InterpError> {
        Ok(self.held(i, self.plan.operands(i)[k])?.as_ref())
    }

    /// This party's XOR share of bits, operand `k` of the node at `i` (a GMW comparison's
    /// output).
    fn bits_of(&self, i: Pos, k: usize) -> Result<XorShare, InterpError> {
        self.share_of(i, k).map(|s| XorShare(s.0.clone()))
    }

    fn start_reveal(&self, i: Pos) -> Result<(Pending, Vec<u8>), InterpError> {
        let id = self.plan.id(i);
        let x = self.plan.operands(i)[0];
        let Op::Reveal { to } = self.program.graph.node(id).op else {
            unreachable!("the reveal protocol computes reveal nodes")
        };
        let x_node = self.program.graph.node(self.plan.id(x));
        if self.plan.gmw && x_node.ty.domain == Domain::Bool {
            return Err(self.fail(i, "revealing XOR-shared bits is not supported".into()));
        }
        let to = to.index() as PartyId;
        let (st, msg) = match self.value(x) {
            Some(v) => reveal::start(self.party, Some(to), v),
            // a private value revealed to its non-owner: the receiver adds zeros
            None => {
                let shape = shape_of(self.program, self.plan.id(x), self.env);
                reveal::start(self.party, Some(to), &Share(ArrayD::zeros(IxDyn(&shape))))
            }
        };
        Ok((Pending::Reveal(st), pack(&msg)))
    }

    fn start(&mut self, i: Pos) -> Result<(Pending, Vec<u8>), InterpError> {
        let p = self.party;
        let proto = self.plan.protocol(i);
        let material = self.material.node(self.plan.id(i))?;
        if proto == Protocol::Reveal {
            return self.start_reveal(i);
        }
        if proto == Protocol::Open {
            let (st, msg) = reveal::start(p, None, self.share_of(i, 0)?);
            return Ok((Pending::Reveal(st), pack(&msg)));
        }
        let material = material.ok_or_else(|| self.fail(i, "no dealer material".into()))?;
        if let Some(m) = self.masked.get(&i).copied() {
            return self.start_masked(i, m, proto, material);
        }
        let bad = || self.fail(i, "dealer material of another protocol".into());
        let arith = |(st, msg): (Pending, Vec<u64>)| (st, pack(&msg));
        Ok(match (proto, material) {
            (Protocol::BeaverMul, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(i, 0)?, self.share_of(i, 1)?);
                let (st, msg) = beaver_mul::start(p, a, b, m);
                arith((Pending::Beaver(st), msg))
            }
            (Protocol::Mux, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(i, 0)?, self.share_of(i, 1)?);
                let (st, msg) = mux::start(p, a, b, m);
                arith((Pending::Beaver(st), msg))
            }
            (Protocol::Mux, NodeMaterial::BitMux(m)) => {
                let (b, x) = (self.bits_of(i, 0)?, self.share_of(i, 1)?);
                let (st, msg) = bit_mux::start(p, &b, x, m);
                (Pending::BitMux(st), msg)
            }
            (Protocol::BeaverMatMul, NodeMaterial::Triple(m)) => {
                let (a, b) = (self.share_of(i, 0)?, self.share_of(i, 1)?);
                let (st, msg) = beaver_matmul::start(p, a, b, m);
                arith((Pending::Beaver(st), msg))
            }
            (Protocol::Square, NodeMaterial::Square(m)) => {
                let (st, msg) = square::start(p, self.share_of(i, 0)?, m);
                arith((Pending::Square(st), msg))
            }
            (Protocol::FixedMul | Protocol::FixedMatMul, NodeMaterial::Fixed(m)) => {
                let w = self.plan.fixed_operand(i).ok_or_else(bad)?;
                let k = usize::from(self.plan.operands(i)[1] == w);
                let x = self.share_of(i, 1 - k)?;
                let (st, msg) = if proto == Protocol::FixedMatMul {
                    fixed_proto::matmul_start(p, x, m)
                } else {
                    fixed_proto::mul_start(p, x, m)
                };
                arith((Pending::Fixed(st, w), msg))
            }
            (Protocol::DreluFss, NodeMaterial::Drelu(m)) => {
                let (st, msg) = drelu::start(p, self.share_of(i, 0)?, m);
                arith((Pending::Drelu(st), msg))
            }
            (Protocol::DreluGmw, NodeMaterial::GmwDrelu(m)) => {
                let (st, msg) = gmw::start(p, self.share_of(i, 0)?, m);
                (Pending::Gmw(st), msg)
            }
            (Protocol::B2A, NodeMaterial::B2a(m)) => {
                let (st, msg) = b2a::start(p, &self.bits_of(i, 0)?, m);
                (Pending::B2a(st), msg)
            }
            (Protocol::RowMaxTree, NodeMaterial::RowMax(levels)) => {
                let (st, msg) = row_max::start(p, self.share_of(i, 0)?, levels);
                (Pending::RowMax(Box::new(st)), msg)
            }
            (Protocol::BlockFixedMatMul, NodeMaterial::BlockMatMul(m)) => {
                let Op::BlockMatMul { block, .. } = self.program.graph.node(self.plan.id(i)).op
                else {
                    return Err(bad());
                };
                let h = self.share_of(i, 0)?;
                let mask = self.mask_bits(i, self.plan.operands(i)[2])?;
                let (st, msg) = block_matmul::start(p, h, mask.view(), block as usize, m);
                arith((Pending::Block(st, self.plan.operands(i)[1]), msg))
            }
            _ => return Err(bad()),
        })
    }

    /// Ends the round of the node at `i` with the peer's part.
    fn finish(&mut self, i: Pos, st: Pending, peer: &[u8]) -> Result<Finished, InterpError> {
        let value = |s: Share| Finished::Value(Some(s.0));
        Ok(match st {
            Pending::Beaver(s) => value(beaver_mul::finish(s, &unpack(peer)?)?),
            Pending::Square(s) => value(square::finish(s, &unpack(peer)?)?),
            Pending::Drelu(s) => value(drelu::finish(s, &unpack(peer)?)?),
            Pending::Fixed(s, w) => value(fixed_proto::finish(
                s,
                self.set_up_operand(i, w)?,
                &unpack(peer)?,
            )?),
            Pending::Reveal(s) => Finished::Value(reveal::finish(s, &unpack(peer)?)?),
            Pending::BitMux(s) => value(bit_mux::finish(s, peer)?),
            Pending::B2a(s) => {
                // the bit as the fixed-point 0 or 1 of the node's scale
                let scale = match self.program.graph.node(self.plan.id(i)).ty.elem {
                    Elem::Fixed { scale } => scale,
                    _ => self.frac,
                };
                let one = 1u64.checked_shl(scale).unwrap_or(0);
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
            Pending::Block(s, w) => value(block_matmul::finish(
                s,
                self.set_up_operand(i, w)?,
                &unpack(peer)?,
            )?),
        })
    }

    /// The set-up fixed operand at `w` of the product at `i`.
    fn set_up_operand(&self, i: Pos, w: Pos) -> Result<&fixed_proto::FixedOperand, InterpError> {
        (self.fixed_operands.get(&self.plan.id(w)))
            .ok_or_else(|| self.fail(i, "fixed operand was not set up".into()))
    }
}
