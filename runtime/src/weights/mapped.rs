//! A safetensors checkpoint mapped into memory, read one weight at a time: the file is
//! never copied whole, and a weight's f64 values exist only while the party encodes them
//! (the setup drops each weight that only set-up products read right after). Every weight
//! the plan declares is checked when the checkpoint is opened (present, its shape, a float
//! dtype), so a missing or mis-shaped tensor is an error before any party connects.

use comet_ir::WeightInfo;
use memmap2::Mmap;
use ndarray::ArrayD;
use safetensors::SafeTensors;
use safetensors::tensor::{Metadata, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{WeightError, convert, rename_hint, shape_error};

/// A checkpoint whose weights are read and converted on demand.
pub struct Checkpoint {
    map: Mmap,
    path: PathBuf,
    /// Bytes before the tensor data: the 8-byte length and the JSON header.
    data_start: usize,
    metadata: Metadata,
    weights: HashMap<String, WeightInfo>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("weights", &self.weights.len())
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Maps the safetensors file at `path` and checks every one of `weights` in it.
    ///
    /// # Errors
    /// As [`super::load`]: the file cannot be read, is not a safetensors file, or lacks a
    /// weight's tensor, has it in another shape or a non-float dtype.
    pub fn open(path: &Path, weights: &[WeightInfo]) -> Result<Checkpoint, WeightError> {
        let io = |source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process; the checkpoint must not
        // be modified while a party runs (as with any input file), and every read below is
        // bounds-checked against the header, which was validated when the map was made.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let corrupt = |e: safetensors::SafeTensorError| WeightError::Corrupt {
            origin: format!("`{}`", path.display()),
            message: e.to_string(),
        };
        let (header, metadata) = SafeTensors::read_metadata(&map).map_err(corrupt)?;
        let checkpoint = Checkpoint {
            data_start: 8 + header,
            path: path.to_path_buf(),
            metadata,
            weights: weights
                .iter()
                .map(|w| (w.name.clone(), w.clone()))
                .collect(),
            map,
        };
        for w in weights {
            checkpoint.check(w)?;
        }
        Ok(checkpoint)
    }

    /// Whether it holds weight `name` (a weight the plan declares).
    pub fn has(&self, name: &str) -> bool {
        self.weights.contains_key(name)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor of weight `w`, as the file stores it.
    fn view(&self, w: &WeightInfo) -> Result<TensorView<'_>, WeightError> {
        let missing = || {
            let tensors = self.metadata.tensors();
            let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
            WeightError::Missing {
                weight: w.name.clone(),
                tensor: w.tensor.clone(),
                hint: rename_hint(&w.tensor, &names),
            }
        };
        let info = self.metadata.info(&w.tensor).ok_or_else(missing)?;
        let (a, b) = info.data_offsets;
        let data = (self.map.get(self.data_start + a..self.data_start + b)).ok_or_else(|| {
            WeightError::Corrupt {
                origin: format!("`{}`", self.path.display()),
                message: format!("tensor `{}` runs past the end of the file", w.tensor),
            }
        })?;
        TensorView::new(info.dtype, info.shape.clone(), data).map_err(|e| WeightError::Corrupt {
            origin: format!("tensor `{}`", w.tensor),
            message: e.to_string(),
        })
    }

    /// Checks weight `w`'s tensor without converting it.
    fn check(&self, w: &WeightInfo) -> Result<(), WeightError> {
        let view = self.view(w)?;
        let expected: Vec<usize> = w.stored_shape().iter().map(|&d| d as usize).collect();
        if view.shape() != expected.as_slice() {
            return Err(shape_error(w, expected, view.shape().to_vec()));
        }
        match view.dtype() {
            safetensors::Dtype::F32
            | safetensors::Dtype::F16
            | safetensors::Dtype::BF16
            | safetensors::Dtype::F64 => Ok(()),
            d => Err(WeightError::Dtype {
                weight: w.name.clone(),
                tensor: w.tensor.clone(),
                dtype: d.to_string(),
            }),
        }
    }

    /// Weight `name` as f64, converted now (and transposed if declared so).
    ///
    /// # Errors
    /// If the plan declares no such weight, or its tensor cannot be read.
    pub fn load(&self, name: &str) -> Result<ArrayD<f64>, WeightError> {
        let w = self.weights.get(name).ok_or_else(|| WeightError::Missing {
            weight: name.to_string(),
            tensor: name.to_string(),
            hint: String::new(),
        })?;
        convert(&self.view(w)?, w)
    }
}
