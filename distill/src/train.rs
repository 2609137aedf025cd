//! The distillation loop: sequences sampled from the teacher, the loss, Adam, the report.

use crate::model::{Models, Weights};
use crate::state::State;
use crate::{DistillError, grad};
use comet_ir::{DimEnv, NodeId};
use comet_runtime::plain;
use ndarray::{ArrayD, Axis};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rayon::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

/// Adam's β1.
const BETA1: f64 = 0.9;
/// Adam's β2.
const BETA2: f64 = 0.999;
/// Adam's ε.
const ADAM_EPS: f64 = 1e-8;

/// What to train and how. Everything that changes the result is here (and in the state
/// file, which a resumed run must match).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Total optimizer steps.
    pub steps: u64,
    /// Tokens per training sequence.
    pub seq: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate (linear warm-up over the first 5% of steps, then cosine decay to
    /// a tenth of it).
    pub lr: f64,
    /// Seed of the sampled sequences.
    pub seed: u64,
    /// Temperature of the teacher's sampling.
    pub temperature: f64,
    /// Sample only among the teacher's `top_k` most likely tokens (0: all of them).
    pub top_k: usize,
    /// Temperature τ of the distillation loss: τ² · KL(softmax(t/τ) ‖ softmax(s/τ)) (1: the
    /// plain KL of the next-token distributions).
    pub kd_temperature: f64,
    /// Weight of the hidden-state MSE (0: logits only).
    pub hidden_loss: f64,
    /// Prompts (token ids) the sampled sequences continue; empty: a random first token.
    pub prompts: Vec<Vec<u64>>,
    /// The batch's gradient is scaled down to this global L2 norm when it is longer
    /// (0: never). Without norms (pcf) a step that meets a rare large activation would
    /// otherwise throw the weights far off.
    pub clip: f64,
}

impl Config {
    /// Checks the options.
    ///
    /// # Errors
    /// [`DistillError::Usage`] naming the bad option.
    pub fn check(&self) -> Result<(), DistillError> {
        let bad = |m: &str| Err(DistillError::Usage(m.to_string()));
        if self.seq < 2 {
            return bad("--seq must be at least 2 (a token and its successor)");
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr must be a positive number");
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("--temperature must be a positive number");
        }
        if !(self.kd_temperature.is_finite() && self.kd_temperature > 0.0) {
            return bad("--kd-temperature must be a positive number");
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return bad("--clip must be a non-negative number");
        }
        if !(self.hidden_loss.is_finite() && self.hidden_loss >= 0.0) {
            return bad("--hidden-loss must be a non-negative number");
        }
        Ok(())
    }

    /// The learning rate at `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        let warm = (self.steps / 20).max(1);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let t = (step - warm) as f64 / (self.steps - warm).max(1) as f64;
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }

    /// The options as JSON (the report's and the state file's record).
    pub fn to_json(&self) -> Value {
        json!({
            "steps": self.steps,
            "seq": self.seq,
            "batch": self.batch,
            "lr": self.lr,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "kd_temperature": self.kd_temperature,
            "hidden_loss": self.hidden_loss,
            "prompts": self.prompts.len(),
            "clip": self.clip,
        })
    }
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLog {
    /// The step (1-based: steps done after it).
    pub step: u64,
    /// The mean loss of the batch (τ²·KL at the loss's temperature τ + weighted hidden
    /// MSE), before the update.
    pub loss: f64,
    /// KL(teacher ‖ student) at temperature 1 (nats per position), whatever τ.
    pub kl: f64,
    /// Its hidden-state MSE (unweighted).
    pub hidden: f64,
    /// The learning rate used.
    pub lr: f64,
    /// The batch gradient's global L2 norm, before clipping.
    pub grad_norm: f64,
    /// Wall time of the step.
    pub seconds: f64,
}

impl StepLog {
    fn to_json(&self) -> Value {
        json!({"step": self.step, "loss": self.loss, "kl": self.kl, "hidden": self.hidden,
               "lr": self.lr, "grad_norm": self.grad_norm, "seconds": self.seconds})
    }
}

