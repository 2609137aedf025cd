//! The rounds of a call: every communicating node active in a round starts (or takes its
//! next step), all messages travel in one exchange, and each node finishes its step. What
//! a node's protocol (as the plan's cost annotations name it) does with its material is
//! the one dispatch, [`crate::protocols::dispatch`]; this file hands it the node ([`At`]).

use std::borrow::Cow;

use comet_ir::protocol::Protocol;
use comet_ir::{Domain, Elem, Op};
use ndarray::{Array2, ArrayD, IxDyn};

use super::InterpError;
use super::material::shape_of;
use super::party::{OpenedRows, Run};
use super::plan::Pos;
use crate::protocols::cache_masked::{Prior, Refill};
use crate::protocols::dispatch::{self, Finished, Node, OpeningView, Pending};
use crate::protocols::driver::round_bytes;
use crate::protocols::fixed::FixedOperand;
use crate::protocols::{MessageError, PartyId, Share};
use crate::transport::Channel;

/// The node at `pos` of a call, as the dispatch sees it.
pub(super) struct At<'r, 'a> {
    pub run: &'r Run<'a>,
    pub pos: Pos,
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
                let (mut st, part) = self.start(i)?;
                if self.options.naive_refill {
                    let at = At { run: self, pos: i };
                    dispatch::refill_naive(&at, &mut st, |m| Ok(round_bytes(ch, m)?))?;
                }
                self.release_reads(i);
                (st, part)
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
        // equal except for one-way messages (reveals, products with a one-sided fixed
        // operand), whose receiver part is sized by `peer_len`
        let mut at = 0;
        for (i, st, mine) in pending {
            let n = self.peer_len(i, &st, mine);
            let part = peer.get(at..at + n).ok_or(MessageError::Length {
                expected: at + n,
                actual: peer.len(),
            })?;
            at += n;
            let finished = dispatch::finish(&At { run: self, pos: i }, st, part)?;
            self.opening_read(i);
            match finished {
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
                Finished::WithOpening(o) => {
                    let share = std::sync::Arc::new(o.share);
                    self.values[i as usize] = super::party::Slot::Held(share);
                    let left = plan.opening_readers(i);
                    let (opened, h) = (o.opened, o.h);
                    (self.openings).insert(i, super::party::HeldOpening { opened, h, left });
                }
                Finished::Opened {
                    value,
                    slot,
                    opened,
                } => {
                    let share = std::sync::Arc::new(Share(value));
                    self.values[i as usize] = super::party::Slot::Held(share);
                    self.opened_writes.push((slot, OpenedRows::Dense(opened)));
                }
                Finished::Refilled {
                    value,
                    slot,
                    kept,
                    refill,
                } => {
                    let share = std::sync::Arc::new(Share(value));
                    self.values[i as usize] = super::party::Slot::Held(share);
                    self.opened_writes.push((slot, OpenedRows::Masked(*kept)));
                    self.count_refill(i, refill);
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

    /// The length in bytes of the peer's part for the node at `i` in state `st`, given this
    /// party's: the same, except for a one-way reveal (the receiver gets the sender's share
    /// and sends nothing) and a product with a one-sided fixed operand
    /// ([`dispatch::peer_len`]).
    fn peer_len(&self, i: Pos, st: &Pending, mine: usize) -> usize {
        let id = self.plan.id(i);
        match self.program.graph.node(id).op {
            Op::Reveal { to } if to.index() == usize::from(self.party) => {
                8 * shape_of(self.program, id, self.env)
                    .iter()
                    .product::<usize>()
            }
            Op::Reveal { .. } => 0,
            _ => dispatch::peer_len(st, mine, self.program.graph.node(id).comparison_bits()),
        }
    }

    /// Starts the node at `i` with its material: on its active entries if it is in a
    /// sparse FFN's masked region, else as the dispatch says.
    fn start(&mut self, i: Pos) -> Result<(Pending, Vec<u8>), InterpError> {
        let proto = self.plan.protocol(i);
        let material = self.material.node(self.plan.id(i))?;
        if let Some(m) = self.plan.masked().get(&i).copied()
            && !matches!(proto, Protocol::Reveal | Protocol::Open)
        {
            let material = material.ok_or_else(|| self.fail(i, "no dealer material".into()))?;
            return self.start_masked(i, m, proto, material);
        }
        if let Some(r) = self.plan.heads().get(&i).copied()
            && proto.communicates()
        {
            let material = material.ok_or_else(|| self.fail(i, "no dealer material".into()))?;
            return self.start_head_rows(i, r, material);
        }
        dispatch::start(&At { run: self, pos: i }, material)
    }

    /// The node at `i` has ended a round: if it reads a truncation's opening (a comparison
    /// in the truncation's round, a select later, each one round), the last reader drops it.
    fn opening_read(&mut self, i: Pos) {
        let Some(x) = self.plan.opening_of(i) else {
            return;
        };
        if let Some(o) = self.openings.get_mut(&x) {
            o.left = o.left.saturating_sub(1);
            if o.left == 0 {
                self.openings.remove(&x);
            }
        }
    }

    /// The fixed operand of the product at `i`: the right one of a block-sparse product.
    fn fixed_pos(&self, i: Pos) -> Option<Pos> {
        match self.plan.protocol(i) {
            Protocol::BlockFixedMatMul => Some(self.plan.operands(i)[1]),
            _ => self.plan.fixed_operand(i),
        }
    }
}

impl Node for At<'_, '_> {
    type Error = InterpError;

    fn party(&self) -> PartyId {
        self.run.party
    }

    fn protocol(&self) -> Protocol {
        self.run.plan.protocol(self.pos)
    }

    fn op(&self) -> &Op {
        &self.run.program.graph.node(self.run.plan.id(self.pos)).op
    }

    fn fail(&self, message: String) -> InterpError {
        self.run.fail(self.pos, message)
    }

    fn share(&self, k: usize) -> Result<&Share, InterpError> {
        let x = self.run.plan.operands(self.pos)[k];
        Ok(self.run.held(self.pos, x)?.as_ref())
    }

    fn revealed(&self, k: usize) -> Result<Cow<'_, Share>, InterpError> {
        let (run, x) = (self.run, self.run.plan.operands(self.pos)[k]);
        let x_node = run.program.graph.node(run.plan.id(x));
        if run.plan.gmw && x_node.ty.domain == Domain::Bool {
            return Err(self.fail("revealing XOR-shared bits is not supported".into()));
        }
        Ok(match run.value(x) {
            Some(v) => Cow::Borrowed(v.as_ref()),
            // a private value revealed to its non-owner: the receiver adds zeros
            None => {
                let shape = shape_of(run.program, run.plan.id(x), run.env);
                Cow::Owned(Share(ArrayD::zeros(IxDyn(&shape))))
            }
        })
    }

    fn block_mask(&self, k: usize) -> Result<Array2<bool>, InterpError> {
        let mask = self.run.plan.operands(self.pos)[k];
        self.run.mask_bits(self.pos, mask)
    }

    fn fixed_index(&self) -> Option<usize> {
        let w = self.run.plan.fixed_operand(self.pos)?;
        Some(usize::from(self.run.plan.operands(self.pos)[1] == w))
    }

    fn fixed_operand(&self) -> Result<&FixedOperand, InterpError> {
        let w = self.run.fixed_pos(self.pos);
        (w.and_then(|w| self.run.fixed_operands.get(&self.run.plan.id(w))))
            .ok_or_else(|| self.fail("fixed operand was not set up".into()))
    }

    fn width(&self) -> u32 {
        (self.run.program.graph.node(self.run.plan.id(self.pos))).comparison_bits()
    }

    fn opens_at_cmp_width(&self) -> bool {
        (self.run.program.graph.node(self.run.plan.id(self.pos))).open_at_cmp_width
    }

    fn opening_read(&self) -> bool {
        self.run.plan.opening_readers(self.pos) > 0
    }

    fn opening(&self, k: usize) -> Result<OpeningView<'_>, InterpError> {
        let (run, x) = (self.run, self.run.plan.operands(self.pos)[k]);
        let o = (run.openings.get(&x))
            .ok_or_else(|| self.fail(format!("operand {k} left no opening to read")))?;
        Ok(OpeningView {
            opened: &o.opened,
            h: &o.h,
            shape: shape_of(run.program, run.plan.id(x), run.env),
        })
    }

    /// None in a call at `past = 0`: a new sequence, whose rows are all new (the dealer
    /// forgets the slot's earlier masks likewise).
    fn opened_rows(&self, slot: u32) -> Option<&ArrayD<u64>> {
        (self.run.env.past > 0).then(|| self.run.opened.get(slot))?
    }

    fn slot_rows(&self, slot: u32) -> Option<Prior<'_>> {
        let run = self.run;
        if run.env.past == 0 {
            return None;
        }
        Some(Prior {
            opened: run.opened.get(slot)?,
            valid: run.opened.validity(slot)?,
            own: run.own.get(slot),
        })
    }

