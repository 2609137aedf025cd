//! `comet import`: a `.model` file written from a Hugging Face checkpoint folder.
//!
//! The folder holds `config.json` and, usually, the weights: `model.safetensors`, or shards
//! listed by `model.safetensors.index.json`. [`import_dir`] reads the config, picks the
//! family from its `model_type` (one file per family: [`llama`] for `llama`, `mistral` and
//! `qwen2`, [`gpt2`], [`opt`], [`bert`]), and writes the architecture in the `.model`
//! language with the checkpoint's tensor names and layouts. Where a family's checkpoints
//! name tensors in more than one way (GPT-2 with or without `transformer.`, OPT's
//! `decoder.` or `model.decoder.`, BERT's `LayerNorm.gamma` or `LayerNorm.weight`), the
//! names are read from the checkpoint's headers (only the headers: no tensor is read); a
//! folder without weights gets the names of the family's Hub checkpoints.
//!
//! The generated source is then lowered, and every weight it declares is looked up in the
//! checkpoint with its stored shape, so a config that does not match its weights is an
//! error here, not when a party starts. An unknown `model_type`, or an option the
//! `.model` language cannot express (`rope_scaling`, sliding windows, a `head_dim` other
//! than `hidden_size / num_attention_heads`, ...), is an error that names the field.

pub mod bert;
pub mod gpt2;
pub mod llama;
pub mod opt;

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The `model_type`s [`import_dir`] understands.
pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "gpt2", "opt", "bert"];

/// Why a folder could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file does not parse, or is not an object.
    #[error("`{path}` is not a JSON object: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        message: String,
    },
    /// A config field is missing or has the wrong kind of value.
    #[error("{origin}: field `{field}` {message}")]
    Field {
        /// The config file.
        origin: String,
        /// The field.
        field: String,
        /// What was found and what was expected.
        message: String,
    },
    /// The config's `model_type` is not one of [`SUPPORTED`].
    #[error(
        "{origin}: field `model_type` is {found}: `comet import` supports {}",
        SUPPORTED.join(", ")
    )]
    UnknownModelType {
        /// The config file.
        origin: String,
        /// The value found (JSON).
        found: String,
    },
    /// A config option the `.model` language cannot express.
    #[error("{origin}: field `{field}` is {value}: {why}")]
    Unsupported {
        /// The config file.
        origin: String,
        /// The field.
        field: String,
        /// Its value (JSON).
        value: String,
        /// Why it cannot be imported.
        why: String,
    },
    /// The checkpoint does not hold what the config describes, or cannot be read.
    #[error("{0}")]
    Checkpoint(String),
    /// The generated source does not compile: an importer bug, reported with the source.
    #[error("internal error: the generated model does not lower: {message}\n{source_text}")]
    Internal {
        /// The compiler's message.
        message: String,
        /// The generated source.
        source_text: String,
    },
}

/// An imported model.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The `.model` source.
    pub source: String,
    /// The config's `model_type`.
    pub model_type: String,
    /// Weight tensors the generated model reads.
    pub weights: usize,
    /// Whether the tensor names and shapes were checked against a checkpoint in the
    /// folder (`false`: no safetensors there, the Hub's names were assumed).
    pub checked: bool,
}

/// Imports the Hugging Face folder `dir`: `dir/config.json` and the checkpoint's headers.
/// `name` is the model's name in the `.model` file (default: the folder's name, made an
/// identifier).
///
/// # Errors
/// See [`ImportError`].
pub fn import_dir(dir: &Path, name: Option<&str>) -> Result<Imported, ImportError> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let tensors = Tensors::from_dir(dir)?;
    let name = match name {
        Some(n) => identifier(n),
        None => identifier(
            &dir.canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "imported".into()),
        ),
    };
    import_config(
        &config,
        &format!("`{}`", config_path.display()),
        &tensors,
        &name,
    )
}

/// Imports from a parsed `config.json` (`origin` names it in errors) and the checkpoint's
/// tensors, as a model named `name` (an identifier).
///
/// # Errors
/// See [`ImportError`].
pub fn import_config(
    config: &Map<String, Value>,
    origin: &str,
    tensors: &Tensors,
    name: &str,
) -> Result<Imported, ImportError> {
    let c = Config {
        json: config,
        origin: origin.to_string(),
    };
    let model_type = match config.get("model_type") {
        Some(Value::String(s)) => s.clone(),
        None => {
            return Err(c.field(
                "model_type",
                "is missing: expected a string such as \"llama\"",
            ));
        }
        Some(other) => {
            return Err(ImportError::UnknownModelType {
                origin: c.origin.clone(),
                found: other.to_string(),
            });
        }
    };
    let source = match model_type.as_str() {
        "llama" | "mistral" | "qwen2" => llama::generate(&c, &model_type, tensors, name)?,
        "gpt2" => gpt2::generate(&c, tensors, name)?,
        "opt" => opt::generate(&c, tensors, name)?,
        "bert" => bert::generate(&c, tensors, name)?,
        other => {
            return Err(ImportError::UnknownModelType {
                origin: c.origin.clone(),
                found: format!("{other:?}"),
            });
        }
    };
    let program = crate::driver::lower_only(&source, "imported.model").map_err(|e| {
        ImportError::Internal {
            message: match e {
                crate::CompileError::Source(d) => d.render_plain(),
                e => e.to_string(),
            },
            source_text: source.clone(),
        }
    })?;
    for w in &program.info.weights {
        tensors.check(&w.tensor, &w.stored_shape(), &w.name)?;
    }
    Ok(Imported {
        weights: program.info.weights.len(),
        checked: tensors.known.is_some(),
        source,
        model_type,
    })
}

