//! Generation for `comet run`: feed the prompt, then each chosen token, one call at a time;
//! choose tokens from the last position's logits, greedily or by seeded sampling; keep
//! every call's measured figures beside the plan's estimate. A plan without a KV cache (an
//! encoder such as BERT with its masked-LM head) cannot take a decode step: it runs one
//! call over the prompt and a token is chosen at every position ([`predict`]).

use comet_ir::cost::{Counts, UnitCounts};
use comet_ir::{DimEnv, Op, Program};
use comet_runtime::interp::{Measured, Outputs};

use crate::progress::Bars;
use ndarray::{ArrayD, Axis, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

/// One call's figures: measured, and the plan's estimate at the call's sizes.
pub struct Call {
    /// The call's sizes.
    pub env: DimEnv,
    /// What crossed the channel (and what the dealer made, or this party read).
    pub measured: Measured,
    /// (online bits, rounds, offline bits) the plan estimates.
    pub estimated: (u64, u64, u64),
    /// The `logits` this party received (`[positions, vocab]`); `None` for the server,
    /// which receives none.
    pub logits: Option<ArrayD<f64>>,
}

/// How the next token is chosen from the last position's logits.
pub struct Sampler {
    temperature: f64,
    rng: ChaCha12Rng,
}

impl Sampler {
    /// Greedy when `temperature` is 0, else sampling from softmax(logits / temperature)
    /// with a ChaCha stream seeded by `seed`.
    pub fn new(temperature: f64, seed: u64) -> Result<Sampler, String> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(format!(
                "--temperature must be a finite number ≥ 0 (0 = greedy), not {temperature}"
            ));
        }
        Ok(Sampler {
            temperature,
            rng: ChaCha12Rng::seed_from_u64(seed),
        })
    }

    /// The next token from `logits` (`[positions, vocab]`): its last row.
    pub fn choose(&mut self, logits: &ArrayD<f64>) -> u64 {
        let last = logits.index_axis(Axis(0), logits.shape()[0] - 1);
        let row: Vec<f64> = last.iter().copied().collect();
        self.choose_in(&row)
    }

    /// A token from one position's logits.
    pub fn choose_in(&mut self, row: &[f64]) -> u64 {
        let best = row
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
        if self.temperature == 0.0 {
            return best.0 as u64;
        }
        let weights: Vec<f64> = (row.iter())
            .map(|v| ((v - best.1) / self.temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        // 53 random bits: a uniform draw in [0, total)
        let mut u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i as u64;
            }
            u -= w;
        }
        best.0 as u64
    }
}

/// (online bits, rounds, offline bits) the plan estimates for a call at `env` (a sparse
/// plan at its expected density, every KV row opened once: see [`estimate_at`] for a
/// call's realised masks).
pub fn estimate(p: &Program, env: DimEnv) -> (u64, u64, u64) {
    let counts = match &p.options.sparsity {
        None => Counts::default(),
        Some(s) => Counts {
            active: (s.ffns.iter().enumerate())
                .map(|(k, f)| {
                    s.density.get(k).copied().unwrap_or(1.0) * (f.blocks * env.seq) as f64
                })
                .collect(),
            kv_rows: s.ffns.iter().map(|f| (f.blocks * env.seq) as f64).collect(),
        },
    };
    estimate_at(p, env, &counts)
}

/// Every unit's most: every block active, and every row of the cache opened in the call
/// (a head-masked product whose groups were all inactive until now).
pub fn most_counts(p: &Program, env: DimEnv) -> Counts {
    match &p.options.sparsity {
        None => Counts::default(),
        Some(s) => Counts {
            active: s.ffns.iter().map(|f| (f.blocks * env.seq) as f64).collect(),
            kv_rows: (s.ffns.iter())
                .map(|f| (f.blocks * (env.seq + env.past)) as f64)
                .collect(),
        },
    }
}

