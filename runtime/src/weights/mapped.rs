//! A safetensors checkpoint mapped into memory, read one weight at a time: the files are
//! never copied whole, and a weight's f64 values exist only while the party encodes them
//! (the setup drops each weight that only set-up products read right after). Every weight
//! the plan declares is checked when the checkpoint is opened (present, its shape, a float
//! dtype), so a missing or mis-shaped tensor is an error before any party connects.
//!
//! A checkpoint is one `.safetensors` file, or the shards a Hugging Face index
//! (`model.safetensors.index.json`, whose `weight_map` maps each tensor to its file) lists;
//! a folder stands for its index, else its `model.safetensors`. Only the shards that hold
//! a weight the party provides are opened.

use comet_ir::WeightInfo;
use memmap2::Mmap;
use ndarray::ArrayD;
use safetensors::SafeTensors;
use safetensors::tensor::{Metadata, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{WeightError, convert, rename_hint, shape_error};

/// The name of a Hugging Face shard index in a checkpoint folder.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The name of a single-file checkpoint in a folder.
pub const SINGLE_FILE: &str = "model.safetensors";

/// One mapped safetensors file.
struct Shard {
    map: Mmap,
    path: PathBuf,
    /// Bytes before the tensor data: the 8-byte length and the JSON header.
    data_start: usize,
    metadata: Metadata,
}

impl Shard {
    fn open(path: &Path) -> Result<Shard, WeightError> {
        let io = |source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process; the checkpoint must not
        // be modified while a party runs (as with any input file), and every read below is
        // bounds-checked against the header, which was validated when the map was made.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (header, metadata) =
            SafeTensors::read_metadata(&map).map_err(|e| WeightError::Corrupt {
                origin: format!("`{}`", path.display()),
                message: e.to_string(),
            })?;
        Ok(Shard {
            data_start: 8 + header,
            path: path.to_path_buf(),
            metadata,
            map,
        })
    }

    fn names(&self) -> Vec<String> {
        self.metadata.tensors().into_keys().collect()
    }
}

/// A checkpoint whose weights are read and converted on demand.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// What was opened: the file, the index or the folder.
    path: PathBuf,
    /// The shard of each weight, by qualified name.
    shard_of: HashMap<String, usize>,
    /// The shard index, when the checkpoint is sharded.
    index: Option<PathBuf>,
    weights: HashMap<String, WeightInfo>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("shards", &self.shards.len())
            .field("weights", &self.weights.len())
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Maps the checkpoint at `path` (a `.safetensors` file, a shard index `….json`, or a
    /// folder holding `model.safetensors.index.json` or `model.safetensors`) and checks
    /// every one of `weights` in it.
    ///
    /// # Errors
    /// As [`super::load`]: a file cannot be read or is not a safetensors file, the index
    /// is malformed or names a shard that is missing, or a weight's tensor is absent, has
    /// another shape or a non-float dtype.
    pub fn open(path: &Path, weights: &[WeightInfo]) -> Result<Checkpoint, WeightError> {
        let (index, single) = if path.is_dir() {
            let index = path.join(INDEX_FILE);
            let single = path.join(SINGLE_FILE);
            if index.exists() {
                (Some(index), None)
            } else if single.exists() {
                (None, Some(single))
            } else {
                return Err(WeightError::NoCheckpoint {
                    dir: path.to_path_buf(),
                });
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            (Some(path.to_path_buf()), None)
        } else {
            (None, Some(path.to_path_buf()))
        };
        let (shards, shard_of) = match (&index, single) {
            (Some(index), _) => open_index(index, weights)?,
            (None, single) => open_single(&single.unwrap_or_default(), weights),
        };
        let checkpoint = Checkpoint {
            shards: shards
                .iter()
                .map(|p| Shard::open(p))
                .collect::<Result<_, _>>()?,
            path: path.to_path_buf(),
            shard_of,
            index,
            weights: weights
                .iter()
                .map(|w| (w.name.clone(), w.clone()))
                .collect(),
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

    /// What was opened: the file, the index or the folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of safetensors files mapped.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The tensor of weight `w`, as the file stores it.
    fn view(&self, w: &WeightInfo) -> Result<TensorView<'_>, WeightError> {
        let shard = &self.shards[self.shard_of[&w.name]];
        let missing = || {
            let names = shard.names();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            WeightError::Missing {
                weight: w.name.clone(),
                tensor: w.tensor.clone(),
                hint: match &self.index {
                    Some(index) => format!(
                        "; index `{}` places it in shard `{}`, which does not hold it",
                        index.display(),
                        shard.path.display()
                    ),
                    None => rename_hint(&w.tensor, &names),
                },
            }
        };
        let info = shard.metadata.info(&w.tensor).ok_or_else(missing)?;
        let (a, b) = info.data_offsets;
        let data =
            (shard.map.get(shard.data_start + a..shard.data_start + b)).ok_or_else(|| {
                WeightError::Corrupt {
                    origin: format!("`{}`", shard.path.display()),
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

/// Shards and weight placement when one file holds every weight.
type Placement = (Vec<PathBuf>, HashMap<String, usize>);

fn open_single(path: &Path, weights: &[WeightInfo]) -> Placement {
    (
        vec![path.to_path_buf()],
        weights.iter().map(|w| (w.name.clone(), 0)).collect(),
    )
}

/// Reads a shard index and places each weight in its shard; only the shards some weight
/// needs are listed.
fn open_index(index: &Path, weights: &[WeightInfo]) -> Result<Placement, WeightError> {
    let text = std::fs::read_to_string(index).map_err(|source| WeightError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let bad = |message: String| WeightError::Index {
        index: index.to_path_buf(),
        message,
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| {
            bad(
                "`weight_map` is missing: expected an object mapping each tensor to its shard file"
                    .into(),
            )
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    let mut shards = Vec::new();
    let mut shard_of = HashMap::new();
    for w in weights {
        let Some(entry) = map.get(&w.tensor) else {
            let names: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(WeightError::Missing {
                weight: w.name.clone(),
                tensor: w.tensor.clone(),
                hint: format!(
                    " (index `{}`){}",
                    index.display(),
                    rename_hint(&w.tensor, &names)
                ),
            });
        };
        let file = entry.as_str().ok_or_else(|| {
            bad(format!(
                "`weight_map.{}` is {entry}: expected a file name",
                w.tensor
            ))
        })?;
        if Path::new(file).components().count() != 1 {
            return Err(bad(format!(
                "`weight_map.{}` is {file:?}: expected a file name in the index's folder",
                w.tensor
            )));
        }
        let next = files.len();
        let i = *files.entry(file.to_string()).or_insert(next);
        if i == shards.len() {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(WeightError::MissingShard {
                    shard: path,
                    index: index.to_path_buf(),
                    tensor: w.tensor.clone(),
                });
            }
            shards.push(path);
        }
        shard_of.insert(w.name.clone(), i);
    }
    Ok((shards, shard_of))
}
