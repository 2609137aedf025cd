//! Training: the loss falls, a resumed run equals an uninterrupted one, the output has the
//! input's layout, and bad inputs are clear errors. On a tiny llama-style model with seeded
//! weights written to a safetensors file (F32, plus one tensor the model does not use).

use comet_distill::state::State;
use comet_distill::{Config, DistillError, Models, StepLog, checkpoint, distill, evaluate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::path::{Path, PathBuf};

const MODEL: &str = r#"
model tiny {
  format ring = 64, frac = 16;
  dim vocab = 24, d = 16, ff = 24, n_layers = 2;
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

/// Writes seeded weights for `models` (gains near 1, matrices ~ ±0.6) and an extra tensor.
fn weights_file(models: &Models, dir: &Path) -> PathBuf {
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for w in &models.teacher.info.weights {
        let shape: Vec<usize> = w.stored_shape().iter().map(|d| *d as usize).collect();
        let n: usize = shape.iter().product();
        let gain = shape.len() == 1;
        let data: Vec<u8> = (0..n)
            .flat_map(|_| {
                let v: f32 = match gain {
                    true => 1.0 + rng.random_range(-0.2..0.2),
                    false => rng.random_range(-0.6..0.6),
                };
                v.to_le_bytes()
            })
            .collect();
        tensors.push((w.tensor.clone(), shape, data));
    }
    tensors.push((
        "unused.extra".into(),
        vec![3],
        [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    ));
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let path = dir.join("tiny.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

fn setup(approx: &str) -> (Models, comet_distill::Weights, PathBuf, tempfile::TempDir) {
    let models = Models::new(MODEL, "tiny.model", approx.parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = weights_file(&models, dir.path());
    let teacher = models.load(&path).unwrap();
    (models, teacher, path, dir)
}

fn config(steps: u64) -> Config {
    Config {
        steps,
        seq: 10,
        batch: 4,
        lr: 1e-2,
        seed: 3,
        temperature: 1.0,
        top_k: 0,
        kd_temperature: 1.0,
        hidden_loss: 0.0,
        prompts: Vec::new(),
        clip: 0.0,
    }
}

fn run(models: &Models, teacher: &comet_distill::Weights, c: &Config, s: State) -> State {
    distill(models, teacher, c, s, &mut |_: &StepLog| {}).unwrap()
}

#[test]
fn the_loss_falls_and_held_out_agreement_rises() {
    let (models, teacher, _, _dir) = setup("pcf");
    let c = config(40);
    let before = evaluate(&models, &teacher, &teacher, 9, 6, 12, 6).unwrap();
    let state = run(&models, &teacher, &c, State::new(&teacher));
    let after = evaluate(&models, &teacher, &state.params, 9, 6, 12, 6).unwrap();
    let first: f64 = state.curve[..5].iter().map(|s| s.loss).sum::<f64>() / 5.0;
    let last: f64 = state.curve[35..].iter().map(|s| s.loss).sum::<f64>() / 5.0;
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert!(
        after.kl < 0.5 * before.kl,
        "held-out KL {} → {}",
        before.kl,
        after.kl
    );
    let gap =
        |m: &comet_distill::Metrics| (m.student_perplexity / m.teacher_perplexity - 1.0).abs();
    assert!(gap(&after) < gap(&before), "{before:?} → {after:?}");
    assert_eq!(before.teacher_perplexity, after.teacher_perplexity);
}

#[test]
fn the_hidden_state_loss_is_measured_and_falls() {
    let (models, teacher, _, _dir) = setup("pcf");
    assert_eq!(models.hidden.len(), 4, "two residual adds per layer");
    let c = Config {
        hidden_loss: 0.5,
        ..config(20)
    };
    let state = run(&models, &teacher, &c, State::new(&teacher));
    assert!(state.curve[0].hidden > 0.0);
    assert!(state.curve[19].hidden < state.curve[0].hidden);
    let total = state.curve[0].kl + 0.5 * state.curve[0].hidden;
    assert!((state.curve[0].loss - total).abs() < 1e-12);
}

#[test]
fn the_sampler_reads_pre_transposed_weights_and_samples_as_the_teacher() {
    let (models, teacher, _, _dir) = setup("pcf");
    // the tied head's transpose(E) became a weight of its own
    assert_eq!(models.transposed, [("E.T".to_string(), "E".to_string())]);
    let sampling = models.sampling_weights(&teacher);
    assert_eq!(sampling["E.T"], teacher["E"].t());
    assert!(std::ptr::eq(models.sampler_for(&sampling), &models.sampler));
    assert!(std::ptr::eq(models.sampler_for(&teacher), &models.teacher));
    for seed in 0..4 {
        let draw = |w: &comet_distill::Weights| {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            comet_distill::train::sample(&models, w, &[], 12, 1.0, 0, &mut rng).unwrap()
        };
        assert_eq!(draw(&sampling), draw(&teacher), "seed {seed}");
    }
}

#[test]
fn top_k_one_samples_the_greedy_continuation() {
    let (models, teacher, _, _dir) = setup("pcf");
    let prompt = vec![5u64, 17, 2];
    let greedy =
        comet_distill::train::generate(&models, &models.teacher, &teacher, &prompt, 7).unwrap();
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..6 {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let ids = comet_distill::train::sample(
            &models,
            &teacher,
            std::slice::from_ref(&prompt),
            10,
            3.0,
            1,
            &mut rng,
        )
        .unwrap();
        assert_eq!(ids[..3], prompt[..]);
        assert_eq!(ids[3..], greedy[..], "seed {seed}");
        // without the cut, a hot temperature leaves the greedy path
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        distinct.insert(
            comet_distill::train::sample(
                &models,
                &teacher,
                std::slice::from_ref(&prompt),
                10,
                3.0,
                0,
                &mut rng,
            )
            .unwrap(),
        );
    }
    assert!(distinct.len() > 1);
}

#[test]
fn a_loss_temperature_trains_and_logs_the_plain_kl() {
    let (models, teacher, _, _dir) = setup("pcf");
    let c = Config {
        kd_temperature: 2.0,
        ..config(20)
    };
    let state = run(&models, &teacher, &c, State::new(&teacher));
    let first = &state.curve[0];
    // the logged KL is at temperature 1, the loss is τ²·KL at τ = 2: they differ
    assert!((first.loss - first.kl).abs() > 1e-6, "{first:?}");
    let mean = |s: &[StepLog]| s.iter().map(|l| l.kl).sum::<f64>() / s.len() as f64;
    assert!(mean(&state.curve[15..]) < 0.5 * mean(&state.curve[..5]));
    // τ = 1 logs the loss as its KL
    let plain = run(&models, &teacher, &config(1), State::new(&teacher));
    assert!((plain.curve[0].loss - plain.curve[0].kl).abs() < 1e-12);
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let (models, teacher, _, dir) = setup("mpcformer");
    let c = config(6);
    let whole = run(&models, &teacher, &c, State::new(&teacher));
    let half = comet_distill::train::distill_until(
        &models,
        &teacher,
        &c,
        3,
        State::new(&teacher),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(half.step, 3);
    let path = dir.path().join("state.safetensors");
    let approx = models.approx.to_string();
    half.save(&path, &c, &approx, &teacher).unwrap();
    let loaded = State::load(&path, &c, &approx, &teacher).unwrap();
    assert_eq!(loaded.params, half.params);
    assert_eq!((&loaded.m, &loaded.v), (&half.m, &half.v));
    let resumed = run(&models, &teacher, &c, loaded);
    assert_eq!(resumed.params, whole.params, "bit for bit");
    assert_eq!(resumed.m, whole.m);
    let losses = |s: &State| s.curve.iter().map(|l| (l.step, l.loss)).collect::<Vec<_>>();
    assert_eq!(losses(&resumed), losses(&whole));
    assert_ne!(whole.params, teacher, "training changed the weights");

    // another run's state is refused, with what differs
    let other = Config {
        seed: 4,
        ..c.clone()
    };
    let e = State::load(&path, &other, &approx, &teacher).unwrap_err();
    assert!(matches!(e, DistillError::State { .. }), "{e}");
    assert!(e.to_string().contains("written by another run"), "{e}");
    let e = State::load(&path, &c, "pcf", &teacher).unwrap_err();
    assert!(e.to_string().contains("another run"), "{e}");
    let e = State::load(&dir.path().join("tiny.safetensors"), &c, &approx, &teacher).unwrap_err();
    assert!(
        e.to_string().contains("not a `comet distill` state file"),
        "{e}"
    );
}

#[test]
fn the_output_has_the_input_layout() {
    let (models, teacher, input, dir) = setup("pcf");
    let state = run(&models, &teacher, &config(2), State::new(&teacher));
    let out = dir.path().join("out.safetensors");
    checkpoint::write(&input, &models.teacher.info.weights, &state.params, &out).unwrap();
    let (a, b) = (std::fs::read(&input).unwrap(), std::fs::read(&out).unwrap());
    let (a, b) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    let mut names_a = a.names();
    let mut names_b = b.names();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b);
    for name in names_a {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{name}");
    }
    assert_eq!(
        a.tensor("unused.extra").unwrap().data(),
        b.tensor("unused.extra").unwrap().data()
    );
    let reloaded = models.load(&out).unwrap();
    for (name, w) in &state.params {
        let r = &reloaded[name];
        let err = (r - w).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
        assert!(
            err < 1e-6 * (1.0 + w.mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v))),
            "{name}: {err}"
        );
        assert_ne!(r, &teacher[name], "{name} was trained");
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (models, teacher, input, dir) = setup("pcf");
    // weights that do not fit the model
    let other = MODEL.replace("d = 16", "d = 12");
    let m2 = Models::new(&other, "other.model", "pcf".parse().unwrap()).unwrap();
    let e = m2.load(&input).unwrap_err().to_string();
    assert!(e.contains("tiny.safetensors") && e.contains("shape"), "{e}");
    // an unwritable output
    let e = checkpoint::probe(
        &dir.path().join("no/such/dir/out.safetensors"),
        "checkpoint",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("cannot write checkpoint") && e.contains("no/such/dir"),
        "{e}"
    );
    let e = checkpoint::probe(dir.path(), "checkpoint")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a directory"), "{e}");
    // a lookup-table profile
    let e = Models::new(MODEL, "tiny.model", "lut".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`lut`") && e.contains("has no gradient"), "{e}");
    // bad options
    for (c, what) in [
        (
            Config {
                seq: 1,
                ..config(1)
            },
            "--seq",
        ),
        (
            Config {
                batch: 0,
                ..config(1)
            },
            "--batch",
        ),
        (
            Config {
                lr: -1.0,
                ..config(1)
            },
            "--lr",
        ),
        (
            Config {
                temperature: 0.0,
                ..config(1)
            },
            "--temperature",
        ),
        (
            Config {
                kd_temperature: f64::NAN,
                ..config(1)
            },
            "--kd-temperature",
        ),
    ] {
        let e = distill(&models, &teacher, &c, State::new(&teacher), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
    }
    // a model that is not a language model
    let two = MODEL.replace(
        "output logits to client;",
        "output logits to client;\n  output h to client;",
    );
    let e = Models::new(&two, "two.model", "pcf".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("exactly one output"), "{e}");
}
