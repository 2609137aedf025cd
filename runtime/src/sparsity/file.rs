//! The predictor file: safetensors, F64 (F32, F16 and BF16 are read too).
//!
//! Tensors, for every FFN `k` in [`comet_ir::ffn::find_ffns`] order:
//!
//! | tensor              | shape     | meaning                                         |
//! |---------------------|-----------|-------------------------------------------------|
//! | `ffn.{k}.p1`        | `[d, r]`  | `P1`                                            |
//! | `ffn.{k}.p2`        | `[r, ff]` | `P2` (per neuron; the block max is taken after) |
//! | `ffn.{k}.bias`      | `[ff]`    | added to `x·P1·P2`                              |
//! | `ffn.{k}.threshold` | `[1]`     | `δ`: predicted active iff block score `≥ δ`     |
//! | `ffn.{k}.tau`       | `[1]`     | `τ` the threshold was calibrated for (optional) |
//!
//! Metadata (`__metadata__`, strings): `format` = [`PREDICTOR_FORMAT`], `version` = `1`,
//! `ffns` (count), `block`, `rank`, `score` (`max` | `max_abs`), `target_recall`,
//! `activity` (`nonzero` | `magnitude:S`), `input` (`ffn` | `attention`, what the
//! predictors read; `ffn` when absent), `model` (name), and per FFN `ffn.{k}.weight`
//! (the qualified name of its `W_act`) and `ffn.{k}.layer`. `format`, `ffns` and `block`
//! are required; `ffn.{k}.weight`, when present, must name the model's `W_act`.