/// Accuracy of the student against the teacher on held-out sequences the teacher samples
/// (a seed stream that training never uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Held-out sequences.
    pub sequences: usize,
    /// Perplexity of the teacher on them (its own samples).
    pub teacher_perplexity: f64,
    /// Perplexity of the student on the same tokens.
    pub student_perplexity: f64,
    /// Mean KL(teacher ‖ student) per position.
    pub kl: f64,
    /// max |student − teacher| over every logit of every position.
    pub max_logits_error: f64,
    /// Greedy tokens of the student equal to the teacher's before the first difference,
    /// summed over the prompts.
    pub greedy_agree: usize,
    /// Greedy tokens generated per prompt × prompts.
    pub greedy_total: usize,
}

impl Metrics {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "sequences": self.sequences,
            "teacher_perplexity": self.teacher_perplexity,
            "student_perplexity": self.student_perplexity,
            "kl": self.kl,
            "max_logits_error": self.max_logits_error,
            "greedy_agree": self.greedy_agree,
            "greedy_total": self.greedy_total,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options.
    pub config: Config,
    /// Every step's log, from the first step of the first run (a resumed run carries the
    /// earlier ones over).
    pub curve: Vec<StepLog>,
    /// Held-out accuracy of the student before training (the original weights), if measured.
    pub before: Option<Metrics>,
    /// After training, if measured.
    pub after: Option<Metrics>,
    /// Threads of the pool the batch ran on.
    pub threads: usize,
}

impl Report {
    /// As JSON (the `--report` file).
    pub fn to_json(&self, models: &Models) -> Value {
        let n = self.curve.len().max(1) as f64;
        json!({
            "approx": models.approx.to_string(),
            "config": self.config.to_json(),
            "threads": self.threads,
            "seconds_per_step": self.curve.iter().map(|s| s.seconds).sum::<f64>() / n,
            "curve": self.curve.iter().map(StepLog::to_json).collect::<Vec<_>>(),
            "before": self.before.as_ref().map(Metrics::to_json),
            "after": self.after.as_ref().map(Metrics::to_json),
        })
    }
}

