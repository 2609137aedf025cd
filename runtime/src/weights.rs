//! Loading a program's weights from a safetensors checkpoint: one file, or the shards of a
//! Hugging Face index (`model.safetensors.index.json`; see [`Checkpoint::open`]).
//!
//! For each [`WeightInfo`] the checkpoint tensor `tensor` is read (F32, F16, BF16 or F64),
//! checked against [`WeightInfo::stored_shape`], transposed when the model declares it
//! `transposed`, and returned under the weight's qualified name as f64, the form
//! [`crate::plain::eval`] takes. A missing tensor, a wrong shape, an integer dtype or a
//! corrupt file is an error that names the tensor and the weight; when the checkpoint has
//! the tensor under another prefix the error suggests the `rename` line that fixes it.

use comet_ir::WeightInfo;
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a safetensors file (bad header, truncated data).
    #[error("{origin} is not a valid safetensors file: {message}")]
    Corrupt {
        /// Where the bytes came from.
        origin: String,
        /// What the parser found.
        message: String,
    },
    /// The checkpoint has no tensor of that name.
    #[error("weight `{weight}` needs tensor `{tensor}`, which the checkpoint does not have{hint}")]
    Missing {
        /// The weight's qualified name.
        weight: String,
        /// The tensor looked for.
        tensor: String,
        /// A suggestion (empty, or starting with `; `).
        hint: String,
    },
    /// The tensor's shape is not the declared one.
    #[error(
        "tensor `{tensor}` (weight `{weight}`) has shape {actual:?} in the checkpoint, \
         expected {expected:?}{hint}"
    )]
    Shape {
        /// The weight's qualified name.
        weight: String,
        /// The tensor.
        tensor: String,
        /// The stored shape the model declares.
        expected: Vec<usize>,
        /// The shape in the checkpoint.
        actual: Vec<usize>,
        /// A suggestion (empty, or starting with `; `).
        hint: String,
    },
    /// A shard index (`model.safetensors.index.json`) is malformed.
    #[error("shard index `{index}`: {message}")]
    Index {
        /// The index file.
        index: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A shard the index names does not exist.
    #[error(
        "shard `{shard}` is missing: index `{index}` places tensor `{tensor}` in it (download \
         every shard the index lists)"
    )]
    MissingShard {
        /// The shard's path.
        shard: PathBuf,
        /// The index file.
        index: PathBuf,
        /// A tensor it should hold.
        tensor: String,
    },
    /// A folder given as the checkpoint holds neither an index nor `model.safetensors`.
    #[error(
        "`{dir}` holds no checkpoint: expected `model.safetensors.index.json` (sharded) or \
         `model.safetensors` in it"
    )]
    NoCheckpoint {
        /// The folder.
        dir: PathBuf,
    },
    /// The tensor does not hold floating-point numbers.
    #[error(
        "tensor `{tensor}` (weight `{weight}`) has dtype {dtype}: only F32, F16, BF16 and F64 \
         weights can be loaded"
    )]
    Dtype {
        /// The weight's qualified name.
        weight: String,
        /// The tensor.
        tensor: String,
        /// Its dtype as safetensors names it.
        dtype: String,
    },
}

/// Weights by qualified name.
pub type Weights = HashMap<String, ArrayD<f64>>;

/// Reads the checkpoint at `path` (a safetensors file, a shard index or a folder: see
/// [`Checkpoint::open`]) and returns `weights` by qualified name, converting one tensor at
/// a time from the mapped files.
pub fn load(path: &Path, weights: &[WeightInfo]) -> Result<Weights, WeightError> {
    let checkpoint = Checkpoint::open(path, weights)?;
    weights
        .iter()
        .map(|w| Ok((w.name.clone(), checkpoint.load(&w.name)?)))
        .collect()
}

/// Like [`load`], from the bytes of a safetensors file.
pub fn from_bytes(bytes: &[u8], weights: &[WeightInfo]) -> Result<Weights, WeightError> {
    parse(bytes, "the buffer", weights)
}