use super::{Activity, FfnPredictor, Predictor, Score, SparsityError};
use comet_ir::ffn::{Ffn, PredictorInput};
use ndarray::{Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// The `format` metadata of a predictor file.
pub const PREDICTOR_FORMAT: &str = "comet-sparsity-predictor";

impl Predictor {
    /// The file's bytes (the format: [`mod@super::file`]).
    pub fn to_bytes(&self, ffns: &[Ffn]) -> Vec<u8> {
        let mut meta = HashMap::from([
            ("format".to_string(), PREDICTOR_FORMAT.to_string()),
            ("version".to_string(), "1".to_string()),
            ("model".to_string(), self.model.clone()),
            ("ffns".to_string(), self.ffns.len().to_string()),
            ("block".to_string(), self.block.to_string()),
            ("rank".to_string(), self.rank.to_string()),
            ("score".to_string(), self.score.name().to_string()),
            ("target_recall".to_string(), self.target_recall.to_string()),
            ("activity".to_string(), self.activity.to_text()),
            ("input".to_string(), self.input.name().to_string()),
        ]);
        for (k, f) in ffns.iter().enumerate() {
            meta.insert(format!("ffn.{k}.weight"), f.weights.act.clone());
            meta.insert(format!("ffn.{k}.layer"), f.label());
        }
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut put = |name: String, shape: Vec<usize>, values: &mut dyn Iterator<Item = f64>| {
            let bytes = values.flat_map(f64::to_le_bytes).collect();
            tensors.push((name, shape, bytes));
        };
        for (k, p) in self.ffns.iter().enumerate() {
            let (d, r) = p.p1.dim();
            put(format!("ffn.{k}.p1"), vec![d, r], &mut p.p1.iter().copied());
            let ff = p.p2.ncols();
            put(
                format!("ffn.{k}.p2"),
                vec![r, ff],
                &mut p.p2.iter().copied(),
            );
            put(
                format!("ffn.{k}.bias"),
                vec![ff],
                &mut p.bias.iter().copied(),
            );
            put(
                format!("ffn.{k}.threshold"),
                vec![1],
                &mut [p.threshold].into_iter(),
            );
            put(format!("ffn.{k}.tau"), vec![1], &mut [p.tau].into_iter());
        }
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, s, b)| {
                let v = TensorView::new(Dtype::F64, s.clone(), b).expect("sizes match");
                (n.clone(), v)
            })
            .collect();
        safetensors::serialize(views, Some(meta)).expect("serializable tensors")
    }

    /// Writes the file.
    pub fn save(&self, path: &Path, ffns: &[Ffn]) -> Result<(), SparsityError> {
        std::fs::write(path, self.to_bytes(ffns)).map_err(|source| SparsityError::Io {
            what: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a predictor file and checks it against the model's FFNs: their count, every
    /// tensor's presence and shape, the weight names recorded in it.
    pub fn load(path: &Path, model: &str, ffns: &[Ffn]) -> Result<Predictor, SparsityError> {
        let bytes = std::fs::read(path).map_err(|source| SparsityError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Predictor::from_bytes(&bytes, &format!("`{}`", path.display()), model, ffns)
    }

    /// Like [`Predictor::load`], from bytes; `origin` names them in errors.
    pub fn from_bytes(
        bytes: &[u8],
        origin: &str,
        model: &str,
        ffns: &[Ffn],
    ) -> Result<Predictor, SparsityError> {
        let shapes: Vec<FfnShape> = ffns.iter().map(FfnShape::of).collect();
        Predictor::from_bytes_for(bytes, origin, model, &shapes)
    }

    /// Reads a predictor file for a compiled plan, whose FFNs are known by their shapes
    /// only (`shapes`; the weight names are not checked).
    pub fn load_for(
        path: &Path,
        model: &str,
        shapes: &[FfnShape],
    ) -> Result<Predictor, SparsityError> {
        let bytes = std::fs::read(path).map_err(|source| SparsityError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Predictor::from_bytes_for(&bytes, &format!("`{}`", path.display()), model, shapes)
    }

    fn from_bytes_for(
        bytes: &[u8],
        origin: &str,
        model: &str,
        ffns: &[FfnShape],
    ) -> Result<Predictor, SparsityError> {
        let err = |message: String| SparsityError::Predictor {
            origin: origin.to_string(),
            message,
        };
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| meta.get(key).map(String::as_str);
        match get("format") {
            Some(PREDICTOR_FORMAT) => {}
            Some(other) => {
                return Err(err(format!(
                    "metadata `format` is `{other}`, expected `{PREDICTOR_FORMAT}`"
                )));
            }
            None => {
                return Err(err(format!(
                    "no metadata `format` = `{PREDICTOR_FORMAT}`: not a predictor file"
                )));
            }
        }
        let number = |key: &str| -> Result<usize, SparsityError> {
            let v = get(key).ok_or_else(|| err(format!("metadata `{key}` is missing")))?;
            v.parse()
                .map_err(|_| err(format!("metadata `{key}` = `{v}` is not a count")))
        };
        let count = number("ffns")?;
        if count != ffns.len() {
            return Err(err(format!(
                "it has predictors for {count} FFNs (metadata `ffns`), model `{model}` has {}",
                ffns.len()
            )));
        }
        let block = number("block")?;
        if block == 0 {
            return Err(err(
                "block size 0 (metadata `block`): a block has at least one neuron".into(),
            ));
        }
        if let Some(f) = ffns.iter().find(|f| block as u64 > f.ff) {
            return Err(err(format!(
                "block size {block} (metadata `block`) does not fit FFNs of width {}",
                f.ff
            )));
        }
        let score = match get("score") {
            None => Score::Max,
            Some(s) => Score::from_name(s).ok_or_else(|| {
                err(format!(
                    "metadata `score` = `{s}`: expected max, max_abs or sum"
                ))
            })?,
        };
        let activity = match get("activity") {
            None => Activity::Nonzero,
            Some(a) => Activity::from_text(a).ok_or_else(|| {
                err(format!(
                    "metadata `activity` = `{a}`: expected nonzero or magnitude:S, 0 ≤ S < 1"
                ))
            })?,
        };
        let input = match get("input") {
            None => PredictorInput::Ffn,
            Some(i) => PredictorInput::from_name(i).ok_or_else(|| {
                err(format!(
                    "metadata `input` = `{i}`: expected ffn or attention"
                ))
            })?,
        };
        let target_recall = get("target_recall")
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::NAN);
        let mut rank: Option<usize> = match get("rank") {
            None => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| err(format!("metadata `rank` = `{v}` is not a count")))?,
            ),
        };
        let mut out = Vec::with_capacity(count);
        for (k, f) in ffns.iter().enumerate() {
            if let (Some(w), Some(act)) = (get(&format!("ffn.{k}.weight")), &f.act)
                && w != act
            {
                return Err(err(format!(
                    "FFN {k} was derived from weight `{w}` (metadata `ffn.{k}.weight`), but \
                     the model's FFN {k} ({}) projects with `{act}`",
                    f.label,
                )));
            }
            let (d, ff) = (f.d as usize, f.ff as usize);
            let p1 = tensor(&file, &format!("ffn.{k}.p1"), None, &err)?;
            let r = *p1.1.get(1).unwrap_or(&0);
            let r = *rank.get_or_insert(r);
            let p1 = shaped(p1, &format!("ffn.{k}.p1"), &[d, r], &err)?;
            let p2 = tensor(&file, &format!("ffn.{k}.p2"), Some(&[r, ff]), &err)?;
            let p2 = shaped(p2, &format!("ffn.{k}.p2"), &[r, ff], &err)?;
            let bias = tensor(&file, &format!("ffn.{k}.bias"), Some(&[ff]), &err)?;
            let bias = shaped(bias, &format!("ffn.{k}.bias"), &[ff], &err)?;
            let thr = tensor(&file, &format!("ffn.{k}.threshold"), Some(&[1]), &err)?;
            let thr = shaped(thr, &format!("ffn.{k}.threshold"), &[1], &err)?;
            let tau = match file.tensor(&format!("ffn.{k}.tau")) {
                Ok(_) => {
                    let t = tensor(&file, &format!("ffn.{k}.tau"), Some(&[1]), &err)?;
                    shaped(t, &format!("ffn.{k}.tau"), &[1], &err)?[0]
                }
                Err(_) => 0.0,
            };
            if r == 0 {
                return Err(err(format!(
                    "tensor `ffn.{k}.p1` has rank 0 (shape [{d}, 0])"
                )));
            }
            out.push(FfnPredictor {
                p1: Array2::from_shape_vec((d, r), p1).expect("checked"),
                p2: Array2::from_shape_vec((r, ff), p2).expect("checked"),
                bias: Array1::from(bias),
                threshold: thr[0],
                tau,
            });
        }
        let rank = rank.unwrap_or(0);
        Ok(Predictor {
            model: get("model").unwrap_or(model).to_string(),
            block,
            rank,
            score,
            target_recall,
            activity,
            input,
            ffns: out,
        })
    }
}

/// What loading a predictor needs to know of an FFN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfnShape {
    /// Input width.
    pub d: u64,
    /// Neurons.
    pub ff: u64,
    /// The projection under the activation, when known (checked against the file).
    pub act: Option<String>,
    /// How errors name it (`layer 3`).
    pub label: String,
}