/// `text` as a `.model` identifier: letters, digits and `_`, not starting with a digit
/// (`opt-1.3b` → `opt_1_3b`), and not a keyword (a folder named `model` → `model_`).
pub fn identifier(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "m_");
    }
    if crate::front::parse::is_keyword(&s) {
        s.push('_');
    }
    s
}

fn read_json(path: &Path) -> Result<Map<String, Value>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ImportError::Json {
            path: path.to_path_buf(),
            message: "expected an object".into(),
        }),
        Err(e) => Err(ImportError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The checkpoint's tensors by name, with their shapes and the file holding each; or none
/// known (a folder without weights).
#[derive(Debug, Clone, Default)]
pub struct Tensors {
    /// Tensor name → (shape, file), when the folder has a checkpoint.
    known: Option<BTreeMap<String, (Vec<u64>, PathBuf)>>,
}

impl Tensors {
    /// No checkpoint: every name is assumed present.
    pub fn unknown() -> Tensors {
        Tensors { known: None }
    }

    /// Tensors named `names` with shapes, as if in one file `file` (for tests).
    pub fn from_shapes<'a>(names: impl IntoIterator<Item = (&'a str, Vec<u64>)>) -> Tensors {
        Tensors {
            known: Some(
                names
                    .into_iter()
                    .map(|(n, s)| (n.to_string(), (s, PathBuf::from("model.safetensors"))))
                    .collect(),
            ),
        }
    }

    /// The checkpoint in `dir`: the shards of `model.safetensors.index.json`, else
    /// `model.safetensors`, else none. Only the headers are read.
    ///
    /// # Errors
    /// A shard the index names is missing, or a header does not parse.
    pub fn from_dir(dir: &Path) -> Result<Tensors, ImportError> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let mut known = BTreeMap::new();
        if index.exists() {
            let json = read_json(&index)?;
            let Some(Value::Object(map)) = json.get("weight_map") else {
                return Err(ImportError::Checkpoint(format!(
                    "`{}`: field `weight_map` is missing: expected an object mapping each \
                     tensor to its shard file",
                    index.display()
                )));
            };
            let mut shards: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (tensor, file) in map {
                let Some(file) = file.as_str() else {
                    return Err(ImportError::Checkpoint(format!(
                        "`{}`: `weight_map.{tensor}` is {file}: expected a file name",
                        index.display()
                    )));
                };
                shards.entry(file).or_default().push(tensor);
            }
            for (file, listed) in shards {
                let path = dir.join(file);
                if !path.exists() {
                    return Err(ImportError::Checkpoint(format!(
                        "shard `{}` is missing: `{}` lists {} tensors in it (`{}`, …)",
                        path.display(),
                        index.display(),
                        listed.len(),
                        listed[0]
                    )));
                }
                for (name, shape) in header(&path)? {
                    known.insert(name, (shape, path.clone()));
                }
                if let Some(absent) = listed.iter().find(|t| !known.contains_key(**t)) {
                    return Err(ImportError::Checkpoint(format!(
                        "`{}` lists tensor `{absent}` in shard `{}`, which does not hold it",
                        index.display(),
                        path.display()
                    )));
                }
            }
        } else if single.exists() {
            for (name, shape) in header(&single)? {
                known.insert(name, (shape, single.clone()));
            }
        } else {
            return Ok(Tensors::unknown());
        }
        Ok(Tensors { known: Some(known) })
    }

    /// Whether the checkpoint has `name` (`None`: no checkpoint known).
    pub fn has(&self, name: &str) -> Option<bool> {
        self.known.as_ref().map(|k| k.contains_key(name))
    }

    /// Checks that `tensor` is present with shape `shape` (for weight `weight`).
    fn check(&self, tensor: &str, shape: &[u64], weight: &str) -> Result<(), ImportError> {
        let Some(known) = &self.known else {
            return Ok(());
        };
        match known.get(tensor) {
            None => Err(ImportError::Checkpoint(format!(
                "the checkpoint has no tensor `{tensor}`, which the config implies (weight \
                 `{weight}`, shape {shape:?})"
            ))),
            Some((actual, file)) if actual != shape => Err(ImportError::Checkpoint(format!(
                "tensor `{tensor}` in `{}` has shape {actual:?}, but the config implies \
                 {shape:?} (weight `{weight}`)",
                file.display()
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// The tensor names and shapes in a safetensors file's header (the file's first bytes: a
/// little-endian u64 length, then that many bytes of JSON).
fn header(path: &Path) -> Result<Vec<(String, Vec<u64>)>, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |message: String| {
        ImportError::Checkpoint(format!(
            "`{}` is not a safetensors file: {message}",
            path.display()
        ))
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| corrupt("shorter than its 8-byte header length".into()))?;
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(io)?.len();
    if len > size.saturating_sub(8) || len > 100 << 20 {
        return Err(corrupt(format!(
            "its header length {len} exceeds the file ({size} bytes)"
        )));
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact(&mut text).map_err(io)?;
    let json: Map<String, Value> =
        serde_json::from_slice(&text).map_err(|e| corrupt(format!("its header: {e}")))?;
    let mut out = Vec::with_capacity(json.len());
    for (name, info) in json {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
            .ok_or_else(|| corrupt(format!("tensor `{name}` has no shape")))?;
        out.push((name, shape));
    }
    Ok(out)
}

/// A `config.json` with typed field access; errors name the field.
pub struct Config<'a> {
    json: &'a Map<String, Value>,
    origin: String,
}

impl Config<'_> {
    fn field(&self, field: &str, message: &str) -> ImportError {
        ImportError::Field {
            origin: self.origin.clone(),
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    /// The field, `None` when absent or null.
    fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    /// A required positive integer.
    fn int(&self, field: &str) -> Result<u64, ImportError> {
        match self.get(field) {
            None => Err(self.field(field, "is missing: expected a positive integer")),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(n),
                _ => Err(self.field(field, &format!("is {v}: expected a positive integer"))),
            },
        }
    }

    /// An optional positive integer.
    fn int_opt(&self, field: &str) -> Result<Option<u64>, ImportError> {
        self.get(field).map(|_| self.int(field)).transpose()
    }

    /// An optional number, `default` when absent.
    fn number_or(&self, field: &str, default: f64) -> Result<f64, ImportError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| self.field(field, &format!("is {v}: expected a number ≥ 0"))),
        }
    }

    /// An optional boolean, `default` when absent.
    fn bool_or(&self, field: &str, default: bool) -> Result<bool, ImportError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.field(field, &format!("is {v}: expected true or false"))),
        }
    }

    /// An optional string, `default` when absent.
    fn str_or<'s>(&'s self, field: &str, default: &'s str) -> Result<&'s str, ImportError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.field(field, &format!("is {v}: expected a string"))),
        }
    }

    /// An error for an option Comet cannot express.
    fn unsupported(&self, field: &str, why: &str) -> ImportError {
        ImportError::Unsupported {
            origin: self.origin.clone(),
            field: field.to_string(),
            value: self.get(field).map_or("null".into(), Value::to_string),
            why: why.to_string(),
        }
    }

    /// Errors unless `field` is absent or null.
    fn absent(&self, field: &str, why: &str) -> Result<(), ImportError> {
        match self.get(field) {
            None => Ok(()),
            Some(_) => Err(self.unsupported(field, why)),
        }
    }

    /// Errors unless boolean `field` is `expected` (absent: `default`).
    fn require_bool(
        &self,
        field: &str,
        default: bool,
        expected: bool,
        why: &str,
    ) -> Result<(), ImportError> {
        if self.bool_or(field, default)? == expected {
            Ok(())
        } else {
            Err(self.unsupported(field, why))
        }
    }

    /// `heads` that divides `d`: the head dimension, or an error naming `heads_field`.
    fn head_dim(&self, d: u64, heads: u64, heads_field: &str) -> Result<u64, ImportError> {
        if d.is_multiple_of(heads) {
            Ok(d / heads)
        } else {
            Err(self.unsupported(
                heads_field,
                &format!("it does not divide the hidden size {d}"),
            ))
        }
    }

    /// The element-wise activation of an FFN: `gelu`, `relu` or `silu`.
    fn activation(&self, field: &str, default: &str) -> Result<&'static str, ImportError> {
        match self.str_or(field, default)? {
            // GeLU's exact and tanh forms: the approximation profile chooses how it is
            // computed (docs/approximations.md).
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok("gelu"),
            "relu" => Ok("relu"),
            "silu" | "swish" => Ok("silu"),
            _ => Err(self.unsupported(field, "expected one of gelu, gelu_new, relu, silu")),
        }
    }
}

/// A float as `.model` source: `1e-5`, `10000`, `0.5`.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 1e-3 {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests;
