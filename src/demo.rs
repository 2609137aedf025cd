//! `comet demo`: the main job in one command, on the model shipped with the project.
//! Compiles `examples/glassllm.model` (exact profile), runs it for two parties on secret
//! shares in this process on `models/glassllm-en`, generates from "Once upon a time",
//! and prints the text beside the model's own implementation's continuation, with the
//! measured and estimated bytes and rounds of every call.

use clap::Args;
use std::path::{Path, PathBuf};

use crate::run::{RunArgs, finish, in_process};

/// Arguments of `comet demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Tokens to generate (the reference has 16).
    #[arg(long, default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=16))]
    generate: u64,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

const PROMPT: &str = "Once upon a time";

/// The project's folder: where the binary was built, else the current folder.
pub(crate) fn root() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    if built.join("models/glassllm-en").is_dir() {
        built.to_path_buf()
    } else {
        PathBuf::from(".")
    }
}

/// Runs the command.
pub fn run(args: &DemoArgs) -> Result<(), String> {
    let root = root();
    let model = root.join("examples/glassllm.model");
    let source = std::fs::read_to_string(&model)
        .map_err(|e| format!("cannot read `{}`: {e}", model.display()))?;
    let weights = root.join("models/glassllm-en/model.safetensors");
    // the plan declares the checkpoint's statistics (`comet compile --weights`): the
    // range analysis bounds products by them and narrows comparisons
    let path = model.display().to_string();
    let lowered = comet_compiler::driver::lower_only(&source, &path).map_err(|e| e.to_string())?;
    let stats =
        comet_runtime::weights::stats::declared_for(&weights, &lowered.info.weights, |_| {})
            .map_err(|e| e.to_string())?;
    let opts = comet_compiler::Options {
        verify: false,
        approx: comet_ir::ApproxConfig::uniform(comet_ir::ApproxProfile::Lut),
        weight_stats: Some(stats),
        ..Default::default()
    };
    let program = comet_compiler::compile(&source, &path, &opts)
        .map_err(|e| e.to_string())?
        .program;
    eprintln!(
        "compiled {} ({} plan nodes); running it for two parties on secret shares…",
        model.display(),
        program.graph.len()
    );
    let run_args = RunArgs {
        predictor: None,
        head_predictor: None,
        kv_refill: crate::run::KvRefill::Merged,
        plan: model.clone(),
        weights: Some(weights),
        prompt_ids: None,
        prompt: Some(PROMPT.into()),
        tokenizer: None,
        generate: Some(args.generate as usize),
        temperature: 0.0,
        sample_seed: 0,
        seed: None,
        json: args.json,
        check_plain: false,
        quiet: args.json,
        party: None,
        listen: None,
        connect: None,
        material: None,
        dealer: None,
        prompt_len: None,
        timeout: 60.0,
        call_timeout: 600.0,
        dealer_key: None,
        key: None,
        insecure_plaintext: false,
        accept_leakage: Default::default(),
    };
    let (tokens, calls, tokenizer, info) = in_process(&program, &run_args)?;
    if !args.json {
        println!("prompt: {PROMPT:?}");
    }
    finish(&tokens, tokenizer.as_ref(), &calls, &info, args.json)?;
    if !args.json {
        compare_with_reference(&root, &tokens, tokenizer.as_ref());
    }
    Ok(())
}

/// Prints the reference continuation (the model's own implementation) and the agreement.
fn compare_with_reference(
    root: &Path,
    tokens: &[u64],
    tokenizer: Option<&comet_runtime::tokenizer::Tokenizer>,
) {
    let path = root.join("models/glassllm-en/reference-greedy.json");
    let Some(reference) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return;
    };
    let Some(case) =
        (reference["cases"].as_array()).and_then(|cs| cs.iter().find(|c| c["prompt"] == PROMPT))
    else {
        return;
    };
    let want: Vec<u64> = (case["greedy_ids"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_u64())
        .take(tokens.len())
        .collect();
    let text = tokenizer
        .and_then(|t| t.decode(&want).ok())
        .unwrap_or_default();
    let same = tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
    println!("reference (glassllm's own implementation, in the clear): {text:?}");
    println!(
        "two-party tokens equal to the reference: {same}/{}",
        want.len()
    );
}
