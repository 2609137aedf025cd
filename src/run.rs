//! `comet run`: run a plan for two parties on real weights and generate text.
//!
//! Without `--party`, both parties run in this process: two threads over an in-memory
//! channel with an in-process dealer (`comet_runtime::interp::InProcess`). With
//! `--party 0 --listen ADDR` / `--party 1 --connect ADDR`, this process is one party,
//! talking to the other over TCP with material dealt ahead by `comet deal` or streamed by
//! the dealer service `comet dealer` (see [`crate::remote`]). The measured figures are the
//! bytes and rounds that crossed the channel and the material that was generated or read,
//! never the estimate.

use crate::progress::Bars;
use clap::Args;
use comet_ir::Program;
use comet_runtime::interp::{InProcess, RunOptions};
use comet_runtime::tokenizer::Tokenizer;
use ndarray::ArrayD;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use comet_runtime::weights::Checkpoint;
use std::time::Instant;

use crate::generate::{Call, SEGMENTS, Sampler, generate, is_encoder, predict, session_calls};
use crate::report::{Fill, RunInfo, Text, json, print_summary};

/// Arguments of `comet run`.
#[derive(Args)]
pub struct RunArgs {
    /// The plan file (JSON, from `comet compile -o`).
    pub plan: PathBuf,
    /// The checkpoint with the weights this party provides (in one process: all of them):
    /// a safetensors file, a shard index (`model.safetensors.index.json`) or a Hugging
    /// Face folder holding either. Not needed by a client that provides no weights.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// A sparse plan's predictor file (`comet calibrate --score sum --out FILE`): the
    /// server derives the plan's predictor weights from it.
    #[arg(long, value_name = "FILE")]
    pub predictor: Option<PathBuf>,
    /// A head-sparse plan's head predictor file (`comet calibrate --heads --out FILE`):
    /// the server derives the plan's head predictor weights from it.
    #[arg(long, value_name = "FILE")]
    pub head_predictor: Option<PathBuf>,
    /// How a head-sparse plan's cache products open the K/V rows a group missed while it
    /// was inactive: `merged` in the product's own round (no extra round), or `naive`, an
    /// exchange per miss request (the baseline). Both parties must choose the same: a
    /// mismatch fails at the first miss with a protocol message of the wrong length.
    #[arg(long, value_enum, default_value_t = KvRefill::Merged)]
    pub kv_refill: KvRefill,
    /// The prompt as token ids, comma-separated (e.g. `41,69,186`).
    #[arg(
        long,
        value_name = "IDS",
        value_delimiter = ',',
        conflicts_with = "prompt"
    )]
    pub prompt_ids: Option<Vec<u64>>,
    /// The prompt as text, encoded with the tokenizer (`--tokenizer`, or `tokenizer.json`
    /// beside the weights).
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// The tokenizer: a Hugging Face `tokenizer.json` (byte-level BPE and the others the
    /// `tokenizers` crate reads) or the shipped model's character BPE.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Tokens to generate (in two processes: as many as the material was dealt for; with
    /// --dealer, the same on both parties, 8 by default).
    #[arg(long)]
    pub generate: Option<usize>,
    /// Sampling temperature: 0 (the default) is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Seed of the sampling stream (with `--temperature` > 0).
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// Seed of the in-process dealer's randomness, for reproducible tests only: without
    /// it the dealer's master seed comes from the operating system (a known seed lets
    /// anyone re-derive every mask of the session).
    #[arg(long, visible_alias = "dealer-seed", value_name = "N")]
    pub seed: Option<u64>,
    /// Print one JSON object (tokens, text, per-call measured and estimated figures).
    #[arg(long)]
    pub json: bool,
    /// A plan whose outputs are not logits (an encoder's `pooled`): also evaluate the model
    /// in the clear (f64) on the same prompt and print each output's largest difference
    /// and cosine similarity (in one process; reads the checkpoint a second time).
    #[arg(long, conflicts_with = "party")]
    pub check_plain: bool,
    /// No progress bars (they are also off with --json, and when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Run only this party (0: the server, with the weights; 1: the client, with the
    /// prompt), talking to the other party over TCP.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub party: Option<u8>,
    /// Listen for the other party on ADDR (e.g. `127.0.0.1:7070`).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "party",
        conflicts_with = "connect"
    )]
    pub listen: Option<SocketAddr>,
    /// Connect to the other party at ADDR, retrying until `--timeout`.
    #[arg(long, value_name = "ADDR", requires = "party")]
    pub connect: Option<SocketAddr>,
    /// This party's material file, from `comet deal` (two processes only).
    #[arg(
        long,
        value_name = "FILE",
        requires = "party",
        conflicts_with = "dealer"
    )]
    pub material: Option<PathBuf>,
    /// Get the material from the dealer service at ADDR (`comet dealer --listen ADDR`)
    /// instead of a file (two processes only).
    #[arg(long, value_name = "ADDR", requires = "party")]
    pub dealer: Option<String>,
    /// With --dealer, party 0: the prompt length of the client's first call (the calls'
    /// sizes are public; the dealer checks that both parties ask for the same ones).
    #[arg(long, value_name = "N", requires = "dealer",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub prompt_len: Option<u64>,
    /// Seconds to wait for the other party (connecting, accepting, each read).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
    /// Seconds one exchange with the other party may take in all, however the peer
    /// trickles its bytes (`--timeout` bounds each read).
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub call_timeout: f64,
    /// The dealer's public key (64 hex digits, or a file of `comet keygen`): the dealer
    /// must prove it holds the private half (Noise NK). Required with --dealer.
    #[arg(long, value_name = "HEX|FILE", requires = "dealer")]
    pub dealer_key: Option<String>,
    /// With --dealer: this party's key file (`comet keygen --out FILE`), whose public half
    /// the dealer pins (`comet dealer --party-key P=FILE.pub`): the party proves it holds
    /// it (Noise KK). Required by a dealer that pins party keys.
    #[arg(long, value_name = "FILE", requires = "dealer_key")]
    pub key: Option<PathBuf>,
    /// No encryption or authentication of the channels (to the other party and to the
    /// dealer): tests and debugging only; the other side must say so too.
    #[arg(long, requires = "party")]
    pub insecure_plaintext: bool,
    /// Party 1 (the client): what it accepts the plan to open of its input to the server:
    /// `none` (default; dense plans), `sparse-masks` (the permuted block masks of sparse
    /// FFNs, `comet inspect --leakage`) or `sparse-masks:BITS` (at most BITS mask bits per
    /// token in all). Derived from the plan's graph; a plan opening more is refused before
    /// anything is sent or any material used.
    #[arg(long, value_name = "none|sparse-masks[:BITS]", default_value = "none")]
    pub accept_leakage: comet_ir::exposure::AcceptLeakage,
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Result<(), String> {
    let program = load_plan(&args.plan)?;
    check_interface(&program)?;
    if crate::encode::outputs_only(&program) {
        return crate::encode::run(&program, args);
    }
    if args.check_plain {
        return Err(
            "--check-plain compares the outputs of a plan without logits (an \
                    encoder's `pooled`); a generating plan is compared by `comet bench approx`"
                .into(),
        );
    }
    if args.party.is_some() {
        return crate::remote::run(&program, args);
    }
    if args.listen.is_some() || args.connect.is_some() {
        return Err("--listen and --connect need --party 0 or --party 1".into());
    }
    let (tokens, calls, tokenizer, info) = in_process(&program, args)?;
    finish(&tokens, tokenizer.as_ref(), &calls, &info, args.json)
}

