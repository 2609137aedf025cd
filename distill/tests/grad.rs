//! Every VJP against central finite differences: the gradient of `L = Σ R ⊙ y` (R fixed
//! and random, y every output) with respect to sampled elements of every weight, on small
//! models that use each op the `.model` programs and the profiles' forms produce, under
//! every differentiable profile. Seeded; the tolerance (1e-6 absolute + 1e-5 relative)
//! fails on any wrong factor, sign, transposition or missing term.

use comet_distill::grad::{self, GradError};
use comet_ir::{ApproxConfig, DimEnv, NodeId, Op, Program};
use comet_runtime::plain;
use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::collections::HashMap;

/// llama-style: embedding, RMSNorm, GQA attention with RoPE, causal mask and KV cache,
/// SwiGLU FFN, tied LM head.
const LLAMA: &str = r#"
model tiny_llama {
  format ring = 64, frac = 16;
  dim vocab = 11, d = 8, ff = 6, n_layers = 2;
  dim heads = 2, kv_heads = 1, hd = d / heads;
  dim seq, past;
  input tokens: token[seq] from client;
  weight E: [vocab, d] = "E";
  weight norm_f: [d] = "norm_f";
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

/// GPT-2-style: learned positions, LayerNorm, biases, sliced QKV, GeLU MLP.
const GPT2: &str = r#"
model tiny_gpt2 {
  format ring = 64, frac = 16;
  dim vocab = 13, n_ctx = 16, d = 8, heads = 2, hd = d / heads, ff = 12, n_layers = 1;
  dim seq, past;
  input tokens: token[seq] from client;
  weight wte: [vocab, d] = "wte";
  weight wpe: [n_ctx, d] = "wpe";
  weight lnf_g: [d] = "lnf_g";
  weight lnf_b: [d] = "lnf_b";
  block layer[i](x) {
    weight ln1_g: [d] = "h.{i}.ln1_g";
    weight ln1_b: [d] = "h.{i}.ln1_b";
    weight ln2_g: [d] = "h.{i}.ln2_g";
    weight ln2_b: [d] = "h.{i}.ln2_b";
    weight w_qkv: [d, 3 * d] = "h.{i}.w_qkv";
    weight b_qkv: [3 * d] = "h.{i}.b_qkv";
    weight w_o: [d, d] = "h.{i}.w_o";
    weight b_o: [d] = "h.{i}.b_o";
    weight w_fc: [d, ff] = "h.{i}.w_fc";
    weight b_fc: [ff] = "h.{i}.b_fc";
    weight w_proj: [ff, d] = "h.{i}.w_proj";
    weight b_proj: [d] = "h.{i}.b_proj";
    let qkv = linear(layer_norm(x, ln1_g, ln1_b, eps = 1e-5), w_qkv, b_qkv);
    let q = split_heads(slice(qkv, 0, d), heads);
    let k = kv_cache(split_heads(slice(qkv, d, 2 * d), heads));
    let v = kv_cache(split_heads(slice(qkv, 2 * d, 3 * d), heads));
    let p = softmax(causal_mask(matmul(q, transpose(k)) / sqrt(hd)));
    let x1 = x + linear(merge_heads(matmul(p, v)), w_o, b_o);
    let m = linear(gelu(linear(layer_norm(x1, ln2_g, ln2_b, eps = 1e-5), w_fc, b_fc)), w_proj, b_proj);
    return x1 + m;
  }
  let x0 = embed(tokens, wte) + embed(positions(), wpe);
  let h = repeat layer[0..n_layers](x0);
  let logits = matmul(layer_norm(h, lnf_g, lnf_b, eps = 1e-5), transpose(wte));
  output logits to client;
}
"#;

/// One element-wise function or row op after a product, and one `row` output.
fn op_model(body: &str) -> String {
    format!(
        r#"
model op {{
  format ring = 64, frac = 16;
  dim vocab = 7, d = 6;
  dim seq, past;
  input tokens: token[seq] from client;
  weight E: [vocab, d] = "E";
  weight w: [d, d] = "w";
  weight g: [d] = "g";
  weight b: [d] = "b";
  let x = matmul(embed(tokens, E), w);
  let y = {body};
  output y to client;
}}
"#
    )
}

fn program(source: &str, approx: &str) -> Program {
    let mut p = comet_compiler::driver::lower_only(source, "test.model").expect("compiles");
    let config: ApproxConfig = approx.parse().expect("a profile");
    p.options.approx = comet_compiler::passes::approximate::effective(config);
    comet_compiler::passes::approximate::run(&mut p);
    p
}

fn random_weights(p: &Program, rng: &mut ChaCha12Rng, scale: f64) -> HashMap<String, ArrayD<f64>> {
    p.info
        .weights
        .iter()
        .map(|w| {
            let shape: Vec<usize> = w.shape.iter().map(|d| *d as usize).collect();
            let n = shape.iter().product();
            let v = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
            (
                w.name.clone(),
                ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap(),
            )
        })
        .collect()
}

/// `Σ_outputs Σ R ⊙ y` and the outputs' nodes (the sinks), with `R` per output.
fn loss(
    p: &Program,
    weights: &HashMap<String, ArrayD<f64>>,
    tokens: &HashMap<String, ArrayD<f64>>,
    env: DimEnv,
    r: &HashMap<String, ArrayD<f64>>,
) -> f64 {
    let out = plain::eval(p, tokens, weights, env, &mut plain::Cache::new()).unwrap();
    out.iter().map(|(k, y)| (y * &r[k]).sum()).sum()
}

fn check(source: &str, approx: &str, seed: u64, seq: u64) -> usize {
    let p = program(source, approx);
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let weights = random_weights(&p, &mut rng, 0.8);
    let vocab = p.info.weights.iter().map(|w| w.shape[0]).min().unwrap();
    let ids: Vec<f64> = (0..seq)
        .map(|_| rng.random_range(0..vocab) as f64)
        .collect();
    let tokens = HashMap::from([(
        "tokens".to_string(),
        ArrayD::from_shape_vec(IxDyn(&[seq as usize]), ids).unwrap(),
    )]);
    let env = DimEnv { seq, past: 0 };
    let trace =
        plain::eval_with_trace(&p, &tokens, &weights, env, &mut plain::Cache::new()).unwrap();
    let outputs: Vec<(NodeId, String)> = p
        .graph
        .ids()
        .filter_map(|id| match &p.graph.node(id).op {
            Op::Output { name, .. } => Some((id, name.clone())),
            _ => None,
        })
        .collect();
    let r: HashMap<String, ArrayD<f64>> = outputs
        .iter()
        .map(|(_, name)| {
            let y = &trace.outputs[name];
            let v = (0..y.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
            (
                name.clone(),
                ArrayD::from_shape_vec(y.raw_dim(), v).unwrap(),
            )
        })
        .collect();
    let seeds = outputs
        .iter()
        .map(|(id, name)| (*id, r[name].clone()))
        .collect();
    let grads = grad::backward(&p, env, &trace.values, seeds).unwrap();
    let h = 1e-6;
    let mut checked = 0;
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    for name in names {
        let w = &weights[name];
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("{approx}: no gradient for `{name}`"));
        assert_eq!(g.shape(), w.shape(), "{name}");
        for _ in 0..4 {
            let k = rng.random_range(0..w.len());
            let mut plus = weights.clone();
            plus.get_mut(name).unwrap().as_slice_mut().unwrap()[k] += h;
            let mut minus = weights.clone();
            minus.get_mut(name).unwrap().as_slice_mut().unwrap()[k] -= h;
            let numeric = (loss(&p, &plus, &tokens, env, &r) - loss(&p, &minus, &tokens, env, &r))
                / (2.0 * h);
            let analytic = g.as_slice().unwrap()[k];
            assert!(
                (numeric - analytic).abs() <= 1e-6 + 1e-5 * numeric.abs().max(analytic.abs()),
                "{approx}: d/d {name}[{k}]: analytic {analytic}, numeric {numeric}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn llama_gradients_match_finite_differences_under_every_profile() {
    for (i, profile) in ["exact", "pcf", "mpcformer", "puma", "bolt", "bumblebee"]
        .iter()
        .enumerate()
    {
        assert!(check(LLAMA, profile, 10 + i as u64, 5) >= 4 * 20);
    }
}

#[test]
fn gpt2_gradients_match_finite_differences_under_every_profile() {
    for (i, profile) in ["exact", "pcf", "mpcformer", "puma", "bolt", "bumblebee"]
        .iter()
        .enumerate()
    {
        assert!(check(GPT2, profile, 20 + i as u64, 4) >= 4 * 16);
    }
}

#[test]
fn single_op_gradients_match_finite_differences() {
    let bodies = [
        "softmax(x)",
        "layer_norm(x, g, b)",
        "rms_norm(x, g)",
        "gelu(x) * g",
        "silu(x) + b",
        "relu(x) * g",
        "tanh(x) * g",
        "sigmoid(x) * g",
        "exp(x) * g",
        "row(x, 1) * g",
        "slice(x, 1, 4)",
        "transpose(x)",
        "x * x - b",
        "merge_heads(rope(split_heads(x, 3), base = 100, style = half))",
        "merge_heads(rope(split_heads(x, 1), base = 10000, style = adjacent))",
        "merge_heads(matmul(softmax(matmul(split_heads(x, 2), transpose(split_heads(x, 2)))), split_heads(x, 2)))",
        "slice(merge_heads(repeat_kv(split_heads(x, 2), 2)), 0, 6) * g",
    ];
    for (i, body) in bodies.iter().enumerate() {
        for profile in ["exact", "pcf", "bumblebee"] {
            check(&op_model(body), profile, 100 + i as u64, 3);
        }
    }
}

#[test]
fn a_lookup_table_profile_is_refused_before_training() {
    let p = program(LLAMA, "lut");
    let e = grad::check_differentiable(&p).unwrap_err();
    assert!(matches!(e, GradError::Unsupported { op: "lut", .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("has no gradient") && msg.contains("pcf, mpcformer"),
        "{msg}"
    );
}