/// The estimate for a call at `env` with the counts of its opened masks
/// (a [`comet_runtime::interp::Measured`] is its own counts).
pub fn estimate_at(p: &Program, env: DimEnv, counts: &dyn UnitCounts) -> (u64, u64, u64) {
    let costs = p
        .analyses
        .costs
        .as_ref()
        .expect("checked by check_interface");
    let online: f64 = costs.iter().map(|(_, c)| c.online_at(env, counts)).sum();
    let offline: i128 = costs.iter().map(|(_, c)| c.offline_bits.eval(env)).sum();
    let rounds = comet_compiler::passes::schedule::total_rounds(p).eval(env);
    (online.round() as u64, rounds as u64, offline as u64)
}

/// Whether the plan has no KV cache (an encoder, such as an imported BERT): a call
/// cannot see an earlier call's tokens, so the plan runs one call over the whole prompt
/// and predicts a token at each position instead of generating.
pub fn is_encoder(p: &Program) -> bool {
    let g = &p.graph;
    !g.ids().any(|id| {
        matches!(
            g.node(id).op,
            Op::CacheRead { .. } | Op::CacheWrite { .. } | Op::CacheMatMul { .. }
        )
    })
}

/// The calls of a session with a prompt of `prompt_len` tokens: for a decoder, the prompt
/// then one call per further token of `generate` (8 by default); for an encoder
/// ([`is_encoder`]), the prompt's one call, `generate` other than 1 being an error.
pub fn session_calls(
    p: &Program,
    prompt_len: u64,
    generate: Option<usize>,
) -> Result<Vec<DimEnv>, String> {
    if generate == Some(0) {
        return Err("--generate must be at least 1".into());
    }
    if is_encoder(p) {
        if let Some(n) = generate.filter(|&n| n != 1) {
            return Err(format!(
                "--generate {n}: `{}` has no KV cache (an encoder, such as BERT), so it does \
                 not generate: it runs one call over the prompt and predicts a token at every \
                 position (a `[MASK]`'s prediction fills it); drop --generate",
                p.info.name
            ));
        }
        return Ok(call_sizes(prompt_len, 1));
    }
    Ok(call_sizes(prompt_len, generate.unwrap_or(8)))
}

/// The sizes of the calls of a generation: the prompt, then one token at a time.
pub fn call_sizes(prompt_len: u64, generate: usize) -> Vec<DimEnv> {
    (0..generate as u64)
        .map(|k| match k {
            0 => DimEnv {
                seq: prompt_len,
                past: 0,
            },
            k => DimEnv {
                seq: 1,
                past: prompt_len + k - 1,
            },
        })
        .collect()
}

/// The client's inputs of a call: `tokens`, and `segments` (BERT's token type ids) all 0
/// when the plan has it: the prompt is one sentence.
pub fn token_input(p: &Program, fed: &[u64]) -> Outputs {
    let ids = ArrayD::from_shape_vec(IxDyn(&[fed.len()]), fed.iter().map(|t| *t as f64).collect())
        .expect("1-D");
    let mut inputs = HashMap::from([("tokens".to_string(), ids)]);
    if p.info.input(SEGMENTS).is_some() {
        inputs.insert(SEGMENTS.to_string(), ArrayD::zeros(IxDyn(&[fed.len()])));
    }
    inputs
}

/// The name of the token type input `comet run` fills with zeros.
pub const SEGMENTS: &str = "segments";

