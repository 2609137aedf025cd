//! The output checkpoint: the input file's tensors, in its order, names, shapes and dtypes,
//! with the model's weights replaced by the trained ones.

use crate::{DistillError, Weights};
use comet_ir::WeightInfo;
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::path::Path;

/// Checks that `out` can be written before any training: its directory exists and it is
/// not a directory. A file created to probe is removed again.
///
/// # Errors
/// [`DistillError::Write`] naming the file and the OS's reason.
pub fn probe(out: &Path, what: &'static str) -> Result<(), DistillError> {
    let err = |message: String| DistillError::Write {
        what,
        path: out.to_path_buf(),
        message,
    };
    if out.is_dir() {
        return Err(err("it is a directory".into()));
    }
    let existed = out.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(out)
        .map_err(|e| err(e.to_string()))?;
    if !existed {
        std::fs::remove_file(out).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Writes `trained` to `out` in the layout of the checkpoint `input` (one safetensors
/// file): every tensor of `input` in its dtype, the model's weights (`infos`) from
/// `trained` (transposed back where the model declares them `transposed`), the others
/// copied.
///
/// # Errors
/// The input is not one readable safetensors file, a weight's dtype is not a float, or
/// `out` cannot be written.
pub fn write(
    input: &Path,
    infos: &[WeightInfo],
    trained: &Weights,
    out: &Path,
) -> Result<(), DistillError> {
    let bad = |message: String| DistillError::Weights {
        path: input.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(input).map_err(|e| {
        bad(format!(
            "cannot read it ({e}); `comet distill` writes the layout of one safetensors file, \
             not a sharded index"
        ))
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not safetensors: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let info = infos.iter().find(|w| w.tensor == name);
        let data = match info {
            None => view.data().to_vec(),
            Some(w) => {
                let x = &trained[&w.name];
                let x = if w.transposed {
                    x.t().to_owned()
                } else {
                    x.clone()
                };
                if x.shape() != view.shape() {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, the trained weight {:?}",
                        view.shape(),
                        x.shape()
                    )));
                }
                let x = x.as_standard_layout();
                encode(view.dtype(), x.iter().copied()).ok_or_else(|| {
                    bad(format!(
                        "tensor `{name}` is {:?}: only F64, F32, F16 and BF16 weights are trained",
                        view.dtype()
                    ))
                })?
            }
        };
        tensors.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                TensorView::new(*d, s.clone(), b).expect("sizes match"),
            )
        })
        .collect();
    let werr = |message: String| DistillError::Write {
        what: "checkpoint",
        path: out.to_path_buf(),
        message,
    };
    let buf =
        safetensors::serialize(views, meta.metadata().clone()).map_err(|e| werr(e.to_string()))?;
    std::fs::write(out, buf).map_err(|e| werr(e.to_string()))
}

/// Little-endian bytes of `xs` in `dtype` (rounded to nearest).
fn encode(dtype: Dtype, xs: impl Iterator<Item = f64>) -> Option<Vec<u8>> {
    Some(match dtype {
        Dtype::F64 => xs.flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F32 => xs.flat_map(|v| (v as f32).to_le_bytes()).collect(),
        Dtype::F16 => xs.flat_map(|v| f16::from_f64(v).to_le_bytes()).collect(),
        Dtype::BF16 => xs.flat_map(|v| bf16::from_f64(v).to_le_bytes()).collect(),
        _ => return None,
    })
}