/// What a generation produced: tokens, per-call figures, the tokenizer, how it ran.
pub type Generated = (Vec<u64>, Vec<Call>, Option<Tokenizer>, RunInfo);

/// The client's reveal policy (`--accept-leakage`): refuses a plan that opens more of the
/// client's input to the server than accepted, and says what an accepted sparse plan
/// opens. `who` names the client in messages (`party 1`, or the in-process run, which
/// holds the client's role too and checks the same plan the same way).
pub fn check_reveal_policy(
    program: &Program,
    accept: comet_ir::exposure::AcceptLeakage,
    who: &str,
) -> Result<(), String> {
    let accepted =
        comet_ir::exposure::check_client(program, accept).map_err(|e| format!("{who}: {e}"))?;
    if accepted.masks > 0 {
        eprintln!(
            "{who}: the plan opens {} permuted block masks of sparse FFNs to the server, {} \
             bits per token in all (--accept-leakage {accept})",
            accepted.masks, accepted.bits_per_token
        );
    }
    Ok(())
}

/// The KV refill of a head-sparse plan (`--kv-refill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvRefill {
    /// Missed rows travel in the cache product's own round.
    Merged,
    /// Each miss request in an exchange of its own (the baseline).
    Naive,
}

/// Both parties of `program` in this process, with `args`' checkpoint, predictors, dealer
/// seed and refill, reporting progress to `bars`.
pub fn in_process_session<'p>(
    program: &'p Program,
    args: &RunArgs,
    bars: &Bars,
) -> Result<InProcess<'p>, String> {
    check_reveal_policy(program, args.accept_leakage, "the client (in process)")?;
    let checkpoint = open_checkpoint(program, args.weights.as_deref(), None)?;
    let weights = with_predictor(program, HashMap::new(), args.predictor.as_deref())?;
    let weights = with_head_predictor(program, weights, args.head_predictor.as_deref())?;
    let options = RunOptions {
        progress: bars.runtime(0),
        naive_refill: args.kv_refill == KvRefill::Naive,
        ..RunOptions::default()
    };
    let mut session = match args.seed {
        Some(seed) => InProcess::from_owned(program, weights, seed),
        None => InProcess::from_master(program, weights, os_seed()?),
    }
    .with_options(options);
    if let Some(c) = checkpoint {
        session = session.with_checkpoint(c);
    }
    Ok(session)
}

