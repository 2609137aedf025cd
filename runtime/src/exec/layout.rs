//! The structural layout of a program, computed once per call: nodes numbered densely by
//! their position in the canonical (topological) order, each node's operand positions,
//! and how many readers each value has. It needs no analysis, so it serves programs of
//! either stage; the two-party execution plan ([`crate::interp::ExecPlan`]) adds the round
//! schedule on top of it.

use std::collections::HashMap;

use comet_ir::{NodeId, Program};

use super::ExecError;

/// A node's position in the canonical order.
pub type Pos = u32;

/// Dense per-node tables of one program, indexed by [`Pos`].
#[derive(Debug, Clone)]
pub struct Layout {
    /// Nodes in canonical (topological) order.
    order: Vec<NodeId>,
    /// Node → position in `order`.
    pos: HashMap<NodeId, Pos>,
    /// Per position: operand positions, in operand order.
    operands: Vec<Vec<Pos>>,
    /// Per position: a value the node reads besides its operands (in a two-party run, the
    /// block mask of a node in a sparse FFN's masked region).
    extra_reads: Vec<Option<Pos>>,
}

impl Layout {
    /// The layout of `program`.
    ///
    /// # Errors
    /// [`ExecError::Cycle`] if the graph is not a DAG.
    pub fn new(program: &Program) -> Result<Layout, ExecError> {
        let graph = &program.graph;
        let order = graph.topo_order().map_err(|e| ExecError::Cycle(e.0))?;
        let pos: HashMap<NodeId, Pos> = (order.iter().enumerate())
            .map(|(i, &id)| (id, i as Pos))
            .collect();
        let operands = (order.iter())
            .map(|&id| graph.operands(id).iter().map(|x| pos[x]).collect())
            .collect();
        Ok(Layout {
            extra_reads: vec![None; order.len()],
            order,
            pos,
            operands,
        })
    }

    /// The nodes in canonical order.
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the program has no nodes.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The position of node `id`.
    pub fn pos(&self, id: NodeId) -> Pos {
        self.pos[&id]
    }

    /// The node at position `i`.
    pub fn id(&self, i: Pos) -> NodeId {
        self.order[i as usize]
    }

    /// The operand positions of the node at `i`.
    pub fn operands(&self, i: Pos) -> &[Pos] {
        &self.operands[i as usize]
    }

    /// Makes the node at `i` read the value at `x` besides its operands (it counts as a
    /// reader of `x` in [`Layout::read_counts`]).
    pub(crate) fn add_read(&mut self, i: Pos, x: Pos) {
        self.extra_reads[i as usize] = Some(x);
    }

    /// Every value the node at `i` reads: its operands, then its extra read, if any.
    pub fn reads(&self, i: Pos) -> impl Iterator<Item = Pos> + '_ {
        (self.operands[i as usize].iter().copied()).chain(self.extra_reads[i as usize])
    }

    /// Per position, how many reads of it there are (an operand used twice counts twice):
    /// a walker drops a value when its count reaches 0.
    pub fn read_counts(&self) -> Vec<u32> {
        let mut uses = vec![0u32; self.order.len()];
        for i in 0..self.order.len() {
            for x in self.reads(i as Pos) {
                uses[x as usize] += 1;
            }
        }
        uses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comet_ir::{Dim, Domain, Elem, Graph, Op, Party, Scope, ValueType};

    #[test]
    fn an_operand_read_twice_counts_twice_and_sinks_have_no_readers() {
        let mut g = Graph::new();
        let ty = ValueType::new(Elem::Fixed { scale: 16 }, vec![Dim::SEQ], Domain::Public);
        let s = Scope::default();
        let x = g.add(Op::Weight { name: "w".into() }, &[], ty.clone(), s.clone());
        let y = g.add(Op::Add, &[x, x], ty.clone(), s.clone());
        let out = Op::Output {
            name: "y".into(),
            party: Party::Client,
        };
        g.add(out, &[y], ty, s);
        let mut program = Program {
            graph: g,
            ..Program::default()
        };
        let layout = Layout::new(&program).unwrap();
        assert_eq!(layout.operands(1), [0, 0]);
        assert_eq!(layout.read_counts(), [2, 1, 0]);
        program.graph = Graph::new();
        assert!(Layout::new(&program).unwrap().is_empty());
    }
}