/// A well-mixed 64-bit seed from `(seed, domain, a, b)` (splitmix64 steps).
fn mix(seed: u64, domain: u64, a: u64, b: u64) -> u64 {
    let mut z = seed;
    for v in [domain, a, b] {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15 ^ v);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// Seed domain of training sequences.
const TRAIN: u64 = 1;
/// Seed domain of held-out sequences.
const HELD_OUT: u64 = 2;

/// `softmax(row / t)`.
fn softmax(row: &[f64], t: f64) -> Vec<f64> {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| ((v - m) / t).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

/// `log softmax(row)`.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z = row.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
    row.iter().map(|v| v - z).collect()
}

fn row(x: &ArrayD<f64>, i: usize) -> Vec<f64> {
    x.index_axis(Axis(0), i).iter().copied().collect()
}

fn argmax(xs: &[f64]) -> u64 {
    (0..xs.len()).fold(0, |b, i| if xs[i] > xs[b] { i } else { b }) as u64
}

/// Samples `len` tokens from the teacher: the prompt (a random one of `prompts`, cut to
/// `len − 1`, or one random token), continued at temperature `t` through the KV cache,
/// among the `top_k` most likely tokens (0: all).
///
/// `weights` are the teacher's; when they hold the transposed copies of
/// [`Models::sampling_weights`], the sampler program reads them instead of transposing a
/// weight at every call.
pub fn sample(
    models: &Models,
    weights: &Weights,
    prompts: &[Vec<u64>],
    len: usize,
    t: f64,
    top_k: usize,
    rng: &mut ChaCha12Rng,
) -> Result<Vec<u64>, DistillError> {
    let program = models.sampler_for(weights);
    let mut ids: Vec<u64> = match prompts.len() {
        0 => vec![rng.random_range(0..models.vocab as u64)],
        n => {
            let p = &prompts[rng.random_range(0..n)];
            p[..p.len().min(len - 1)].to_vec()
        }
    };
    let mut cache = plain::Cache::new();
    let mut fed = ids.clone();
    while ids.len() < len {
        let past = (ids.len() - fed.len()) as u64;
        let logits = models
            .logits(program, weights, &fed, past, &mut cache)
            .map_err(|message| DistillError::Eval {
                which: "teacher",
                message,
            })?;
        let mut p = softmax(&row(&logits, fed.len() - 1), t);
        if top_k > 0 && top_k < p.len() {
            let mut sorted = p.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let cut = sorted[top_k - 1];
            // Ties at the cut stay in: the kept set does not depend on the order of equal
            // probabilities.
            p.iter_mut().filter(|v| **v < cut).for_each(|v| *v = 0.0);
            let z: f64 = p.iter().sum();
            p.iter_mut().for_each(|v| *v /= z);
        }
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut next = (p.len() - 1) as u64;
        for (i, pi) in p.iter().enumerate() {
            acc += pi;
            if u < acc {
                next = i as u64;
                break;
            }
        }
        ids.push(next);
        fed = vec![next];
    }
    Ok(ids)
}

/// The loss of one sequence and its gradients by weight name.
struct SeqLoss {
    kl: f64,
    kd: f64,
    hidden: f64,
    grads: HashMap<String, ArrayD<f64>>,
}

fn eval_err(which: &'static str) -> impl Fn(plain::PlainError) -> DistillError {
    move |e| DistillError::Eval {
        which,
        message: e.to_string(),
    }
}

/// KL(teacher ‖ student) per position (mean over positions) and the student's gradients,
/// plus `hidden_loss` × the residual stream's MSE (mean over its nodes and elements).
fn sequence_loss(
    models: &Models,
    teacher: &Weights,
    student: &Weights,
    ids: &[u64],
    hidden_loss: f64,
    tau: f64,
) -> Result<SeqLoss, DistillError> {
    let env = DimEnv {
        seq: ids.len() as u64,
        past: 0,
    };
    let inputs = models.tokens(ids);
    let hidden = hidden_loss > 0.0 && !models.hidden.is_empty();
    let t_eval = if hidden {
        plain::eval_with_trace(
            &models.teacher,
            &inputs,
            teacher,
            env,
            &mut plain::Cache::new(),
        )
    } else {
        plain::eval(
            &models.teacher,
            &inputs,
            teacher,
            env,
            &mut plain::Cache::new(),
        )
        .map(|o| comet_runtime::plain::Evaluation {
            outputs: o,
            values: HashMap::new(),
        })
    }
    .map_err(eval_err("teacher"))?;
    let s_eval = plain::eval_with_trace(
        &models.student,
        &inputs,
        student,
        env,
        &mut plain::Cache::new(),
    )
    .map_err(eval_err("student"))?;
    let (t_logits, s_logits) = (
        &t_eval.outputs[&models.output],
        &s_eval.outputs[&models.output],
    );
    let n = ids.len();
    let mut g = ArrayD::zeros(s_logits.raw_dim());
    let (mut kl, mut kd) = (0.0, 0.0);
    for i in 0..n {
        let (tr, sr) = (row(t_logits, i), row(s_logits, i));
        let p = softmax(&tr, 1.0);
        let log_q = log_softmax(&sr);
        for v in 0..p.len() {
            if p[v] > 0.0 {
                kl += p[v] * (p[v].ln() - log_q[v]);
            }
        }
        // τ² · KL(p_τ ‖ q_τ); its gradient in the student's logits is τ · (q_τ − p_τ).
        let scaled = |r: &[f64]| r.iter().map(|v| v / tau).collect::<Vec<f64>>();
        let (p_t, log_q_t) = if tau == 1.0 {
            (p, log_q)
        } else {
            (softmax(&tr, tau), log_softmax(&scaled(&sr)))
        };
        let mut gi = g.index_axis_mut(Axis(0), i);
        for v in 0..p_t.len() {
            if p_t[v] > 0.0 {
                kd += tau * tau * p_t[v] * (p_t[v].ln() - log_q_t[v]);
            }
            gi[v] = tau * (log_q_t[v].exp() - p_t[v]) / n as f64;
        }
    }
    kl /= n as f64;
    kd /= n as f64;
    let mut seeds: Vec<(NodeId, ArrayD<f64>)> = vec![(models.output_node(&models.student), g)];
    let mut mse = 0.0;
    if hidden {
        let k = models.hidden.len() as f64;
        for id in &models.hidden {
            let (hs, ht) = (&s_eval.values[id], &t_eval.values[id]);
            let diff = hs - ht;
            let m = diff.len() as f64;
            mse += diff.iter().map(|d| d * d).sum::<f64>() / m / k;
            seeds.push((*id, diff.mapv(|d| hidden_loss * 2.0 * d / m / k)));
        }
    }
    let grads = grad::backward(&models.student, env, &s_eval.values, seeds)?;
    Ok(SeqLoss {
        kl,
        kd,
        hidden: mse,
        grads,
    })
}

/// Runs (or resumes, from `state`) distillation up to `config.steps`, calling `progress`
/// after every step; returns the trained state and the steps' logs.
///
/// The teacher's weights are `teacher`; a fresh state starts the student from them.
///
/// # Errors
/// A bad option, an evaluation or gradient error, or a diverging loss.
pub fn distill(
    models: &Models,
    teacher: &Weights,
    config: &Config,
    state: State,
    progress: &mut dyn FnMut(&StepLog),
) -> Result<State, DistillError> {
    distill_until(models, teacher, config, config.steps, state, progress)
}

/// Like [`distill`], but stops after step `until` (at most `config.steps`); the learning
/// rate follows the schedule of `config.steps`, so running to `k` and then resuming to
/// `config.steps` gives exactly the result of one run.
///
/// # Errors
/// As [`distill`].
pub fn distill_until(
    models: &Models,
    teacher: &Weights,
    config: &Config,
    until: u64,
    mut state: State,
    progress: &mut dyn FnMut(&StepLog),
) -> Result<State, DistillError> {
    config.check()?;
    let mut names: Vec<String> = state.params.keys().cloned().collect();
    names.sort();
    let sampling = models.sampling_weights(teacher);
    while state.step < until.min(config.steps) {
        let start = Instant::now();
        let step = state.step;
        let params = &state.params;
        let losses: Vec<Result<SeqLoss, DistillError>> = (0..config.batch)
            .into_par_iter()
            .map(|b| {
                let mut rng = ChaCha12Rng::seed_from_u64(mix(config.seed, TRAIN, step, b as u64));
                let ids = sample(
                    models,
                    &sampling,
                    &config.prompts,
                    config.seq,
                    config.temperature,
                    config.top_k,
                    &mut rng,
                )?;
                sequence_loss(
                    models,
                    teacher,
                    params,
                    &ids,
                    config.hidden_loss,
                    config.kd_temperature,
                )
            })
            .collect();
        let mut kl = 0.0;
        let mut kd = 0.0;
        let mut hidden = 0.0;
        let mut total: HashMap<String, ArrayD<f64>> = HashMap::new();
        for r in losses {
            let l = r?;
            kl += l.kl;
            kd += l.kd;
            hidden += l.hidden;
            for (name, g) in l.grads {
                match total.get_mut(&name) {
                    Some(acc) => *acc += &g,
                    None => {
                        total.insert(name, g);
                    }
                }
            }
        }
        let batch = config.batch as f64;
        let (kl, kd, hidden) = (kl / batch, kd / batch, hidden / batch);
        let loss = kd + config.hidden_loss * hidden;
        if !loss.is_finite() {
            return Err(DistillError::Diverged {
                step: step + 1,
                loss,
            });
        }
        let norm = total
            .values()
            .map(|g| g.iter().map(|v| v * v).sum::<f64>())
            .sum::<f64>()
            .sqrt()
            / batch;
        let scale = match config.clip {
            c if c > 0.0 && norm > c => c / norm,
            _ => 1.0,
        };
        let lr = config.lr_at(step);
        let t = (step + 1) as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for name in &names {
            let Some(g) = total.get(name) else { continue };
            let g = g * (scale / batch);
            let m = state.m.get_mut(name).expect("one moment per parameter");
            let v = state.v.get_mut(name).expect("one moment per parameter");
            let p = state.params.get_mut(name).expect("a parameter");
            ndarray::Zip::from(p)
                .and(m)
                .and(v)
                .and(&g)
                .for_each(|p, m, v, &g| {
                    *m = BETA1 * *m + (1.0 - BETA1) * g;
                    *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + ADAM_EPS);
                });
        }
        state.step += 1;
        let log = StepLog {
            step: state.step,
            loss,
            kl,
            hidden,
            lr,
            grad_norm: norm,
            seconds: start.elapsed().as_secs_f64(),
        };
        progress(&log);
        state.curve.push(log);
    }
    Ok(state)
}

