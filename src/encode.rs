//! `comet run` on an encoder whose outputs are not logits (a sentence-embedding BERT's
//! `pooled`, an imported encoder without its masked-LM head): one call over the prompt,
//! both parties in this process, and the client's outputs printed; with `--check-plain`,
//! beside the same model evaluated in the clear (f64) on the same prompt.

use crate::generate::{Call, estimate_at, token_input};
use crate::progress::Bars;
use crate::report::bytes;
use crate::run::{RunArgs, in_process_session, load_weights, prompt, tokenizer};
use comet_ir::{DimEnv, Program};
use ndarray::ArrayD;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Whether `p` yields outputs other than `logits` only (`comet run` prints them).
pub fn outputs_only(p: &Program) -> bool {
    !p.info.outputs.iter().any(|o| o.name == "logits") && !p.info.outputs.is_empty()
}

/// Generating (or predicting tokens) needs `logits`: a plan with other outputs only is
/// refused, naming what runs it.
pub fn check_logits(p: &Program) -> Result<(), String> {
    match outputs_only(p) {
        true => Err(format!(
            "`{}` outputs {} (no `logits`), so it predicts no tokens: `comet run PLAN` (one \
             process) runs its call and prints the outputs",
            p.info.name,
            names(p)
        )),
        false => Ok(()),
    }
}

/// One output as the client received it, and against the clear model.
struct Shown {
    values: ArrayD<f64>,
    /// (largest |2PC − f64|, cosine similarity) with `--check-plain`.
    check: Option<(f64, f64)>,
}

/// Runs `program`'s one call over the prompt and prints its outputs.
pub fn run(program: &Program, args: &RunArgs) -> Result<(), String> {
    if args.party.is_some() {
        return Err(format!(
            "`{}` outputs {} (no `logits`): two-process runs of such plans are not supported \
             yet; run both parties in one process (without --party)",
            program.info.name,
            names(program)
        ));
    }
    if args.generate.is_some_and(|n| n != 1) {
        return Err("an encoder runs one call over the prompt: --generate must be 1".into());
    }
    let bars = Bars::new(args.quiet || args.json);
    let mut session = in_process_session(program, args, &bars)?;
    let tokenizer = tokenizer(args)?;
    let prompt = prompt(args, tokenizer.as_ref(), program)?;
    let env = DimEnv {
        seq: prompt.len() as u64,
        past: 0,
    };
    let inputs = token_input(program, &prompt);
    let start = Instant::now();
    let (got, measured) = session
        .call(&inputs, env)
        .map_err(|e| format!("call 0 (seq {}, past 0): {e}", env.seq))?;
    let seconds = start.elapsed().as_secs_f64();
    let call = Call {
        env,
        estimated: estimate_at(program, env, &measured),
        measured,
        logits: None,
    };
    let clear = match args.check_plain {
        true => Some(clear_outputs(program, args, &inputs, env)?),
        false => None,
    };
    let shown = shown(got, clear.as_ref())?;
    match args.json {
        true => println!("{}", json(&prompt, &shown, &call, seconds)),
        false => print(&prompt, &shown, &call, seconds),
    }
    Ok(())
}

/// The plan's output names, for messages.
fn names(p: &Program) -> String {
    let names: Vec<&str> = p.info.outputs.iter().map(|o| o.name.as_str()).collect();
    names.join(", ")
}

/// The model evaluated in the clear on the same inputs (the whole checkpoint read again).
fn clear_outputs(
    program: &Program,
    args: &RunArgs,
    inputs: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
) -> Result<HashMap<String, ArrayD<f64>>, String> {
    let weights = load_weights(program, args.weights.as_deref(), None)?.unwrap_or_default();
    let mut cache = comet_runtime::plain::Cache::new();
    comet_runtime::plain::eval(program, inputs, &weights, env, &mut cache)
        .map_err(|e| format!("the clear model (--check-plain): {e}"))
}

/// Each received output, with its comparison to the clear one.
fn shown(
    got: HashMap<String, ArrayD<f64>>,
    clear: Option<&HashMap<String, ArrayD<f64>>>,
) -> Result<BTreeMap<String, Shown>, String> {
    got.into_iter()
        .map(|(name, values)| {
            let check = match clear.map(|c| c.get(&name)) {
                None => None,
                Some(None) => return Err(format!("the clear model has no output `{name}`")),
                Some(Some(want)) if want.shape() != values.shape() => {
                    return Err(format!(
                        "output `{name}`: {:?} in two parties, {:?} in the clear",
                        values.shape(),
                        want.shape()
                    ));
                }
                Some(Some(want)) => Some(compare(&values, want)),
            };
            Ok((name, Shown { values, check }))
        })
        .collect()
}

/// (largest |a − b|, cosine similarity of a and b).
fn compare(a: &ArrayD<f64>, b: &ArrayD<f64>) -> (f64, f64) {
    let worst = (a.iter().zip(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &ArrayD<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    (worst, dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE))
}

fn print(prompt: &[u64], shown: &BTreeMap<String, Shown>, call: &Call, seconds: f64) {
    println!(
        "one call over {} tokens (two parties in one process, {seconds:.2} s)",
        prompt.len()
    );
    for (name, s) in shown {
        let head: Vec<String> = s.values.iter().take(6).map(|v| format!("{v:.4}")).collect();
        println!(
            "output `{name}` {:?}: [{}{}]",
            s.values.shape(),
            head.join(", "),
            if s.values.len() > 6 { ", …" } else { "" }
        );
        if let Some((worst, cosine)) = s.check {
            println!(
                "  against the clear model (f64): largest difference {worst:.2e}, cosine {cosine:.6}"
            );
        }
    }
    let (on, rounds, off) = call.estimated;
    let m = &call.measured;
    println!(
        "online {} (estimate {}), rounds {} (estimate {}), dealer {} (estimate {})",
        bytes(m.online_bits),
        bytes(on),
        m.rounds,
        rounds,
        bytes(m.offline_bits),
        bytes(off)
    );
}

fn json(prompt: &[u64], shown: &BTreeMap<String, Shown>, call: &Call, seconds: f64) -> String {
    let outputs: serde_json::Map<String, serde_json::Value> = (shown.iter())
        .map(|(name, s)| {
            let mut o = serde_json::json!({
                "shape": s.values.shape(),
                "values": s.values.iter().collect::<Vec<_>>(),
            });
            if let Some((worst, cosine)) = s.check {
                o["clear_max_abs_diff"] = worst.into();
                o["clear_cosine"] = cosine.into();
            }
            (name.clone(), o)
        })
        .collect();
    let m = &call.measured;
    serde_json::json!({
        "tokens": prompt, "mode": "two parties in one process", "seconds": seconds,
        "outputs": outputs,
        "measured": {"online_bits": m.online_bits, "rounds": m.rounds, "offline_bits": m.offline_bits},
        "estimated": {"online_bits": call.estimated.0, "rounds": call.estimated.1, "offline_bits": call.estimated.2},
    })
    .to_string()
}