    fn naive_refill(&self) -> bool {
        self.run.options.naive_refill
    }

    fn scale(&self) -> u32 {
        self.run.scale_at(self.pos)
    }

    fn operand_scale(&self, k: usize) -> u32 {
        self.run.scale_at(self.run.plan.operands(self.pos)[k])
    }

    fn operand_count(&self) -> usize {
        self.run.plan.operands(self.pos).len()
    }
}

impl Run<'_> {
    /// Adds a head-masked cache product's refill to its unit's counts (the unit of the
    /// `block_matmul` that reads its head mask). A unit's products open the same rows, so
    /// rows, misses and requests are each product's; extra exchanges and bits add up.
    fn count_refill(&mut self, i: Pos, r: Refill) {
        let mask = self.plan.operands(i)[3];
        let Some(&unit) = self.mask_ffn.get(&mask) else {
            return;
        };
        if let Some(k) = self.kv.get_mut(unit as usize) {
            k.rows = k.rows.max(r.rows);
            k.missed = k.missed.max(r.missed);
            k.requests = k.requests.max(r.requests);
            k.exchanges += r.exchanges;
            k.missed_bits += r.missed_bits;
        }
    }

    /// The fixed-point scale of the value at `i` (the plan's for a value of another kind).
    fn scale_at(&self, i: Pos) -> u32 {
        match self.program.graph.node(self.plan.id(i)).ty.elem {
            Elem::Fixed { scale } => scale,
            _ => self.frac,
        }
    }
}
