//! Local nodes at one party: sources (inputs, weights, positions, cache reads), input
//! sharing from a common seed, sinks (outputs, cache writes), local truncation, and the
//! fixed-point backend's op functions, which are linear in a shared operand except for
//! `add_const` and `causal_mask` (party 0 adds the constant).

use std::borrow::Cow;

use comet_ir::protocol::Protocol;
use comet_ir::{Domain, Elem, Op, Party};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::InterpError;
use super::material::shape_of;
use super::party::Run;
use super::plan::Pos;
use crate::exec::{At, ExecError, sources};
use crate::fixed::{self, decode_value};
use crate::protocols::{Share, share};
use crate::ring::{self, Ring};

fn shared(d: Domain) -> bool {
    matches!(d, Domain::Arith | Domain::Bool)
}

impl Run<'_> {
    fn holds(&self, d: Domain) -> bool {
        match d {
            Domain::Private(p) => p.index() == usize::from(self.party),
            _ => true,
        }
    }

    /// The value of the local node at `i` at this party (`None`: it holds nothing).
    pub(super) fn local(&mut self, i: Pos) -> Result<Option<Share>, InterpError> {
        let program = self.program;
        let id = self.plan.id(i);
        let node = program.graph.node(id);
        let dom = node.ty.domain;
        if self.plan.gmw && self.reads_bool(i) {
            return Err(self.fail(
                i,
                "a local op on XOR-shared bits (GMW comparisons): only `b2a` and `select` \
                 consume them"
                    .into(),
            ));
        }
        let shape = shape_of(program, id, self.env);
        let v = match &node.op {
            Op::Input { name, party } => return self.input(i, name, *party, &shape),
            Op::Weight { name } => return self.weight(i, name, &shape),
            Op::Positions { offset } => fixed::position_ids(*offset, self.env),
            Op::CacheRead { slot } if self.holds(dom) => self.cache_read(i, *slot, &shape)?,
            Op::CacheRead { .. } => return Ok(None),
            Op::Share { from } => self.share(i, *from, &shape)?,
            Op::Output { name, party } => return self.output(i, name, *party),
            Op::CacheWrite { slot } => {
                if let Some(x) = self.operand(i, 0) {
                    let v = x.0.clone();
                    self.writes.push((*slot, v));
                }
                return Ok(None);
            }
            // a local reveal: the value is already readable by its receiver
            Op::Reveal { .. } => match self.operand(i, 0) {
                Some(x) if self.holds(dom) => return Ok(Some(Share::clone(x))),
                _ => return Ok(None),
            },
            // a row maximum over rows of one element
            Op::RowMax if self.plan.protocol(i) == Protocol::RowMaxTree => {
                return Ok(self.operand(i, 0).map(|x| Share::clone(x)));
            }
            Op::Trunc { bits } if shared(dom) => {
                let mut x = self.operand_or_fail(i, 0)?.0.clone();
                ring::trunc_share(&mut x, *bits, usize::from(self.party));
                x
            }
            // the public constant is added once, by party 0
            Op::AddConst { .. } | Op::CausalMask if shared(dom) && self.party == 1 => {
                self.operand_or_fail(i, 0)?.0.clone()
            }
            op if self.holds(dom) => self.apply(i, op, shared(dom))?,
            _ => return Ok(None),
        };
        ExecError::check_shape(v.shape(), &shape, || At::of(id, node))?;
        Ok(Some(Share(v)))
    }

    /// Whether the node at `i` reads a boolean value.
    fn reads_bool(&self, i: Pos) -> bool {
        (self.plan.operands(i).iter())
            .any(|&x| self.program.graph.node(self.plan.id(x)).ty.domain == Domain::Bool)
    }

    /// This party's value of operand `k` of the node at `i`, if it holds one.
    fn operand(&self, i: Pos, k: usize) -> Option<&std::sync::Arc<Share>> {
        self.value(self.plan.operands(i)[k])
    }

    fn operand_or_fail(&self, i: Pos, k: usize) -> Result<&std::sync::Arc<Share>, InterpError> {
        self.held(i, self.plan.operands(i)[k])
    }

    /// A computed op on this party's values: plaintext at the owner, or shares where the
    /// op is linear in them (sums with a public operand: party 1 adds zeros in its place).
    fn apply(&self, i: Pos, op: &Op, on_shares: bool) -> Result<ArrayD<Ring>, InterpError> {
        let graph = &self.program.graph;
        let zero_public =
            on_shares && self.party == 1 && matches!(op, Op::Add | Op::Sub | Op::Concat { .. });
        let mut views: Vec<Cow<ArrayD<Ring>>> = Vec::new();
        for &x in self.plan.operands(i) {
            let v = &self.held(i, x)?.0;
            let public = graph.node(self.plan.id(x)).ty.domain == Domain::Public;
            views.push(if zero_public && public {
                Cow::Owned(ArrayD::zeros(v.raw_dim()))
            } else {
                Cow::Borrowed(v)
            });
        }
        let views: Vec<ArrayViewD<Ring>> = views.iter().map(|v| v.view()).collect();
        let first = self.plan.operands(i).first();
        let scale = first.and_then(|&x| match graph.node(self.plan.id(x)).ty.elem {
            Elem::Fixed { scale } => Some(scale),
            _ => None,
        });
        fixed::apply_op(op, &views, self.env, self.frac, scale).map_err(|m| self.fail(i, m))
    }

    /// An input's encoding at its provider, checked as every backend checks it.
    fn input(
        &self,
        i: Pos,
        name: &str,
        party: Party,
        shape: &[usize],
    ) -> Result<Option<Share>, InterpError> {
        if party.index() != usize::from(self.party) {
            return Ok(None);
        }
        let x = sources::input(&self.sources.inputs, name, shape.to_vec(), self.env)?;
        let elem = self.program.graph.node(self.plan.id(i)).ty.elem;
        let v = fixed::encode_source(x, elem).map_err(|message| {
            let name = name.into();
            ExecError::InputValue { name, message }
        })?;
        Ok(Some(Share(v)))
    }

    /// A weight's encoding at its owner; a weight that only the setup reads is taken out
    /// of the sources once encoded (the f64 copy is not needed again).
    fn weight(
        &mut self,
        i: Pos,
        name: &str,
        shape: &[usize],
    ) -> Result<Option<Share>, InterpError> {
        let program = self.program;
        let owner = program.info.weight(name).map_or(Party::Server, |w| w.party);
        if owner.index() != usize::from(self.party) {
            return Ok(None);
        }
        let loaded = self.load_weight(i, name)?;
        let found = loaded.as_ref().or(self.sources.weights.get(name));
        let w = sources::weight(program, name, found, shape.to_vec())?;
        if !self.sources.checked.contains(name) {
            sources::within_bound(program, name, w)?;
            self.sources.checked.insert(name.to_string());
        }
        let elem = program.graph.node(self.plan.id(i)).ty.elem;
        let v = Share(fixed::encode_weight(w, elem, self.frac));
        let droppable = self.droppable.get_mut(name);
        match (droppable, loaded) {
            (Some(left), _) => {
                *left -= 1;
                if *left == 0 {
                    self.sources.weights.remove(name);
                }
            }
            // read from the checkpoint and needed by later calls too: kept
            (None, Some(w)) => {
                self.sources.weights.insert(name.to_string(), w);
            }
            (None, None) => {}
        }
        Ok(Some(v))
    }

    /// Weight `name` read from the checkpoint, if the sources do not hold it already.
    fn load_weight(&self, i: Pos, name: &str) -> Result<Option<ArrayD<f64>>, InterpError> {
        match &self.sources.checkpoint {
            Some(c) if !self.sources.weights.contains_key(name) && c.has(name) => {
                let w = c.load(name).map_err(|e| self.fail(i, e.to_string()))?;
                Ok(Some(w))
            }
            _ => Ok(None),
        }
    }

    /// This party's cache shares, checked as every backend checks a cache read.
    fn cache_read(&self, i: Pos, slot: u32, shape: &[usize]) -> Result<ArrayD<Ring>, InterpError> {
        let id = self.plan.id(i);
        let at = || At::of(id, self.program.graph.node(id));
        Ok(
            match sources::cache_read(self.cache, slot, shape, self.env, at)? {
                Some(c) => c.clone(),
                None => ArrayD::zeros(IxDyn(shape)),
            },
        )
    }

    fn share(&self, i: Pos, from: Party, shape: &[usize]) -> Result<ArrayD<Ring>, InterpError> {
        let Some(seed) = self.seeds.get(&self.plan.id(i)) else {
            return Err(self.fail(i, "no seed".into()));
        };
        Ok(if from.index() == usize::from(self.party) {
            share::share_own_input(&self.operand_or_fail(i, 0)?.0, seed).0
        } else {
            share::share_peer_input(shape, seed).0
        })
    }

    fn output(&mut self, i: Pos, name: &str, party: Party) -> Result<Option<Share>, InterpError> {
        if party.index() == usize::from(self.party) {
            let x = self.plan.operands(i)[0];
            let elem = self.program.graph.node(self.plan.id(x)).ty.elem;
            let decoded = decode_value(elem, &self.held(i, x)?.0);
            self.outputs.insert(name.to_string(), decoded);
        }
        Ok(None)
    }
}
