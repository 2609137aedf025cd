//! The model of the runtime benchmark: the compiled plan, random weights of the plan's
//! shapes, the session's calls (a prefill into an empty KV cache, then decode steps: the
//! cache is filled by the protocol, each row opened once under its mask, as in a real
//! session; the dealer service streams the prefill's material, no file is written).

use comet_ir::{DimEnv, Program};
use comet_runtime::interp::Outputs;
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;
use std::time::Instant;

use super::RuntimeArgs;

/// The `.model` sources built into the binary, so the benchmark runs from any folder.
const GPT2: &str = include_str!("../../examples/gpt2.model");

/// GPT-2's architecture at tiny sizes (`--quick`): `d` 32, 2 heads, `ff` 128, 2 layers,
/// a vocabulary of 96 and 64 positions.
pub const TINY_GPT2: &str = "examples/gpt2.model at d 32, 2 heads, 2 layers, vocab 96";

fn tiny_gpt2() -> Result<String, String> {
    let mut s = GPT2.to_string();
    for (from, to) in [
        (
            "dim vocab = 50257, n_ctx = 1024;",
            "dim vocab = 96, n_ctx = 64;",
        ),
        ("dim d = 768, heads = 12,", "dim d = 32, heads = 2,"),
        ("dim n_layers = 12;", "dim n_layers = 2;"),
    ] {
        if !s.contains(from) {
            return Err(format!(
                "--quick shrinks examples/gpt2.model, which no longer has `{from}`"
            ));
        }
        s = s.replace(from, to);
    }
    Ok(s)
}

/// The plan of the benchmark's model: `--model`, else GPT-2 small (tiny with `--quick`),
/// compiled with the default options and `--approx` (the verifier off, as `comet compile`).
pub fn compile(args: &RuntimeArgs) -> Result<Program, String> {
    let (source, name) = match &args.model {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read model `{}`: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None if args.quick => (tiny_gpt2()?, "examples/gpt2.model, tiny".into()),
        None => (GPT2.to_string(), "examples/gpt2.model".into()),
    };
    let mut opts = comet_compiler::Options {
        verify: false,
        approx: args.approx,
        ..comet_compiler::Options::default()
    };
    // the plan declares the random weights' statistics, as `comet compile --weights` does
    // for a checkpoint: every role derives them from the seed, one tensor at a time
    let lowered = comet_compiler::driver::lower_only(&source, &name).map_err(|e| e.to_string())?;
    opts.weight_stats = Some(random_weight_stats(&lowered, args.seed));
    let compiled = comet_compiler::compile(&source, &name, &opts).map_err(|e| e.to_string())?;
    let p = compiled.program;
    if p.info.input("tokens").is_none() || p.analyses.costs.is_none() {
        return Err(format!(
            "{name}: the benchmark runs a decode step: the model needs a `tokens` input"
        ));
    }
    Ok(p)
}

/// A seeded stream for one purpose of the benchmark.
pub fn rng(seed: u64, purpose: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ purpose)
}

/// A uniform draw in `[-1, 1)` (53 random bits).
pub fn uniform(r: &mut ChaCha12Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Whether weight `name` (1-D) is a normalisation gain (`lnf_g`, `layer.0.ln1_g`,
/// `norm_f`, `decoder.0.g1`): it is drawn around 1, everything else around 0.
fn is_gain(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.ends_with("_g")
        || last.contains("norm")
        || last.contains("gamma")
        || (last.starts_with('g') && last[1..].chars().all(|c| c.is_ascii_digit()))
}

/// The declared statistics ([`comet_ir::WeightStats`]) of the server's random weights of
/// [`random_weights`], drawing and dropping one tensor at a time.
pub fn random_weight_stats(
    program: &Program,
    seed: u64,
) -> std::collections::BTreeMap<String, comet_ir::WeightStats> {
    let server = comet_ir::Party::Server;
    (program.info.weights.iter().enumerate())
        .filter(|(_, w)| w.party == server)
        .map(|(i, w)| {
            let t = random_tensor(w, seed, i);
            (w.name.clone(), comet_runtime::weights::stats::declared(&t))
        })
        .collect()
}

/// Weight `i` of the plan (`w`), drawn as [`random_weights`] draws it.
fn random_tensor(w: &comet_ir::WeightInfo, seed: u64, i: usize) -> ArrayD<f64> {
    // U(-a, a) has standard deviation a / √3
    let a = 0.02 * 3f64.sqrt();
    let shape: Vec<usize> = w.shape.iter().map(|&d| d as usize).collect();
    let mut r = rng(seed, 0x1000 + i as u64);
    let centre = if shape.len() == 1 && is_gain(&w.name) {
        1.0
    } else {
        0.0
    };
    ArrayD::from_shape_simple_fn(IxDyn(&shape), || centre + a * uniform(&mut r))
}

/// Random weights of every tensor party `party` provides (`None`: all), of the plan's
/// shapes: uniform with standard deviation 0.02 (GPT-2's initialisation scale), gains
/// `1 ± 0.02`. Returns them with the parameter count.
pub fn random_weights(
    who: &str,
    program: &Program,
    seed: u64,
    party: Option<usize>,
) -> (HashMap<String, ArrayD<f64>>, u64) {
    let start = Instant::now();
    let mut out = HashMap::new();
    let mut params = 0u64;
    for (i, w) in program.info.weights.iter().enumerate() {
        if party.is_some_and(|p| w.party.index() != p) {
            continue;
        }
        let t = random_tensor(w, seed, i);
        params += t.len() as u64;
        out.insert(w.name.clone(), t);
    }
    eprintln!(
        "{who}: weights: {} tensors, {params} parameters ({:.0} MiB as f64), random, in {:.2} s",
        out.len(),
        params as f64 * 8.0 / (1 << 20) as f64,
        start.elapsed().as_secs_f64()
    );
    (out, params)
}

/// The `tokens` input of a call of `seq` tokens (ids 1, 2, …).
pub fn token_input(seq: u64) -> Outputs {
    let ids: Vec<f64> = (1..=seq).map(|t| t as f64).collect();
    HashMap::from([(
        "tokens".to_string(),
        ArrayD::from_shape_vec(IxDyn(&[ids.len()]), ids).expect("1-D"),
    )])
}

/// The calls of the benchmark's session: a prefill of `prefill` tokens into an empty
/// cache (the session's first call, with the setup), then `steps` decode steps.
pub fn call_envs(prefill: u64, steps: u64) -> Vec<DimEnv> {
    let first = DimEnv {
        seq: prefill,
        past: 0,
    };
    let decode = (0..steps).map(|k| DimEnv {
        seq: 1,
        past: prefill + k,
    });
    std::iter::once(first).chain(decode).collect()
}

/// Checks a call's logits: `[seq, vocab]` (or the last position's `[1, vocab]`) and finite.
pub fn check_logits(out: &Outputs, seq: u64) -> Result<(), String> {
    let l = out.get("logits").ok_or("the call returned no `logits`")?;
    let rows_ok = l.ndim() == 2 && (l.shape()[0] == seq as usize || l.shape()[0] == 1);
    if !rows_ok || !l.iter().all(|v| v.is_finite()) {
        return Err(format!(
            "the call's logits are not {seq} finite rows: shape {:?}",
            l.shape()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[ignore]
    fn write_gpt2_plan() {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: super::RuntimeArgs,
        }
        let args = W::parse_from(["x"]).a;
        let p = super::compile(&args).unwrap();
        std::fs::write(
            "/tmp/g2w.plan",
            comet_ir::plan::write_plan_json(&p).unwrap(),
        )
        .unwrap();
    }
}