impl FfnShape {
    /// The shape of a detected FFN.
    pub fn of(f: &Ffn) -> FfnShape {
        FfnShape {
            d: f.d,
            ff: f.ff,
            act: Some(f.weights.act.clone()),
            label: f.label(),
        }
    }
}

/// A tensor's values and shape; missing → an error naming the tensor and `expected`.
fn tensor(
    file: &SafeTensors,
    name: &str,
    expected: Option<&[usize]>,
    err: &dyn Fn(String) -> SparsityError,
) -> Result<(Vec<f64>, Vec<usize>), SparsityError> {
    let view = file.tensor(name).map_err(|_| {
        err(match expected {
            Some(s) => format!("tensor `{name}` is missing (expected shape {s:?})"),
            None => format!("tensor `{name}` is missing"),
        })
    })?;
    let values = to_f64(&view).ok_or_else(|| {
        err(format!(
            "tensor `{name}` has dtype {}: expected F64, F32, F16 or BF16",
            view.dtype()
        ))
    })?;
    Ok((values, view.shape().to_vec()))
}

/// The values if the shape is `expected`, else an error naming both shapes.
fn shaped(
    (values, shape): (Vec<f64>, Vec<usize>),
    name: &str,
    expected: &[usize],
    err: &dyn Fn(String) -> SparsityError,
) -> Result<Vec<f64>, SparsityError> {
    if shape != expected {
        return Err(err(format!(
            "tensor `{name}` has shape {shape:?}, the model needs {expected:?}"
        )));
    }
    Ok(values)
}

fn to_f64(view: &TensorView) -> Option<Vec<f64>> {
    let data = view.data();
    fn words<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        data.chunks_exact(N)
            .map(|c| f(c.try_into().expect("N bytes")))
            .collect()
    }
    Some(match view.dtype() {
        Dtype::F64 => words(data, f64::from_le_bytes),
        Dtype::F32 => words(data, |b: [u8; 4]| f64::from(f32::from_le_bytes(b))),
        Dtype::F16 => words(data, |b: [u8; 2]| half::f16::from_le_bytes(b).to_f64()),
        Dtype::BF16 => words(data, |b: [u8; 2]| half::bf16::from_le_bytes(b).to_f64()),
        _ => return None,
    })
}
