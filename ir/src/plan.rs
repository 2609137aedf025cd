//! The plan file format: serde JSON with a format tag and version.
//!
//! A plan lists its nodes in canonical order with compact ids `0..n`; every operand refers
//! to an earlier id, so a plan is acyclic by construction and reads back into a graph that
//! prints exactly as the one written. Unknown fields are rejected, and a plan that parses
//! must still pass the verifier before it is returned.

use crate::cost::NodeCost;
use crate::graph::{Graph, NodeId, Scope};
use crate::op::{Op, Stage};
use crate::poly::MaxPoly;
use crate::program::{Analyses, ModelInfo, Program, ProtocolOptions};
use crate::range::Declared;
use crate::side::SideTable;
use crate::types::ValueType;
use crate::verify::{VerifyError, verify};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The value of the `format` field.
pub const FORMAT_TAG: &str = "comet-plan";
/// The plan format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Always [`FORMAT_TAG`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Declarations.
    pub model: ModelInfo,
    /// Which type rules the graph follows.
    #[serde(default)]
    pub stage: Stage,
    /// Protocol choices.
    #[serde(default)]
    pub options: ProtocolOptions,
    /// Nodes in canonical order.
    pub nodes: Vec<PlanNode>,
}

/// One node of a plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanNode {
    /// Position in `nodes`.
    pub id: u32,
    /// The operation.
    pub op: Op,
    /// Operand ids, all smaller than `id`.
    pub inputs: Vec<u32>,
    /// Result type.
    #[serde(rename = "type")]
    pub ty: ValueType,
    /// Origin.
    #[serde(default, skip_serializing_if = "is_default_scope")]
    pub scope: Scope,
    /// A comparison's signed width, or a stochastic truncation's input width
    /// ([`crate::graph::Node::cmp_width`]); absent = 64 bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmp_width: Option<u8>,
    /// A sign select's or row maximum's opening taken at its comparison width
    /// ([`crate::graph::Node::open_at_cmp_width`]); absent = the whole ring.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_at_cmp_width: bool,
    /// A comparison that reads its truncated operand's opening
    /// ([`crate::graph::Node::reads_opening`]); absent = it opens its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reads_opening: bool,
    /// The round it starts in, once scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<MaxPoly>,
    /// What it costs, once costed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<NodeCost>,
    /// The range a recipe guarantees or assumes of it ([`crate::range`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
}

fn is_default_scope(s: &Scope) -> bool {
    *s == Scope::default()
}

/// Why a plan file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not JSON, or JSON of the wrong shape (with line and column).
    #[error("not a valid plan file: {0}")]
    Json(#[from] serde_json::Error),
    /// The `format` field is not [`FORMAT_TAG`].
    #[error("not a Comet plan: its format is `{0}`, expected `{FORMAT_TAG}`")]
    Tag(String),
    /// Written by an incompatible version.
    #[error("plan format version {0} is not supported: this comet reads version {FORMAT_VERSION}")]
    Version(u32),
    /// A node refers to something it cannot.
    #[error("plan node {id}: {msg}")]
    Node {
        /// The node's id.
        id: u32,
        /// What is wrong.
        msg: String,
    },
    /// The graph parsed but breaks an IR invariant.
    #[error("the plan is inconsistent: {0}")]
    Invalid(#[from] VerifyError),
    /// The graph could not be ordered (only when writing a broken program).
    #[error("{0}")]
    Cycle(#[from] crate::graph::CycleError),
}

/// Converts a program to its file form.
pub fn to_plan(p: &Program) -> Result<PlanFile, PlanError> {
    let order = p.canonical_order()?;
    let numbering: HashMap<NodeId, u32> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let rounds = p.analyses.rounds.as_ref();
    let costs = p.analyses.costs.as_ref();
    let declared = p.analyses.declared.as_ref();
    let nodes = order
        .iter()
        .map(|id| {
            let n = p.graph.node(*id);
            PlanNode {
                id: numbering[id],
                op: n.op.clone(),
                inputs: p.graph.operands(*id).iter().map(|x| numbering[x]).collect(),
                ty: n.ty.clone(),
                scope: n.scope.clone(),
                cmp_width: n.cmp_width,
                open_at_cmp_width: n.open_at_cmp_width,
                reads_opening: n.reads_opening,
                round: rounds.and_then(|r| r.get(*id).cloned()),
                cost: costs.and_then(|c| c.get(*id).cloned()),
                declared: declared.and_then(|d| d.get(*id).cloned()),
            }
        })
        .collect();
    Ok(PlanFile {
        format: FORMAT_TAG.to_string(),
        version: FORMAT_VERSION,
        model: p.info.clone(),
        stage: p.stage,
        options: p.options.clone(),
        nodes,
    })
}

/// Rebuilds and verifies a program from its file form.
pub fn from_plan(f: PlanFile) -> Result<Program, PlanError> {
    if f.format != FORMAT_TAG {
        return Err(PlanError::Tag(f.format));
    }
    if f.version != FORMAT_VERSION {
        return Err(PlanError::Version(f.version));
    }
    let mut graph = Graph::new();
    let mut ids = Vec::with_capacity(f.nodes.len());
    let mut rounds = SideTable::new();
    let mut costs = SideTable::new();
    let mut declared = SideTable::new();
    for n in f.nodes {
        let node_err = |msg: String| PlanError::Node { id: n.id, msg };
        if n.id as usize != ids.len() {
            return Err(node_err(format!(
                "ids must count up from 0; expected {}",
                ids.len()
            )));
        }
        let operands: Vec<NodeId> = n
            .inputs
            .iter()
            .map(|x| ids.get(*x as usize).copied())
            .collect::<Option<_>>()
            .ok_or_else(|| {
                node_err(format!(
                    "operands {:?} must refer to earlier nodes",
                    n.inputs
                ))
            })?;
        let id = graph.add(n.op, &operands, n.ty, n.scope);
        graph.node_mut(id).cmp_width = n.cmp_width;
        graph.node_mut(id).open_at_cmp_width = n.open_at_cmp_width;
        graph.node_mut(id).reads_opening = n.reads_opening;
        if let Some(r) = n.round {
            rounds.insert(id, r);
        }
        if let Some(c) = n.cost {
            costs.insert(id, c);
        }
        if let Some(d) = n.declared {
            declared.insert(id, d);
        }
        ids.push(id);
    }
    let analyses = Analyses {
        rounds: (!rounds.is_empty()).then_some(rounds),
        costs: (!costs.is_empty()).then_some(costs),
        declared: (!declared.is_empty()).then_some(declared),
    };
    let p = Program {
        info: f.model,
        stage: f.stage,
        options: f.options,
        graph,
        analyses,
    };
    verify(&p)?;
    Ok(p)
}

/// Writes a program as pretty JSON.
pub fn write_plan_json(p: &Program) -> Result<String, PlanError> {
    let mut s = serde_json::to_string_pretty(&to_plan(p)?)?;
    s.push('\n');
    Ok(s)
}

/// Reads a program from JSON text.
pub fn read_plan_json(text: &str) -> Result<Program, PlanError> {
    from_plan(serde_json::from_str(text)?)
}