fn parse(bytes: &[u8], origin: &str, weights: &[WeightInfo]) -> Result<Weights, WeightError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| WeightError::Corrupt {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    weights
        .iter()
        .map(|w| Ok((w.name.clone(), one(&file, w)?)))
        .collect()
}

/// One weight: read, checked, converted, transposed if declared so.
fn one(file: &SafeTensors, w: &WeightInfo) -> Result<ArrayD<f64>, WeightError> {
    let view = file.tensor(&w.tensor).map_err(|_| WeightError::Missing {
        weight: w.name.clone(),
        tensor: w.tensor.clone(),
        hint: rename_hint(&w.tensor, &file.names()),
    })?;
    convert(&view, w)
}

/// A tensor's values as weight `w`: checked against its declared shape, converted to f64,
/// transposed if declared so.
fn convert(view: &TensorView, w: &WeightInfo) -> Result<ArrayD<f64>, WeightError> {
    let expected: Vec<usize> = w.stored_shape().iter().map(|&d| d as usize).collect();
    if view.shape() != expected.as_slice() {
        return Err(shape_error(w, expected, view.shape().to_vec()));
    }
    let values = to_f64(view).ok_or_else(|| WeightError::Dtype {
        weight: w.name.clone(),
        tensor: w.tensor.clone(),
        dtype: view.dtype().to_string(),
    })?;
    let stored =
        ArrayD::from_shape_vec(IxDyn(&expected), values).map_err(|e| WeightError::Corrupt {
            origin: format!("tensor `{}`", w.tensor),
            message: e.to_string(),
        })?;
    Ok(if w.transposed {
        stored.reversed_axes().as_standard_layout().into_owned()
    } else {
        stored
    })
}

fn shape_error(w: &WeightInfo, expected: Vec<usize>, actual: Vec<usize>) -> WeightError {
    let mut reversed = expected.clone();
    reversed.reverse();
    let hint = if actual == reversed && reversed != expected {
        let flip = if w.transposed {
            "not `transposed`"
        } else {
            "`transposed`"
        };
        format!("; it looks transposed: declare the weight {flip}")
    } else {
        String::new()
    };
    WeightError::Shape {
        weight: w.name.clone(),
        tensor: w.tensor.clone(),
        expected,
        actual,
        hint,
    }
}

/// The tensor's elements as f64 (little-endian), or `None` for a non-float dtype.
fn to_f64(view: &TensorView) -> Option<Vec<f64>> {
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => words(data, |b: [u8; 4]| f64::from(f32::from_le_bytes(b))),
        Dtype::F16 => words(data, |b: [u8; 2]| half::f16::from_le_bytes(b).to_f64()),
        Dtype::BF16 => words(data, |b: [u8; 2]| half::bf16::from_le_bytes(b).to_f64()),
        Dtype::F64 => words(data, f64::from_le_bytes),
        _ => return None,
    };
    Some(values)
}

fn words<const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
    data.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks of N bytes")))
        .collect()
}

/// A `rename` line that would find `tensor`, when the checkpoint has it under another
/// prefix (`model.x` for `x`, or `x` for `model.x`).
fn rename_hint(tensor: &str, names: &[&str]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort();
    let added = sorted
        .iter()
        .filter_map(|n| n.strip_suffix(tensor).map(|p| (p, *n)))
        .find(|(p, _)| p.ends_with('.') || p.ends_with('/'));
    if let Some((prefix, found)) = added {
        return format!("; it has `{found}`: add `rename \"\" => \"{prefix}\";` to the model");
    }
    let removed = sorted
        .iter()
        .filter_map(|n| tensor.strip_suffix(*n).map(|p| (p, *n)))
        .find(|(p, _)| p.ends_with('.') || p.ends_with('/'));
    match removed {
        Some((prefix, found)) => {
            format!("; it has `{found}`: add `rename \"{prefix}\" => \"\";` to the model")
        }
        None => String::new(),
    }
}

mod mapped;
pub mod stats;
#[cfg(test)]
mod tests;

pub use mapped::{Checkpoint, INDEX_FILE, SINGLE_FILE};