/// Generates with both parties in this process.
pub fn in_process(program: &Program, args: &RunArgs) -> Result<Generated, String> {
    crate::encode::check_logits(program)?;
    let bars = Bars::new(args.quiet || args.json);
    let mut session = in_process_session(program, args, &bars)?;
    let tokenizer = tokenizer(args)?;
    let prompt = prompt(args, tokenizer.as_ref(), program)?;
    let n = session_calls(program, prompt.len() as u64, args.generate)?.len();
    let mut sampler = Sampler::new(args.temperature, args.sample_seed)?;
    let start = Instant::now();
    let call = |inputs: &_, env| session.call(inputs, env).map_err(|e| e.to_string());
    let encoder = is_encoder(program);
    let (tokens, calls) = match encoder {
        true => predict(program, &prompt, &mut sampler, call)?,
        false => generate(program, &prompt, n, &mut sampler, &bars, call)?,
    };
    let info = RunInfo {
        mode: "two parties in one process".into(),
        material_read: false,
        setup_bits: calls.first().map_or(0, |c| c.measured.setup_bits),
        setup_offline_bits: calls.first().map_or(0, |c| c.measured.setup_offline_bits),
        seconds: start.elapsed().as_secs_f64(),
        encoder_prompt: encoder.then_some(prompt),
    };
    Ok((tokens, calls, tokenizer, info))
}

/// Deals a session of `calls` into `out/party0.mat` and `out/party1.mat` (`comet deal`):
/// the folder is created if missing (mode 0700), the files with mode 0600 and never over
/// existing ones; the dealer's master seed and the session nonce come from the operating
/// system. `progress(k, bytes)` after each call.
pub fn deal_files(
    program: &Program,
    calls: &[comet_ir::DimEnv],
    out: &Path,
    progress: impl FnMut(usize, u64),
) -> Result<comet_runtime::interp::DealtFiles, String> {
    if program.analyses.costs.is_none() || program.analyses.rounds.is_none() {
        return Err("the plan has no schedule or costs: compile it with `comet compile`".into());
    }
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(out)
        .map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    let (master, session) = (os_seed()?, os_seed()?);
    comet_runtime::interp::deal_to_files(program, calls, out, master, session, progress)
        .map_err(|e| e.to_string())
}

/// A 32-byte seed from the operating system's randomness.
pub fn os_seed() -> Result<[u8; 32], String> {
    use rand::TryRng;
    let mut seed = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| format!("the operating system's randomness failed: {e}"))?;
    Ok(seed)
}

/// Prints the result.
pub fn finish(
    tokens: &[u64],
    tokenizer: Option<&Tokenizer>,
    calls: &[Call],
    info: &RunInfo,
    as_json: bool,
) -> Result<(), String> {
    let text = text(tokens, tokenizer, info)?;
    if as_json {
        println!("{}", json(tokens, &text, calls, info));
    } else {
        print_summary(tokens, &text, calls, info);
    }
    Ok(())
}

