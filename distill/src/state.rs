//! The training state (weights, Adam's moments, the step, the loss curve) and its file,
//! which `--resume` continues from.
//!
//! The file is safetensors: every tensor in f64 as `param/NAME`, `adam_m/NAME`,
//! `adam_v/NAME` (NAME the qualified weight name), and in the metadata the step, the
//! options that change the result ([`Config::to_json`] without `steps`), the applied
//! profile, a fingerprint of the teacher's weights, and the loss curve. A resumed run must
//! match all but `steps`, so it continues exactly where an uninterrupted run would be.

use crate::train::{Config, StepLog};
use crate::{DistillError, Weights};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// Format tag of the state file.
const FORMAT: &str = "comet-distill-state/1";

/// Weights under training and the optimizer's state.
#[derive(Clone, PartialEq)]
pub struct State {
    /// Steps done.
    pub step: u64,
    /// The student's weights.
    pub params: Weights,
    /// Adam's first moments.
    pub m: Weights,
    /// Adam's second moments.
    pub v: Weights,
    /// Every step's log so far.
    pub curve: Vec<StepLog>,
}

/// Names and shapes only: weights are the server's secrets.
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.params.iter().map(|(k, v)| (k, v.shape())).collect();
        names.sort();
        f.debug_struct("State")
            .field("step", &self.step)
            .field("params", &names)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Step 0 from `weights`, moments zero.
    pub fn new(weights: &Weights) -> State {
        let zeros: Weights = weights
            .iter()
            .map(|(k, w)| (k.clone(), ArrayD::zeros(w.raw_dim())))
            .collect();
        State {
            step: 0,
            params: weights.clone(),
            m: zeros.clone(),
            v: zeros,
            curve: Vec::new(),
        }
    }

    /// Writes the state to `path`.
    ///
    /// # Errors
    /// [`DistillError::Write`].
    pub fn save(
        &self,
        path: &Path,
        config: &Config,
        approx: &str,
        teacher: &Weights,
    ) -> Result<(), DistillError> {
        let mut bytes: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (prefix, map) in [
            ("param", &self.params),
            ("adam_m", &self.m),
            ("adam_v", &self.v),
        ] {
            for (name, x) in map {
                let data: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
                bytes.push((format!("{prefix}/{name}"), data, x.shape().to_vec()));
            }
        }
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(n, d, s)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F64, s.clone(), d).expect("sizes match"),
                )
            })
            .collect();
        let curve: Vec<Value> = self
            .curve
            .iter()
            .map(|s| json!([s.step, s.loss, s.kl, s.hidden, s.lr, s.seconds, s.grad_norm]))
            .collect();
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            (
                "run".to_string(),
                run_key(config, approx, teacher).to_string(),
            ),
            ("curve".to_string(), Value::Array(curve).to_string()),
        ]);
        let write_err = |message: String| DistillError::Write {
            what: "state",
            path: path.to_path_buf(),
            message,
        };
        let out =
            safetensors::serialize(views, Some(meta)).map_err(|e| write_err(e.to_string()))?;
        std::fs::write(path, out).map_err(|e| write_err(e.to_string()))
    }

    /// Reads a state written by [`State::save`] for the same run (options but `steps`,
    /// profile, teacher weights).
    ///
    /// # Errors
    /// [`DistillError::State`]: unreadable, not a state file, or another run's.
    pub fn load(
        path: &Path,
        config: &Config,
        approx: &str,
        teacher: &Weights,
    ) -> Result<State, DistillError> {
        let bad = |message: String| DistillError::State {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a `comet distill` state file (no `format: {FORMAT}` in its metadata)"
            )));
        }
        let want = run_key(config, approx, teacher);
        let have: Value = meta
            .get("run")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("its metadata has no run record".into()))?;
        if have != want {
            return Err(bad(format!(
                "it was written by another run: {have} (this run: {want}); resume with the \
                 same model, weights, --approx, --seq, --batch, --lr, --seed, --temperature, \
                 --hidden-loss and prompts"
            )));
        }
        let step: u64 = meta
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("its metadata has no step".into()))?;
        if step > config.steps {
            return Err(bad(format!(
                "it is at step {step}, beyond --steps {}",
                config.steps
            )));
        }
        let curve: Vec<Value> = meta
            .get("curve")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("its metadata has no loss curve".into()))?;
        let curve = curve
            .iter()
            .map(|v| {
                let f = |i: usize| v[i].as_f64().unwrap_or(f64::NAN);
                StepLog {
                    step: v[0].as_u64().unwrap_or(0),
                    loss: f(1),
                    kl: f(2),
                    hidden: f(3),
                    lr: f(4),
                    seconds: f(5),
                    grad_norm: f(6),
                }
            })
            .collect();
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("corrupt: {e}")))?;
        let mut state = State {
            step,
            params: HashMap::new(),
            m: HashMap::new(),
            v: HashMap::new(),
            curve,
        };
        for (name, w) in teacher {
            for (prefix, map) in [
                ("param", &mut state.params),
                ("adam_m", &mut state.m),
                ("adam_v", &mut state.v),
            ] {
                let key = format!("{prefix}/{name}");
                let t = st
                    .tensor(&key)
                    .map_err(|_| bad(format!("no tensor `{key}`")))?;
                if t.dtype() != Dtype::F64 || t.shape() != w.shape() {
                    return Err(bad(format!(
                        "tensor `{key}` is {:?} {:?}, expected F64 {:?}",
                        t.dtype(),
                        t.shape(),
                        w.shape()
                    )));
                }
                let data: Vec<f64> = t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                let x = ArrayD::from_shape_vec(IxDyn(t.shape()), data).expect("size checked");
                map.insert(name.clone(), x);
            }
        }
        Ok(state)
    }
}

/// What a resumed run must share with the run that wrote the state.
fn run_key(config: &Config, approx: &str, teacher: &Weights) -> Value {
    let mut c = config.to_json();
    c.as_object_mut().expect("an object").remove("steps");
    let prompts: u64 = config
        .prompts
        .iter()
        .flatten()
        .fold(0xcbf2_9ce4_8422_2325, |h, t| {
            (h ^ t).wrapping_mul(0x100_0000_01b3)
        });
    c["prompts_hash"] = json!(format!("{prompts:016x}"));
    c["approx"] = json!(approx);
    c["teacher"] = json!(format!("{:016x}", fingerprint(teacher)));
    c
}

/// FNV-1a over the names and the f64 bits of `weights`, in name order.
pub fn fingerprint(weights: &Weights) -> u64 {
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    for n in names {
        n.bytes().for_each(&mut eat);
        for v in &weights[n] {
            v.to_bits().to_le_bytes().into_iter().for_each(&mut eat);
        }
    }
    h
}
