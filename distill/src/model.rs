//! The teacher and student programs of one model and the tensors they compute with.

use crate::DistillError;
use comet_compiler::passes::approximate;
use comet_ir::{ApproxConfig, DimEnv, Elem, NodeId, Op, Program};
use comet_runtime::plain;
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::path::Path;

/// Weights by qualified weight name (`decoder.0.wq`), as the interpreter takes them.
pub type Weights = HashMap<String, ArrayD<f64>>;

/// The teacher (exact) and student (approximated) programs of a language model.
#[derive(Debug, Clone)]
pub struct Models {
    /// The model as written: `lower` only.
    pub teacher: Program,
    /// The model after `approximate` with the student's profile.
    pub student: Program,
    /// What the pass applied (kinds a profile does not define read exact).
    pub approx: ApproxConfig,
    /// The token input's name.
    pub input: String,
    /// The logits output's name.
    pub output: String,
    /// Vocabulary size (the logits' last axis).
    pub vocab: usize,
    /// Residual-stream nodes present in both programs with the same op and shape: the
    /// hidden states of the hidden-state loss.
    pub hidden: Vec<NodeId>,
}

impl Models {
    /// Compiles `source` (named `path` in diagnostics) into the teacher and the student for
    /// `approx`.
    ///
    /// # Errors
    /// A source error, or a model without one token input and one `[seq, vocab]` output.
    pub fn new(source: &str, path: &str, approx: ApproxConfig) -> Result<Models, DistillError> {
        let render = |e: comet_compiler::CompileError| match e {
            comet_compiler::CompileError::Source(d) => DistillError::Compile(d.render_plain()),
            other => DistillError::Compile(format!("{path}: {other}")),
        };
        let teacher = comet_compiler::driver::lower_only(source, path).map_err(render)?;
        let mut student = teacher.clone();
        let applied = approximate::effective(approx);
        student.options.approx = applied;
        approximate::run(&mut student);
        comet_ir::verify(&student).map_err(|e| {
            DistillError::Compile(format!("{path}: internal error after `approximate`: {e}"))
        })?;
        crate::grad::check_differentiable(&student)?;
        let bad = |message: String| DistillError::Model {
            model: path.to_string(),
            message,
        };
        let inputs: Vec<(NodeId, String)> = teacher
            .graph
            .ids()
            .filter_map(|id| match &teacher.graph.node(id).op {
                Op::Input { name, .. } => Some((id, name.clone())),
                _ => None,
            })
            .collect();
        let [(input_id, input)] = inputs.as_slice() else {
            return Err(bad(format!(
                "`comet distill` trains language models with one token input; this one has {} \
                 inputs",
                inputs.len()
            )));
        };
        if teacher.graph.node(*input_id).ty.elem != Elem::Index {
            return Err(bad(format!(
                "input `{input}` is not a token sequence (token[seq])"
            )));
        }
        let outputs: Vec<(NodeId, String)> = teacher
            .graph
            .ids()
            .filter_map(|id| match &teacher.graph.node(id).op {
                Op::Output { name, .. } => Some((id, name.clone())),
                _ => None,
            })
            .collect();
        let [(out_id, output)] = outputs.as_slice() else {
            return Err(bad(format!(
                "`comet distill` needs exactly one output (the logits); this model has {}",
                outputs.len()
            )));
        };
        let env = DimEnv { seq: 3, past: 0 };
        let shape = comet_runtime::exec::sources::dims(&teacher.graph.node(*out_id).ty.shape, env);
        let vocab = match shape.as_slice() {
            [3, v] => *v,
            s => {
                return Err(bad(format!(
                    "output `{output}` must be logits of shape [seq, vocab], got {s:?} at seq 3"
                )));
            }
        };
        let hidden = residual_nodes(&teacher, &student, env);
        Ok(Models {
            input: input.clone(),
            output: output.clone(),
            vocab,
            approx: applied,
            hidden,
            teacher,
            student,
        })
    }

    /// Loads the checkpoint's weights (every weight the model declares, as f64).
    ///
    /// # Errors
    /// [`DistillError::Weights`]: unreadable, a tensor missing or of the wrong shape.
    pub fn load(&self, path: &Path) -> Result<Weights, DistillError> {
        comet_runtime::weights::load(path, &self.teacher.info.weights).map_err(|e| {
            DistillError::Weights {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })
    }

    /// The token input holding `ids`.
    pub fn tokens(&self, ids: &[u64]) -> HashMap<String, ArrayD<f64>> {
        let v =
            ArrayD::from_shape_vec(IxDyn(&[ids.len()]), ids.iter().map(|t| *t as f64).collect())
                .expect("1-D");
        HashMap::from([(self.input.clone(), v)])
    }

    /// The logits `[seq, vocab]` of `program` on `ids` from position `past` on, with `cache`.
    ///
    /// # Errors
    /// The interpreter's error.
    pub fn logits(
        &self,
        program: &Program,
        weights: &Weights,
        ids: &[u64],
        past: u64,
        cache: &mut plain::Cache,
    ) -> Result<ArrayD<f64>, String> {
        let env = DimEnv {
            seq: ids.len() as u64,
            past,
        };
        let mut out = plain::eval(program, &self.tokens(ids), weights, env, cache)
            .map_err(|e| e.to_string())?;
        out.remove(&self.output)
            .ok_or_else(|| format!("no output `{}`", self.output))
    }

    /// The node of the logits output in `program`.
    pub fn output_node(&self, program: &Program) -> NodeId {
        program
            .graph
            .ids()
            .find(|id| matches!(&program.graph.node(*id).op, Op::Output { name, .. } if *name == self.output))
            .expect("checked in Models::new")
    }
}

/// The residual stream: `add` nodes of the model's own code (no composite's origin) shaped
/// like the embedding `[seq, d]`, present in both programs with the same op and shape. The
/// pass `approximate` keeps the ids of the nodes it does not replace, so these are the same
/// values in both.
fn residual_nodes(teacher: &Program, student: &Program, env: DimEnv) -> Vec<NodeId> {
    let dims =
        |p: &Program, id| comet_runtime::exec::sources::dims(&p.graph.node(id).ty.shape, env);
    let width = teacher
        .graph
        .ids()
        .find(|id| matches!(teacher.graph.node(*id).op, Op::Embed))
        .map(|id| dims(teacher, id));
    let Some(width) = width else {
        return Vec::new();
    };
    let mut ids: Vec<NodeId> = teacher
        .graph
        .ids()
        .filter(|id| {
            let n = teacher.graph.node(*id);
            matches!(n.op, Op::Add)
                && n.scope.origin.is_empty()
                && dims(teacher, *id) == width
                && student.graph.contains(*id)
                && student.graph.node(*id).op == n.op
                && student.graph.operands(*id) == teacher.graph.operands(*id)
        })
        .collect();
    ids.sort();
    ids
}