/// The text of a run's `tokens` (none without a tokenizer, or for the server, which has
/// no tokens): the generated tokens decoded; for an encoder, the prompt with each mask
/// token (`[MASK]`, `<mask>`) replaced by the prediction at its position and those
/// predictions listed, or, when the prompt has no mask token, every position's
/// prediction decoded.
pub fn text(tokens: &[u64], tokenizer: Option<&Tokenizer>, info: &RunInfo) -> Result<Text, String> {
    let Some(t) = tokenizer.filter(|_| !tokens.is_empty()) else {
        return Ok(Text::default());
    };
    let decode = |ids: &[u64]| t.decode(ids).map_err(|e| e.to_string());
    let Some(prompt) = &info.encoder_prompt else {
        return Ok(Text {
            text: Some(decode(tokens)?),
            masks: Vec::new(),
        });
    };
    let mask = t.mask_id();
    let mut filled = prompt.clone();
    let mut masks = Vec::new();
    for (position, (slot, &token)) in filled.iter_mut().zip(tokens).enumerate() {
        if Some(*slot) == mask {
            *slot = token;
            masks.push(Fill {
                position,
                token,
                text: decode(&[token])?,
            });
        }
    }
    let text = match masks.is_empty() {
        true => decode(tokens)?,
        false => decode(&filled)?,
    };
    Ok(Text {
        text: Some(text),
        masks,
    })
}

/// Reads a plan file.
pub fn load_plan(path: &Path) -> Result<Program, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan `{}`: {e}", path.display()))?;
    comet_ir::plan::read_plan_json(&text)
        .map_err(|e| format!("cannot load plan `{}`: {e}", path.display()))
}

/// `comet run` maps a `tokens` input to a `logits` output (generating with a decoder,
/// predicting a token per position with an encoder), or an encoder's `tokens` to its other
/// outputs (`crate::encode`); the only other input it provides is `segments` (BERT's token
/// types, all 0).
pub fn check_interface(p: &Program) -> Result<(), String> {
    let logits = p.info.outputs.iter().any(|o| o.name == "logits");
    if p.info.input("tokens").is_none() || !(logits || crate::generate::is_encoder(p)) {
        let outputs: Vec<&str> = p.info.outputs.iter().map(|o| o.name.as_str()).collect();
        return Err(format!(
            "`comet run` maps tokens to logits (or, for an encoder, to its outputs): the plan \
             of `{}` needs an input `tokens` and an output `logits` (it has outputs: {})",
            p.info.name,
            outputs.join(", ")
        ));
    }
    if let Some(other) = (p.info.inputs.iter()).find(|i| i.name != "tokens" && i.name != SEGMENTS) {
        return Err(format!(
            "`comet run` provides the inputs `tokens` and `{SEGMENTS}` (token types, all 0): the \
             plan of `{}` also needs `{}`",
            p.info.name, other.name
        ));
    }
    if p.analyses.rounds.is_none() || p.analyses.costs.is_none() {
        return Err(
            "the plan has no schedule or costs: compile it with `comet compile` (all passes)"
                .into(),
        );
    }
    Ok(())
}

/// The weights party `party` provides (every party's with `None`, both parties in one
/// process) and the checkpoint to read them from; `None` if there are none.
fn provided_weights<'a>(
    p: &Program,
    path: Option<&'a Path>,
    party: Option<usize>,
) -> Result<Option<(&'a Path, Vec<comet_ir::WeightInfo>)>, String> {
    let mine: Vec<_> = (p.info.weights.iter())
        .filter(|w| party.is_none_or(|q| w.party.index() == q))
        .filter(|w| !comet_ir::sparse::is_predictor_weight(&w.name))
        .cloned()
        .collect();
    match path {
        None if mine.is_empty() => Ok(None),
        None => Err(format!(
            "this party provides {} weight tensors (`{}`, …): give the checkpoint with --weights",
            mine.len(),
            mine[0].name
        )),
        Some(path) => Ok(Some((path, mine))),
    }
}