/// One held-out sequence: teacher's and student's NLL sums, KL per position, max logits
/// error, greedy agreement.
type HeldOut = (f64, f64, f64, f64, usize);

/// Held-out accuracy of `student` weights against the teacher: `sequences` sequences of
/// `len` tokens sampled from the teacher at temperature 1 (a seed stream training never
/// uses), and greedy continuations of `greedy` tokens after the first 8 tokens of each.
///
/// # Errors
/// An evaluation error.
pub fn evaluate(
    models: &Models,
    teacher: &Weights,
    student: &Weights,
    seed: u64,
    sequences: usize,
    len: usize,
    greedy: usize,
) -> Result<Metrics, DistillError> {
    let sampling = models.sampling_weights(teacher);
    let runs: Vec<Result<HeldOut, DistillError>> = (0..sequences)
        .into_par_iter()
        .map(|k| {
            let mut rng = ChaCha12Rng::seed_from_u64(mix(seed, HELD_OUT, k as u64, 0));
            let ids = sample(models, &sampling, &[], len, 1.0, 0, &mut rng)?;
            let err = |which| move |message| DistillError::Eval { which, message };
            let tl = models
                .logits(&models.teacher, teacher, &ids, 0, &mut plain::Cache::new())
                .map_err(err("teacher"))?;
            let sl = models
                .logits(&models.student, student, &ids, 0, &mut plain::Cache::new())
                .map_err(err("student"))?;
            let (mut t_nll, mut s_nll, mut kl, mut max_err) = (0.0, 0.0, 0.0, 0.0f64);
            for i in 0..len {
                let (tr, sr) = (row(&tl, i), row(&sl, i));
                let (lt, ls) = (log_softmax(&tr), log_softmax(&sr));
                if i + 1 < len {
                    let next = ids[i + 1] as usize;
                    t_nll -= lt[next];
                    s_nll -= ls[next];
                }
                for v in 0..tr.len() {
                    kl += lt[v].exp() * (lt[v] - ls[v]);
                    max_err = max_err.max((tr[v] - sr[v]).abs());
                }
            }
            let prompt = &ids[..len.min(8)];
            let gt = generate(models, &models.teacher, teacher, prompt, greedy)?;
            let gs = generate(models, &models.student, student, prompt, greedy)?;
            let agree = gt.iter().zip(&gs).take_while(|(a, b)| a == b).count();
            Ok((t_nll, s_nll, kl / len as f64, max_err, agree))
        })
        .collect();
    let mut m = Metrics {
        sequences,
        teacher_perplexity: 0.0,
        student_perplexity: 0.0,
        kl: 0.0,
        max_logits_error: 0.0,
        greedy_agree: 0,
        greedy_total: sequences * greedy,
    };
    let (mut t_nll, mut s_nll) = (0.0, 0.0);
    for r in runs {
        let (t, s, kl, e, agree) = r?;
        t_nll += t;
        s_nll += s;
        m.kl += kl / sequences as f64;
        m.max_logits_error = m.max_logits_error.max(e);
        m.greedy_agree += agree;
    }
    let predicted = (sequences * (len - 1)) as f64;
    m.teacher_perplexity = (t_nll / predicted).exp();
    m.student_perplexity = (s_nll / predicted).exp();
    Ok(m)
}