/// An encoder's run ([`is_encoder`]): one call over `prompt`, and a token chosen at every
/// position of its `logits` by `sampler` (greedy by default). `call` as for [`generate`].
pub fn predict(
    p: &Program,
    prompt: &[u64],
    sampler: &mut Sampler,
    call: impl FnOnce(&Outputs, DimEnv) -> Result<(Outputs, Measured), String>,
) -> Result<(Vec<u64>, Vec<Call>), String> {
    let env = DimEnv {
        seq: prompt.len() as u64,
        past: 0,
    };
    let (mut out, measured) = call(&token_input(p, prompt), env)
        .map_err(|e| format!("call 0 (seq {}, past 0): {e}", env.seq))?;
    let logits = out
        .remove("logits")
        .ok_or("call 0: this party received no `logits`")?;
    let tokens: Vec<u64> = (logits.outer_iter())
        .map(|row| sampler.choose_in(&row.iter().copied().collect::<Vec<_>>()))
        .collect();
    eprintln!(
        "one call over {} positions ({} rounds, {} online): a token predicted at each",
        env.seq,
        measured.rounds,
        crate::report::bytes(measured.online_bits)
    );
    let call = Call {
        env,
        estimated: estimate_at(p, env, &measured),
        measured,
        logits: Some(logits),
    };
    Ok((tokens, vec![call]))
}

/// Generates `n` tokens after `prompt`: `call(inputs, env)` runs one call and returns the
/// outputs this side receives (with `logits`) and its figures; a line per token, and a bar
/// of `bars`.
pub fn generate(
    p: &Program,
    prompt: &[u64],
    n: usize,
    sampler: &mut Sampler,
    bars: &Bars,
    mut call: impl FnMut(&Outputs, DimEnv) -> Result<(Outputs, Measured), String>,
) -> Result<(Vec<u64>, Vec<Call>), String> {
    let bar = bars.counter(n as u64, "tokens");
    let mut tokens: Vec<u64> = Vec::new();
    let mut calls = Vec::new();
    for (step, env) in call_sizes(prompt.len() as u64, n).into_iter().enumerate() {
        let fed = if step == 0 {
            prompt
        } else {
            &tokens[step - 1..step]
        };
        let (out, measured) = call(&token_input(p, fed), env)
            .map_err(|e| format!("call {step} (seq {}, past {}): {e}", env.seq, env.past))?;
        let mut out = out;
        let logits = out
            .remove("logits")
            .ok_or_else(|| format!("call {step}: this party received no `logits`"))?;
        let token = sampler.choose(&logits);
        let line = format!(
            "token {:>3}/{n}: {token:>5}  ({} rounds, {} online)",
            step + 1,
            measured.rounds,
            crate::report::bytes(measured.online_bits)
        );
        match &bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        tokens.push(token);
        calls.push(Call {
            env,
            estimated: estimate_at(p, env, &measured),
            measured,
            logits: Some(logits),
        });
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((tokens, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_last_rows_maximum_and_sampling_is_seeded() {
        let logits =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![9.0, 0.0, 0.0, 0.1, 0.3, 0.2]).unwrap();
        assert_eq!(Sampler::new(0.0, 1).unwrap().choose(&logits), 1);
        let draw = |seed| {
            let mut s = Sampler::new(1.0, seed).unwrap();
            (0..64).map(|_| s.choose(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5), "the same seed draws the same tokens");
        assert_ne!(draw(5), draw(6));
        assert!(draw(5).iter().all(|&t| t < 3));
        let mut cold = Sampler::new(1e-3, 3).unwrap();
        assert!(
            (0..32).all(|_| cold.choose(&logits) == 1),
            "near 0 is greedy"
        );
        let two = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![0.0, 3f64.ln()]).unwrap();
        let mut s = Sampler::new(1.0, 11).unwrap();
        let ones = (0..8000).filter(|_| s.choose(&two) == 1).count() as f64 / 8000.0;
        assert!((ones - 0.75).abs() < 0.02, "p(1) = 3/4, drew {ones}");
        assert!(Sampler::new(-1.0, 0).is_err() && Sampler::new(f64::NAN, 0).is_err());
    }

    #[test]
    fn calls_feed_the_prompt_then_one_token() {
        let sizes = call_sizes(6, 3);
        let pairs: Vec<(u64, u64)> = sizes.iter().map(|e| (e.seq, e.past)).collect();
        assert_eq!(pairs, vec![(6, 0), (1, 6), (1, 7)]);
    }
}