/// The weights party `party` provides, or (`None`) both parties in one process, read
/// whole; `None` if there are none to load.
pub fn load_weights(
    p: &Program,
    path: Option<&Path>,
    party: Option<usize>,
) -> Result<Option<HashMap<String, ArrayD<f64>>>, String> {
    let Some((path, mine)) = provided_weights(p, path, party)? else {
        return Ok(None);
    };
    comet_runtime::weights::load(path, &mine)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The checkpoint of the weights `party` provides (every party's with `None`), mapped and
/// checked now, read one weight at a time as the session's setup reaches it; `None` when
/// the party provides no weights.
pub fn open_checkpoint(
    p: &Program,
    path: Option<&Path>,
    party: Option<usize>,
) -> Result<Option<Arc<Checkpoint>>, String> {
    let Some((path, mine)) = provided_weights(p, path, party)? else {
        return Ok(None);
    };
    Checkpoint::open(path, &mine)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| e.to_string())
}

/// `weights` with a sparse plan's predictor weights from `predictor` (the server's, or
/// both parties' in one process); unchanged for a dense plan.
pub fn with_predictor(
    p: &Program,
    mut weights: HashMap<String, ArrayD<f64>>,
    predictor: Option<&Path>,
) -> Result<HashMap<String, ArrayD<f64>>, String> {
    let ffns = (p.options.sparsity.as_ref()).filter(|s| !s.ffn_units().is_empty());
    match (ffns, predictor) {
        (None, None) => Ok(weights),
        (None, Some(_)) => {
            Err("--predictor: the plan has dense FFNs (compile with --sparsity ffn)".into())
        }
        (Some(_), None) => Err(
            "the plan has sparse FFNs: give their predictor with --predictor FILE (from `comet \
             calibrate MODEL --weights W --score sum --out FILE`)"
                .into(),
        ),
        (Some(_), Some(path)) => {
            let folded =
                comet_runtime::sparsity::plan::plan_weights(path, p).map_err(|e| e.to_string())?;
            weights.extend(folded);
            Ok(weights)
        }
    }
}

/// `weights` with a head-sparse plan's head predictor weights from `predictor` (the
/// server's, or both parties' in one process); unchanged for dense attention.
pub fn with_head_predictor(
    p: &Program,
    mut weights: HashMap<String, ArrayD<f64>>,
    predictor: Option<&Path>,
) -> Result<HashMap<String, ArrayD<f64>>, String> {
    let heads = (p.options.sparsity.as_ref()).and_then(|s| s.heads.as_ref());
    match (heads, predictor) {
        (None, None) => Ok(weights),
        (None, Some(_)) => Err(
            "--head-predictor: the plan has dense attention (compile with --sparsity heads)".into(),
        ),
        (Some(_), None) => Err(
            "the plan has head-sparse attention: give its head predictor with \
             --head-predictor FILE (from `comet calibrate MODEL --weights W --heads --out FILE`)"
                .into(),
        ),
        (Some(_), Some(path)) => {
            let w = comet_runtime::sparsity::heads::head_plan_weights(path, p)
                .map_err(|e| e.to_string())?;
            weights.extend(w);
            Ok(weights)
        }
    }
}

/// The tokenizer: `--tokenizer`, else `tokenizer.json` beside the weights (in the folder,
/// when the weights are a folder), if present.
pub fn tokenizer(args: &RunArgs) -> Result<Option<Tokenizer>, String> {
    let path = match (&args.tokenizer, &args.weights) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(w)) if w.is_dir() => Some(w.join("tokenizer.json")).filter(|t| t.exists()),
        (None, Some(w)) => Some(w.with_file_name("tokenizer.json")).filter(|t| t.exists()),
        (None, None) => None,
    };
    path.map(|p| Tokenizer::from_file(&p).map_err(|e| e.to_string()))
        .transpose()
}

/// The vocabulary of a plan that generates: the last axis of its `logits` output.
fn vocab(p: &Program) -> Option<u64> {
    let g = &p.graph;
    g.ids()
        .map(|id| g.node(id))
        .find(|n| matches!(&n.op, comet_ir::Op::Output { name, .. } if name == "logits"))
        .and_then(|n| n.ty.shape.last().and_then(|d| d.as_const()))
        .and_then(|v| u64::try_from(v).ok())
}

/// The prompt's token ids, from `--prompt-ids` or `--prompt` (encoded), each below the
/// plan's vocabulary.
pub fn prompt(
    args: &RunArgs,
    tokenizer: Option<&Tokenizer>,
    program: &Program,
) -> Result<Vec<u64>, String> {
    let ids = match (&args.prompt_ids, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let t = tokenizer.ok_or(
                "--prompt needs a tokenizer: --tokenizer FILE (or tokenizer.json beside --weights)",
            )?;
            t.encode(text).map_err(|e| e.to_string())?
        }
        (None, None) => return Err("give the prompt with --prompt \"text\" or --prompt-ids".into()),
    };
    if ids.is_empty() {
        return Err("the prompt is empty".into());
    }
    if let Some(v) = vocab(program)
        && let Some((i, id)) = ids.iter().enumerate().find(|&(_, &id)| id >= v)
    {
        let source = match (&args.prompt_ids, tokenizer) {
            (None, Some(t)) => format!(
                " (the tokenizer, of {} tokens, does not match the model)",
                t.vocab_size()
            ),
            _ => String::new(),
        };
        return Err(format!(
            "prompt token {i} is id {id}, not below the vocabulary of `{}` ({v} tokens){source}",
            program.info.name
        ));
    }
    Ok(ids)
}
