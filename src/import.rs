//! `comet import`: write a `.model` file from a Hugging Face checkpoint folder (the work is
//! in `comet_compiler::import`).

use clap::Args;
use std::path::PathBuf;

/// Arguments of `comet import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The folder: `config.json`, and the checkpoint (`model.safetensors`, or the shards of
    /// `model.safetensors.index.json`) whose tensor names and shapes are checked.
    pub dir: PathBuf,
    /// Write the `.model` file here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The model's name in the file (default: the folder's name, as an identifier).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Imports `args.dir` and writes the `.model` source.
pub fn run(args: &ImportArgs) -> Result<(), String> {
    if !args.dir.is_dir() {
        return Err(format!(
            "`{}` is not a folder: give a Hugging Face checkpoint folder with config.json",
            args.dir.display()
        ));
    }
    let imported = comet_compiler::import::import_dir(&args.dir, args.name.as_deref())
        .map_err(|e| e.to_string())?;
    let checked = if imported.checked {
        "names and shapes checked against the checkpoint"
    } else {
        "no checkpoint in the folder: the Hub's tensor names are assumed"
    };
    match &args.output {
        Some(path) => {
            if path.exists() {
                return Err(format!(
                    "`{}` exists: `comet import` does not overwrite files",
                    path.display()
                ));
            }
            std::fs::write(path, &imported.source)
                .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            eprintln!(
                "wrote `{}`: a `{}` model reading {} weight tensors ({checked})",
                path.display(),
                imported.model_type,
                imported.weights
            );
        }
        None => print!("{}", imported.source),
    }
    Ok(())
}