/// `n` greedy tokens after `prompt`, through the KV cache.
pub fn generate(
    models: &Models,
    program: &comet_ir::Program,
    weights: &Weights,
    prompt: &[u64],
    n: usize,
) -> Result<Vec<u64>, DistillError> {
    let mut cache = plain::Cache::new();
    let mut out = Vec::with_capacity(n);
    let mut fed = prompt.to_vec();
    let mut past = 0;
    for _ in 0..n {
        let logits = models
            .logits(program, weights, &fed, past, &mut cache)
            .map_err(|message| DistillError::Eval {
                which: "model",
                message,
            })?;
        past += fed.len() as u64;
        let next = argmax(&row(&logits, fed.len() - 1));
        out.push(next);
        fed = vec![next];
    }
    Ok(out)
}

/// Seed domain of the calibration sequences.
const CALIBRATION: u64 = 3;

/// What [`calibrate`] changed: per gain weight, the factor it was multiplied by.
pub type Calibration = Vec<(String, f64)>;

/// Folds the teacher's average normalisation into the student's gains where the student's
/// norm drops the division (pcf's affine norms, `x·g` and `(x − μ)·g + b`): each such
/// norm's gain is multiplied by the mean over `sequences` sampled sequences of `seq` tokens
/// of the factor the teacher divides by, `1/sqrt(mean(x²) + ε)` (RMSNorm) or
/// `1/sqrt(var(x) + ε)` (LayerNorm), so that the student starts at the teacher's scale
/// (the shipped model's first norm sees mean(x²) ≈ 0.005: without this its student
/// computes with activations 14 times too small). A gain shared by several norms, or used
/// elsewhere, is left alone.
///
/// # Errors
/// An evaluation error.
pub fn calibrate(
    models: &Models,
    teacher: &Weights,
    config: &Config,
    sequences: usize,
) -> Result<(Weights, Calibration), DistillError> {
    use comet_ir::Op;
    let t = &models.teacher;
    let mut norms: Vec<(NodeId, NodeId, String, f64, bool)> = Vec::new();
    for id in t.graph.ids() {
        let node = t.graph.node(id);
        let (eps, layer) = match node.op {
            Op::RmsNorm { eps } => (eps, false),
            Op::LayerNorm { eps } => (eps, true),
            _ => continue,
        };
        let student = &models.student.graph;
        if student.contains(id) && student.node(id).op == node.op {
            continue; // kept exact (a replaced node's id may be reused by a new node)
        }
        let xs = t.graph.operands(id);
        let Op::Weight { name } = &t.graph.node(xs[1]).op else {
            continue;
        };
        if t.graph.users(xs[1]).len() != 1 {
            continue;
        }
        norms.push((id, xs[0], name.clone(), eps, layer));
    }
    let mut out = teacher.clone();
    if norms.is_empty() {
        return Ok((out, Vec::new()));
    }
    let sampling = models.sampling_weights(teacher);
    let sums: Vec<Result<Vec<(f64, usize)>, DistillError>> = (0..sequences)
        .into_par_iter()
        .map(|k| {
            let mut rng = ChaCha12Rng::seed_from_u64(mix(config.seed, CALIBRATION, k as u64, 0));
            let ids = sample(
                models,
                &sampling,
                &config.prompts,
                config.seq,
                1.0,
                0,
                &mut rng,
            )?;
            let env = DimEnv {
                seq: ids.len() as u64,
                past: 0,
            };
            let trace = plain::eval_with_trace(
                t,
                &models.tokens(&ids),
                teacher,
                env,
                &mut plain::Cache::new(),
            )
            .map_err(eval_err("teacher"))?;
            Ok(norms
                .iter()
                .map(|(_, x, _, eps, layer)| {
                    let x = &trace.values[x];
                    let last = Axis(x.ndim() - 1);
                    let mut sum = 0.0;
                    let mut rows = 0;
                    for r in x.lanes(last) {
                        let n = r.len() as f64;
                        let mean = if *layer { r.sum() / n } else { 0.0 };
                        let ms = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                        sum += 1.0 / (ms + eps).sqrt();
                        rows += 1;
                    }
                    (sum, rows)
                })
                .collect())
        })
        .collect();
    let mut total = vec![(0.0, 0usize); norms.len()];
    for s in sums {
        for (acc, (sum, rows)) in total.iter_mut().zip(s?) {
            acc.0 += sum;
            acc.1 += rows;
        }
    }
    let mut factors = Vec::new();
    for ((_, _, name, _, _), (sum, rows)) in norms.iter().zip(total) {
        let f = sum / rows.max(1) as f64;
        if let Some(g) = out.get_mut(name) {
            g.mapv_inplace(|v| v * f);
            factors.push((name.clone(), f));
        }
    }
    Ok((out, factors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    const MODEL: &str = r#"
model tiny {
  format ring = 64, frac = 16;
  dim vocab = 12, d = 8, ff = 8, n_layers = 1;
  dim heads = 2, kv_heads = 1, hd = d / heads;
  dim seq, past;
  input tokens: token[seq] from client;
  weight E: [vocab, d] = "E";
  weight norm_f: [d] = "norm_f.gamma";
  block decoder[i](x) {
    weight g1: [d] = "b.{i}.g1";
    weight wq: [d, heads * hd] = "b.{i}.wq";
    weight wk: [d, kv_heads * hd] = "b.{i}.wk";
    weight wv: [d, kv_heads * hd] = "b.{i}.wv";
    weight wo: [heads * hd, d] = "b.{i}.wo";
    weight g2: [d] = "b.{i}.g2";
    weight w1: [d, ff] = "b.{i}.w1";
    weight w3: [d, ff] = "b.{i}.w3";
    weight w2: [ff, d] = "b.{i}.w2";
    let h = rms_norm(x, g1, eps = 1e-6);
    let a = attention(h, wq, wk, wv, wo, heads = heads, kv_heads = kv_heads,
                      rope = adjacent, rope_base = 10000, causal = true, cache = true);
    let x1 = x + a;
    let h2 = rms_norm(x1, g2, eps = 1e-6);
    return x1 + matmul(silu(matmul(h2, w1)) * matmul(h2, w3), w2);
  }
  let h = repeat decoder[0..n_layers](embed(tokens, E));
  let logits = matmul(rms_norm(h, norm_f, eps = 1e-6), transpose(E));
  output logits to client;
}
"#;

    fn weights(models: &Models, seed: u64) -> Weights {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        models
            .teacher
            .info
            .weights
            .iter()
            .map(|w| {
                let shape: Vec<usize> = w.shape.iter().map(|d| *d as usize).collect();
                let gain = shape.len() == 1;
                let v = ArrayD::from_shape_fn(IxDyn(&shape), |_| match gain {
                    true => 1.0 + rng.random_range(-0.2..0.2),
                    false => rng.random_range(-0.8..0.8),
                });
                (w.name.clone(), v)
            })
            .collect()
    }

    /// The gradient of τ²·KL at τ = 2.5 (and at τ = 1) against central differences of the
    /// loss itself, on every entry of two weights.
    #[test]
    fn the_loss_temperature_gradient_matches_finite_differences() {
        let models = Models::new(MODEL, "tiny.model", "mpcformer".parse().unwrap()).unwrap();
        let teacher = weights(&models, 1);
        let student = weights(&models, 2);
        let ids = [3u64, 7, 1, 11, 0, 5];
        for tau in [1.0, 2.5] {
            let l = sequence_loss(&models, &teacher, &student, &ids, 0.0, tau).unwrap();
            assert!(l.kd > 0.0 && l.kl > 0.0);
            if tau != 1.0 {
                assert!((l.kd - l.kl).abs() > 1e-6);
            }
            for name in ["w1", "norm_f"] {
                let name = models
                    .teacher
                    .info
                    .weights
                    .iter()
                    .find(|w| w.name.ends_with(name))
                    .map(|w| w.name.clone())
                    .unwrap();
                let g = &l.grads[&name];
                for i in 0..g.len() {
                    let h = 1e-5;
                    let at = |d: f64| {
                        let mut w = student.clone();
                        let x = w.get_mut(&name).unwrap();
                        x.as_slice_mut().unwrap()[i] += d;
                        sequence_loss(&models, &teacher, &w, &ids, 0.0, tau)
                            .unwrap()
                            .kd
                    };
                    let fd = (at(h) - at(-h)) / (2.0 * h);
                    let an = g.as_slice().unwrap()[i];
                    assert!(
                        (fd - an).abs() < 1e-6 * (1.0 + fd.abs()),
                        "τ {tau} {name}[{i}]: analytic {an}, finite differences {fd}"
                    );
                }
            }
        }
    }
}
