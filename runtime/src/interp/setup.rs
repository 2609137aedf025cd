//! The session's setup, in its first call: the oblivious shuffles of `block_permute`
//! operands, then the opening of `W − B` for every fixed operand, one operand at a time
//! and in chunks of at most [`RunOptions::chunk_bytes`] per exchange, so that a party
//! never holds more than one operand's temporaries besides what it keeps.

use std::sync::Arc;

use comet_ir::{DimEnv, NodeId, Op, Program};
use ndarray::{ArrayD, IxDyn};

use super::material::{shape_of, shuffle_view};
use super::party::{Run, Slot};
use super::plan::Pos;
use super::{InterpError, Progress, RunOptions};
use crate::protocols::driver::setup_round;
use crate::protocols::{MessageError, Share, check_len, fixed as fixed_proto, shuffle};
use crate::ring::Ring;
use crate::transport::Channel;

impl Run<'_> {
    /// Computes the local node at `i` and, first, whatever it reads that is not computed
    /// yet (the set-up-only chain of a fixed operand: weight, transposes, share).
    fn ensure(&mut self, i: Pos) -> Result<(), InterpError> {
        if !matches!(self.values[i as usize], Slot::Empty) {
            return Ok(());
        }
        for k in 0..self.plan.operands(i).len() {
            self.ensure(self.plan.operands(i)[k])?;
        }
        let v = self.local(i)?;
        self.store(i, v);
        Ok(())
    }

    /// Opens `W − B` of every fixed operand, one after the other, each in chunks; marks
    /// the set-up-only values as not held afterwards.
    pub(super) fn setup<C: Channel + ?Sized>(&mut self, ch: &mut C) -> Result<(), InterpError> {
        let total = self.plan.setup_order().len();
        let elements = |i: Pos| shape_of(self.program, self.plan.id(i), DimEnv { seq: 1, past: 0 });
        let total_bytes: u64 = (self.plan.setup_order().iter())
            .map(|&i| 8 * elements(i).iter().product::<usize>() as u64)
            .sum();
        let mut bytes = 0;
        for (done, &i) in self.plan.setup_order().iter().enumerate() {
            let w = self.plan.id(i);
            let m = self.material.mask(w)?;
            self.ensure(i)?;
            let x = Arc::clone(self.held(i, i)?);
            if self.set_up_only[i as usize] {
                self.values[i as usize] = Slot::Absent;
            }
            let mut st = fixed_proto::setup_begin(self.party, &x, m);
            drop(x);
            bytes += 8 * st.message().len() as u64;
            exchange_in_chunks(ch, &mut st, &self.options)?;
            self.fixed_operands.insert(w, fixed_proto::setup_end(st));
            let event = Progress::Setup {
                done: done + 1,
                total,
                bytes,
                total_bytes,
            };
            self.options.report(self.party, event);
        }
        for (i, only) in self.set_up_only.iter().enumerate() {
            if *only {
                self.values[i] = Slot::Absent;
            }
        }
        Ok(())
    }

    /// Permutes the blocks of every `block_permute` operand by the session's secret
    /// permutations, all nodes together: two setup exchanges (step 0: party 1's masked
    /// shares to party 0, who permutes by `π0`; step 1: party 0's to party 1, `π1`).
    pub(super) fn shuffle_setup<C: Channel + ?Sized>(
        &mut self,
        jobs: Vec<(NodeId, crate::dealer::ShuffleMaterial)>,
        ch: &mut C,
    ) -> Result<(), InterpError> {
        let mut views = Vec::new();
        for (id, _) in &jobs {
            let i = self.plan.pos(*id);
            let x = self.plan.operands(i)[0];
            self.ensure(x)?;
            let v = (self.value(x))
                .ok_or_else(|| self.fail(i, "operand not computed before the shuffle".into()))?;
            views.push(Share(
                to_rows(self.program, *id, &v.0).map_err(|m| self.fail(i, m))?,
            ));
        }
        for step in 0..2 {
            let mut states = Vec::new();
            let mut msg = Vec::new();
            for ((_, m), v) in jobs.iter().zip(&views) {
                let (st, part) = shuffle::start_step(self.party, step, v, m);
                states.push(st);
                msg.extend(part);
            }
            let peer = setup_round(ch, &msg)?;
            let mut at = 0;
            for (k, st) in states.into_iter().enumerate() {
                let n = if step == usize::from(self.party) {
                    views[k].0.len()
                } else {
                    0
                };
                let part = peer.get(at..at + n).ok_or(MessageError::Length {
                    expected: at + n,
                    actual: peer.len(),
                })?;
                at += n;
                views[k] = shuffle::finish_step(st, part)?;
            }
            check_len(&peer, at)?;
        }
        for ((id, _), v) in jobs.iter().zip(views) {
            let full = Arc::new(Share(from_rows(self.program, *id, v.0)));
            self.permuted.insert(*id, Arc::clone(&full));
            let i = self.plan.pos(*id);
            self.values[i as usize] = Slot::Held(full);
            self.release_reads(i);
        }
        Ok(())
    }
}

/// Sends the setup state's message in chunks of at most `opts.chunk_bytes` (one setup
/// exchange each; both parties cut the same operand the same way) and absorbs the peer's.
fn exchange_in_chunks<C: Channel + ?Sized>(
    ch: &mut C,
    st: &mut fixed_proto::SetupState,
    opts: &RunOptions,
) -> Result<(), InterpError> {
    let n = st.message().len();
    let step = opts.chunk_elements();
    let mut at = 0;
    while at < n {
        let end = (at + step).min(n);
        let peer = setup_round(ch, &st.message()[at..end])?;
        check_len(&peer, end - at)?;
        st.absorb(at, &peer)?;
        at = end;
    }
    Ok(())
}

/// A `block_permute` node's operand padded to its shape and laid out one block per row:
/// `[rows, k]` (the permuted axis moved first).
fn to_rows(program: &Program, id: NodeId, x: &ArrayD<Ring>) -> Result<ArrayD<Ring>, String> {
    let Op::BlockPermute { block, axis, .. } = program.graph.node(id).op else {
        unreachable!("shuffles are block_permute nodes")
    };
    let padded = crate::movement::pad_blocks(&x.view(), block, axis)?;
    let mut order: Vec<usize> = (0..padded.ndim()).collect();
    order.remove(axis as usize);
    order.insert(0, axis as usize);
    let moved = padded.permuted_axes(IxDyn(&order));
    let (rows, k) = shuffle_view(program, id);
    Ok(crate::movement::reshape_to(&moved.view(), &[rows, k]))
}

/// The inverse of [`to_rows`]: rows back to the node's (padded) shape.
fn from_rows(program: &Program, id: NodeId, rows: ArrayD<Ring>) -> ArrayD<Ring> {
    let Op::BlockPermute { axis, .. } = program.graph.node(id).op else {
        unreachable!("shuffles are block_permute nodes")
    };
    let shape = shape_of(program, id, DimEnv { seq: 1, past: 0 });
    let axis = axis as usize;
    let mut moved_shape = shape.clone();
    let n = moved_shape.remove(axis);
    moved_shape.insert(0, n);
    let moved = crate::movement::reshape_to(&rows.view(), &moved_shape);
    let mut order: Vec<usize> = (1..shape.len()).collect();
    order.insert(axis, 0);
    moved
        .permuted_axes(IxDyn(&order))
        .as_standard_layout()
        .into_owned()
}
