//! `comet import`: the generated files compile to the same plans as the hand-written
//! `examples/` (from the real `config.json` of each example's checkpoint), and small
//! Hugging Face folders of every supported family (the real tensor names and config
//! fields, random weights in f32/f16/bf16, one and several shards, a byte-level BPE
//! `tokenizer.json` trained here) go through `comet import` → `comet compile` → `comet run
//! --prompt TEXT` → text.

mod common;

use comet_compiler::import::import_dir;
use comet_compiler::{Options, compile};
use comet_ir::plan::write_plan_json;
use common::{comet, stderr, stdout};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::Dtype;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn plan_json(source: &str) -> String {
    let opts = Options {
        verify: true,
        ..Default::default()
    };
    let program = match compile(source, "model.model", &opts) {
        Ok(c) => c.program,
        Err(comet_compiler::CompileError::Source(d)) => panic!("{}", d.render_plain()),
        Err(e) => panic!("{e}"),
    };
    write_plan_json(&program).expect("plan serializes")
}

/// A folder named `name` holding `config`.
fn folder(parent: &Path, name: &str, config: &Value) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// The `config.json` of each example's Hub checkpoint, as published.
fn hub_configs() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "smollm-135m.model",
            "smollm-135m",
            json!({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
                "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 0,
                "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.02,
                "intermediate_size": 1536, "max_position_embeddings": 2048,
                "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
                "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
                "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": true,
                "torch_dtype": "float32", "transformers_version": "4.40.1",
                "use_cache": true, "vocab_size": 49152}),
        ),
        (
            "llama2-7b.model",
            "llama2-7b",
            json!({"architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
                "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
                "initializer_range": 0.02, "intermediate_size": 11008,
                "max_position_embeddings": 4096, "model_type": "llama",
                "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
                "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
                "tie_word_embeddings": false, "torch_dtype": "float16",
                "transformers_version": "4.31.0.dev0", "use_cache": true, "vocab_size": 32000}),
        ),
        (
            "gpt2.model",
            "gpt2",
            json!({"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
                "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1,
                "eos_token_id": 50256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
                "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
                "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
                "summary_activation": null, "summary_first_dropout": 0.1,
                "summary_proj_to_labels": true, "summary_type": "cls_index",
                "summary_use_proj": true,
                "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
                "vocab_size": 50257}),
        ),
        (
            "opt-1.3b.model",
            "opt-1.3b",
            json!({"_name_or_path": "facebook/opt-1.3b", "activation_dropout": 0.0,
                "activation_function": "relu", "architectures": ["OPTForCausalLM"],
                "attention_dropout": 0.0, "bos_token_id": 2, "do_layer_norm_before": true,
                "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 8192, "hidden_size": 2048,
                "init_std": 0.02, "layerdrop": 0.0, "max_position_embeddings": 2048,
                "model_type": "opt", "num_attention_heads": 32, "num_hidden_layers": 24,
                "pad_token_id": 1, "prefix": "</s>", "torch_dtype": "float16",
                "transformers_version": "4.21.0.dev0", "use_cache": true, "vocab_size": 50272,
                "word_embed_proj_dim": 2048}),
        ),
        (
            "bert-base.model",
            "bert-base-uncased",
            json!({"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
                "gradient_checkpointing": false, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
                "intermediate_size": 3072, "layer_norm_eps": 1e-12,
                "max_position_embeddings": 512, "model_type": "bert",
                "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
                "position_embedding_type": "absolute", "transformers_version": "4.6.0.dev0",
                "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522}),
        ),
    ]
}

/// Every example but glassllm (whose checkpoint is not a Hugging Face one) is imported from
/// its checkpoint's `config.json` and compiles to the same plan file, byte for byte.
#[test]
fn imported_examples_compile_to_the_hand_written_plans() {
    let tmp = tempfile::tempdir().unwrap();
    for (example, dir_name, config) in hub_configs() {
        let dir = folder(tmp.path(), dir_name, &config);
        let imported = import_dir(&dir, None).unwrap_or_else(|e| panic!("{example}: {e}"));
        assert!(!imported.checked, "no weights in the folder");
        let hand = std::fs::read_to_string(Path::new("examples").join(example)).unwrap();
        let (a, b) = (plan_json(&imported.source), plan_json(&hand));
        assert!(
            a == b,
            "{example}: the imported plan differs from the hand-written one; imported source:\n{}",
            imported.source
        );
    }
}

// ---------------------------------------------------------------------------------------
// Small folders of each family, run end to end.

/// A byte-level BPE tokenizer (GPT-2's pre-tokenizer and decoder) trained on `corpus`,
/// with `<|endoftext|>`: its `tokenizer.json` text.
fn train_tokenizer(corpus: &[&str], vocab_size: usize) -> String {
    use tokenizers::models::bpe::{BPE, BpeTrainer};
    use tokenizers::normalizers::NormalizerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder, TokenizerImpl};
    let mut trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
        .build();
    let mut tok: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel> =
        TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .unwrap();
    tok.train(&mut trainer, corpus.iter()).unwrap();
    tok.to_string(false).unwrap()
}

/// Writes `tensors` (random values of `shape`, stored as `dtype`) to `path`.
fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>)],
    dtype: Dtype,
    rng: &mut ChaCha8Rng,
) {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        // Norm scales near 1, everything else small.
        let norm = name.contains("norm") || name.contains("ln_") || name.contains("LayerNorm");
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let r: f32 = rng.random_range(-1.0..1.0);
                if norm && !name.ends_with("bias") {
                    1.0 + 0.1 * r
                } else {
                    0.4 * r
                }
            })
            .collect();
        let bytes: Vec<u8> = match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Dtype::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => unreachable!(),
        };
        data.push((name.clone(), bytes, shape.clone()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Writes the checkpoint: one `model.safetensors`, or `shards` files and an index.
fn write_checkpoint(
    dir: &Path,
    tensors: &[(String, Vec<usize>)],
    dtype: Dtype,
    shards: usize,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if shards == 1 {
        write_safetensors(&dir.join("model.safetensors"), tensors, dtype, &mut rng);
        return;
    }
    let per = tensors.len().div_ceil(shards);
    let mut map = serde_json::Map::new();
    for (k, chunk) in tensors.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", k + 1);
        write_safetensors(&dir.join(&file), chunk, dtype, &mut rng);
        for (name, _) in chunk {
            map.insert(name.clone(), Value::from(file.clone()));
        }
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

const D: usize = 16;
const FF: usize = 24;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const POSITIONS: usize = 64;

/// The tensors of a LLaMA-family checkpoint, as transformers saves them.
fn llama_tensors(vocab: usize, tied: bool, qkv_bias: bool) -> Vec<(String, Vec<usize>)> {
    let hd = D / HEADS;
    let mut t = vec![
        ("model.embed_tokens.weight".to_string(), vec![vocab, D]),
        ("model.norm.weight".to_string(), vec![D]),
    ];
    if !tied {
        t.push(("lm_head.weight".into(), vec![vocab, D]));
    }
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        t.push((format!("{p}.input_layernorm.weight"), vec![D]));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![D]));
        t.push((format!("{p}.self_attn.q_proj.weight"), vec![HEADS * hd, D]));
        t.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![KV_HEADS * hd, D],
        ));
        t.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![KV_HEADS * hd, D],
        ));
        t.push((format!("{p}.self_attn.o_proj.weight"), vec![D, HEADS * hd]));
        if qkv_bias {
            t.push((format!("{p}.self_attn.q_proj.bias"), vec![HEADS * hd]));
            t.push((format!("{p}.self_attn.k_proj.bias"), vec![KV_HEADS * hd]));
            t.push((format!("{p}.self_attn.v_proj.bias"), vec![KV_HEADS * hd]));
        }
        t.push((format!("{p}.mlp.gate_proj.weight"), vec![FF, D]));
        t.push((format!("{p}.mlp.up_proj.weight"), vec![FF, D]));
        t.push((format!("{p}.mlp.down_proj.weight"), vec![D, FF]));
    }
    t
}

fn llama_config(model_type: &str, vocab: usize, tied: bool) -> Value {
    json!({"architectures": ["X"], "model_type": model_type, "hidden_act": "silu",
        "hidden_size": D, "intermediate_size": FF, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": POSITIONS, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "rope_scaling": null, "sliding_window": null, "use_sliding_window": false,
        "tie_word_embeddings": tied, "torch_dtype": "bfloat16", "vocab_size": vocab})
}

/// GPT-2's tensors as the Hub's `model.safetensors` has them (with the causal-mask
/// buffers `h.{i}.attn.bias`, which are not weights).
fn gpt2_tensors(vocab: usize) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        ("wte.weight".to_string(), vec![vocab, D]),
        ("wpe.weight".to_string(), vec![POSITIONS, D]),
        ("ln_f.weight".to_string(), vec![D]),
        ("ln_f.bias".to_string(), vec![D]),
    ];
    for i in 0..LAYERS {
        let h = format!("h.{i}");
        for (n, s) in [
            ("ln_1.weight", vec![D]),
            ("ln_1.bias", vec![D]),
            ("attn.bias", vec![1, 1, POSITIONS, POSITIONS]),
            ("attn.c_attn.weight", vec![D, 3 * D]),
            ("attn.c_attn.bias", vec![3 * D]),
            ("attn.c_proj.weight", vec![D, D]),
            ("attn.c_proj.bias", vec![D]),
            ("ln_2.weight", vec![D]),
            ("ln_2.bias", vec![D]),
            ("mlp.c_fc.weight", vec![D, 4 * D]),
            ("mlp.c_fc.bias", vec![4 * D]),
            ("mlp.c_proj.weight", vec![4 * D, D]),
            ("mlp.c_proj.bias", vec![D]),
        ] {
            t.push((format!("{h}.{n}"), s));
        }
    }
    t
}

/// OPT's tensors as `OPTForCausalLM.save_pretrained` writes them (`model.decoder.`).
fn opt_tensors(vocab: usize) -> Vec<(String, Vec<usize>)> {
    let p = "model.decoder";
    let mut t = vec![
        (format!("{p}.embed_tokens.weight"), vec![vocab, D]),
        (
            format!("{p}.embed_positions.weight"),
            vec![POSITIONS + 2, D],
        ),
        (format!("{p}.final_layer_norm.weight"), vec![D]),
        (format!("{p}.final_layer_norm.bias"), vec![D]),
    ];
    for i in 0..LAYERS {
        let l = format!("{p}.layers.{i}");
        for proj in ["k_proj", "v_proj", "q_proj", "out_proj"] {
            t.push((format!("{l}.self_attn.{proj}.weight"), vec![D, D]));
            t.push((format!("{l}.self_attn.{proj}.bias"), vec![D]));
        }
        for ln in ["self_attn_layer_norm", "final_layer_norm"] {
            t.push((format!("{l}.{ln}.weight"), vec![D]));
            t.push((format!("{l}.{ln}.bias"), vec![D]));
        }
        t.push((format!("{l}.fc1.weight"), vec![FF, D]));
        t.push((format!("{l}.fc1.bias"), vec![FF]));
        t.push((format!("{l}.fc2.weight"), vec![D, FF]));
        t.push((format!("{l}.fc2.bias"), vec![D]));
    }
    t
}

/// BERT's tensors as recent transformers saves them (`LayerNorm.weight`/`.bias`): with the
/// masked-LM head of `BertForMaskedLM` (`cls.predictions.*`, the decoder weight stored
/// beside the word embeddings it is tied to) if `mlm`, else `BertModel`'s pooler.
fn bert_tensors(vocab: usize, mlm: bool) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        (
            "bert.embeddings.word_embeddings.weight".to_string(),
            vec![vocab, D],
        ),
        (
            "bert.embeddings.position_embeddings.weight".to_string(),
            vec![POSITIONS, D],
        ),
        (
            "bert.embeddings.token_type_embeddings.weight".to_string(),
            vec![2, D],
        ),
        ("bert.embeddings.LayerNorm.weight".to_string(), vec![D]),
        ("bert.embeddings.LayerNorm.bias".to_string(), vec![D]),
    ];
    if mlm {
        for (n, s) in [
            ("cls.predictions.bias", vec![vocab]),
            ("cls.predictions.decoder.weight", vec![vocab, D]),
            ("cls.predictions.decoder.bias", vec![vocab]),
            ("cls.predictions.transform.dense.weight", vec![D, D]),
            ("cls.predictions.transform.dense.bias", vec![D]),
            ("cls.predictions.transform.LayerNorm.weight", vec![D]),
            ("cls.predictions.transform.LayerNorm.bias", vec![D]),
        ] {
            t.push((n.to_string(), s));
        }
    } else {
        t.push(("bert.pooler.dense.weight".to_string(), vec![D, D]));
        t.push(("bert.pooler.dense.bias".to_string(), vec![D]));
    }
    for i in 0..LAYERS {
        let l = format!("bert.encoder.layer.{i}");
        for (n, s) in [
            ("attention.self.query.weight", vec![D, D]),
            ("attention.self.query.bias", vec![D]),
            ("attention.self.key.weight", vec![D, D]),
            ("attention.self.key.bias", vec![D]),
            ("attention.self.value.weight", vec![D, D]),
            ("attention.self.value.bias", vec![D]),
            ("attention.output.dense.weight", vec![D, D]),
            ("attention.output.dense.bias", vec![D]),
            ("attention.output.LayerNorm.weight", vec![D]),
            ("attention.output.LayerNorm.bias", vec![D]),
            ("intermediate.dense.weight", vec![FF, D]),
            ("intermediate.dense.bias", vec![FF]),
            ("output.dense.weight", vec![D, FF]),
            ("output.dense.bias", vec![D]),
            ("output.LayerNorm.weight", vec![D]),
            ("output.LayerNorm.bias", vec![D]),
        ] {
            t.push((format!("{l}.{n}"), s));
        }
    }
    t
}

fn bert_config(vocab: usize) -> Value {
    json!({"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": D, "intermediate_size": FF, "layer_norm_eps": 1e-12,
        "max_position_embeddings": POSITIONS, "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS, "position_embedding_type": "absolute",
        "type_vocab_size": 2, "vocab_size": vocab, "pad_token_id": 0})
}

const CORPUS: &[&str] = &[
    "the cat sat on the mat and the dog sat on the log",
    "once upon a time there was a little cat who liked the sun",
    "the quick brown fox jumps over the lazy dog, then the fox sleeps",
    "a bird in the hand is worth two in the bush",
];
const PROMPT: &str = "the cat sat on";
const GENERATE: usize = 3;

struct Family {
    name: &'static str,
    config: Value,
    tensors: Vec<(String, Vec<usize>)>,
    dtype: Dtype,
    shards: usize,
}

fn families(vocab: usize) -> Vec<Family> {
    vec![
        Family {
            name: "tiny-llama",
            config: llama_config("llama", vocab, false),
            tensors: llama_tensors(vocab, false, false),
            dtype: Dtype::BF16,
            shards: 3,
        },
        Family {
            name: "tiny-qwen2",
            config: llama_config("qwen2", vocab, true),
            tensors: llama_tensors(vocab, true, true),
            dtype: Dtype::F16,
            shards: 1,
        },
        Family {
            name: "tiny-mistral",
            config: llama_config("mistral", vocab, false),
            tensors: llama_tensors(vocab, false, false),
            dtype: Dtype::F32,
            shards: 2,
        },
        Family {
            name: "tiny-gpt2",
            config: json!({"activation_function": "gelu_new", "model_type": "gpt2",
                "n_ctx": POSITIONS, "n_embd": D, "n_head": HEADS, "n_layer": LAYERS,
                "n_positions": POSITIONS, "layer_norm_epsilon": 1e-5, "n_inner": null,
                "vocab_size": vocab}),
            tensors: gpt2_tensors(vocab),
            dtype: Dtype::F32,
            shards: 1,
        },
        Family {
            name: "tiny-opt",
            config: json!({"activation_function": "relu", "model_type": "opt",
                "do_layer_norm_before": true, "ffn_dim": FF, "hidden_size": D,
                "max_position_embeddings": POSITIONS, "num_attention_heads": HEADS,
                "num_hidden_layers": LAYERS, "vocab_size": vocab, "word_embed_proj_dim": D,
                "torch_dtype": "float16"}),
            tensors: opt_tensors(vocab),
            dtype: Dtype::F16,
            shards: 2,
        },
    ]
}

/// The f64 reference's logits for the prompt: (argmax, margin to the runner-up).
fn reference_first_token(source: &str, dir: &Path, prompt: &[u64]) -> (u64, f64) {
    let program = comet_compiler::driver::lower_only(source, "m.model").unwrap();
    let weights = comet_runtime::weights::load(dir, &program.info.weights).unwrap();
    let ids = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&[prompt.len()]),
        prompt.iter().map(|&i| i as f64).collect(),
    )
    .unwrap();
    let inputs = HashMap::from([("tokens".to_string(), ids)]);
    let env = comet_ir::DimEnv {
        seq: prompt.len() as u64,
        past: 0,
    };
    let out = comet_runtime::plain::eval(&program, &inputs, &weights, env, &mut Default::default())
        .unwrap();
    let logits = &out["logits"];
    let last: Vec<f64> = logits
        .index_axis(ndarray::Axis(0), prompt.len() - 1)
        .iter()
        .copied()
        .collect();
    let best = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b });
    let second = (0..last.len())
        .filter(|&i| i != best)
        .map(|i| last[i])
        .fold(f64::NEG_INFINITY, f64::max);
    (best as u64, last[best] - second)
}

#[test]
fn hugging_face_folders_import_compile_and_generate_text() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer_json = train_tokenizer(CORPUS, 300);
    let tokenizer: tokenizers::Tokenizer = tokenizer_json.parse().unwrap();
    let vocab = tokenizer.get_vocab_size(true);
    let prompt: Vec<u64> = (tokenizer.encode(PROMPT, true).unwrap().get_ids().iter())
        .map(|&i| u64::from(i))
        .collect();
    assert!(prompt.len() < PROMPT.len(), "merges apply: {prompt:?}");
    let mut compared = 0;
    for (k, f) in families(vocab).into_iter().enumerate() {
        let dir = folder(tmp.path(), f.name, &f.config);
        write_checkpoint(&dir, &f.tensors, f.dtype, f.shards, k as u64);
        std::fs::write(dir.join("tokenizer.json"), &tokenizer_json).unwrap();
        let model = tmp.path().join(format!("{}.model", f.name));
        let plan = tmp.path().join(format!("{}.plan", f.name));
        let (model_s, plan_s, dir_s) = (
            model.to_str().unwrap(),
            plan.to_str().unwrap(),
            dir.to_str().unwrap(),
        );
        let out = comet(&["import", dir_s, "-o", model_s]);
        assert!(out.status.success(), "{}: {}", f.name, stderr(&out));
        assert!(
            stderr(&out).contains("names and shapes checked against the checkpoint"),
            "{}",
            stderr(&out)
        );
        let out = comet(&["compile", model_s, "-o", plan_s]);
        assert!(out.status.success(), "{}: {}", f.name, stderr(&out));
        // The tokenizer is found beside the weights (the folder).
        let generate = GENERATE.to_string();
        let out = comet(&[
            "run",
            plan_s,
            "--weights",
            dir_s,
            "--prompt",
            PROMPT,
            "--generate",
            &generate,
            "--sample-seed",
            "1",
            "--json",
        ]);
        assert!(out.status.success(), "{}: {}", f.name, stderr(&out));
        let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let tokens: Vec<u64> = (report["tokens"].as_array().unwrap().iter())
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(tokens.len(), GENERATE, "{}: {report}", f.name);
        let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
        let text = report["text"].as_str().expect("text out");
        assert_eq!(text, tokenizer.decode(&ids, true).unwrap(), "{}", f.name);
        // Prefill and each decode step: measured bytes and rounds equal the estimate.
        let calls = report["calls"].as_array().unwrap();
        assert_eq!(calls.len(), GENERATE);
        assert_eq!(
            calls[0]["seq"].as_u64(),
            Some(prompt.len() as u64),
            "{}",
            f.name
        );
        for c in calls {
            assert_eq!(c["measured"]["online_bits"], c["estimated"]["online_bits"]);
            assert_eq!(c["measured"]["rounds"], c["estimated"]["rounds"]);
        }
        // The first token is the f64 reference's, where its lead is clear of the
        // fixed-point and approximation error.
        let source = std::fs::read_to_string(&model).unwrap();
        let (best, margin) = reference_first_token(&source, &dir, &prompt);
        if margin > 0.05 {
            assert_eq!(tokens[0], best, "{}: margin {margin}", f.name);
            compared += 1;
        }
        eprintln!(
            "{}: {text:?} (tokens {tokens:?}, reference margin {margin:.3})",
            f.name
        );
        if k == 0 {
            two_processes(&plan, &dir, tmp.path(), prompt.len(), &tokens, &tokenizer);
        }
    }
    assert!(
        compared >= 3,
        "only {compared} families had a clear first token"
    );
}

/// The sharded folder's plan as two processes over loopback TCP with dealt material: the
/// server reads the weights from the folder, the client encodes `--prompt` text with the
/// folder's tokenizer and prints text; the server sees no tokens. The first token is that
/// of the run in one process (`in_process`; its f64 reference's lead is 0.6, far above the
/// fixed-point error, while later tokens of random weights may be near ties that the
/// sessions' independent randomness breaks differently), and each call costs the estimate.
fn two_processes(
    plan: &Path,
    dir: &Path,
    tmp: &Path,
    prompt_len: usize,
    in_process: &[u64],
    tokenizer: &tokenizers::Tokenizer,
) {
    use common::process::{assert_calls_match_estimate, free_port, json as json_of, spawn, wait};
    use std::time::Duration;
    let mat = tmp.join("material");
    let (plan_s, dir_s, mat_s) = (
        plan.to_str().unwrap(),
        dir.to_str().unwrap(),
        mat.to_str().unwrap(),
    );
    let generate = GENERATE.to_string();
    let out = comet(&[
        "deal",
        plan_s,
        "--out",
        mat_s,
        "--prompt-len",
        &prompt_len.to_string(),
        "--generate",
        &generate,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let addr = free_port();
    let (m0, m1) = (mat.join("party0.mat"), mat.join("party1.mat"));
    let s = spawn(&[
        "run",
        plan_s,
        "--party",
        "0",
        "--listen",
        &addr,
        "--weights",
        dir_s,
        "--material",
        m0.to_str().unwrap(),
        "--json",
    ]);
    let tok = dir.join("tokenizer.json");
    let c = spawn(&[
        "run",
        plan_s,
        "--party",
        "1",
        "--connect",
        &addr,
        "--material",
        m1.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--json",
    ]);
    let (c, s) = (
        wait(c, Duration::from_secs(300)),
        wait(s, Duration::from_secs(60)),
    );
    assert!(c.status.success(), "client: {}", stderr(&c));
    assert!(s.status.success(), "server: {}", stderr(&s));
    let (cj, sj) = (json_of(&c), json_of(&s));
    let tokens: Vec<u64> = (cj["tokens"].as_array().unwrap().iter())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(tokens.len(), GENERATE);
    assert_eq!(
        tokens[0], in_process[0],
        "two processes and one: the same first token"
    );
    let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
    assert_eq!(
        cj["text"].as_str(),
        Some(tokenizer.decode(&ids, true).unwrap().as_str())
    );
    assert_eq!(sj["tokens"], json!([]), "the server sees no tokens");
    assert_calls_match_estimate(&cj, &sj, GENERATE);
    eprintln!("two processes: {} (tokens {tokens:?})", cj["text"]);
}

/// BERT saved as `BertModel` (an encoder with a pooled output, no masked-LM head): imported
/// from a folder with the recent transformers names, compiled, and its weights load from
/// the folder.
#[test]
fn a_bert_folder_imports_and_its_weights_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = folder(tmp.path(), "tiny-bert", &bert_config(100));
    write_checkpoint(&dir, &bert_tensors(100, false), Dtype::F32, 2, 9);
    let imported = import_dir(&dir, None).unwrap();
    assert!(imported.checked);
    assert!(imported.source.contains("LayerNorm.weight"));
    assert!(
        imported.source.contains("output pooled"),
        "no cls.* tensors: the pooler"
    );
    assert!(imported.source.starts_with("// Imported"));
    plan_json(&imported.source);
    let program = comet_compiler::driver::lower_only(&imported.source, "m.model").unwrap();
    let weights = comet_runtime::weights::load(&dir, &program.info.weights).unwrap();
    assert_eq!(weights.len(), 7 + LAYERS * 16);
    // It maps tokens to `pooled`, not to logits: `comet run` runs the one call and prints
    // the output, beside the clear model with --check-plain
    let (model, plan) = (tmp.path().join("p.model"), tmp.path().join("p.plan"));
    std::fs::write(&model, &imported.source).unwrap();
    let (model_s, plan_s) = (model.to_str().unwrap(), plan.to_str().unwrap());
    assert!(comet(&["compile", model_s, "-o", plan_s]).status.success());
    let dir_s = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", plan_s, "--weights", dir_s, "--seed", "3"];
        args.extend_from_slice(extra);
        comet(&args)
    };
    let out = run(&["--prompt-ids", "2,5,3", "--check-plain", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let pooled = &v["outputs"]["pooled"];
    assert_eq!(pooled["shape"], serde_json::json!([1, D]));
    assert_eq!(pooled["values"].as_array().unwrap().len(), D);
    let cosine = pooled["clear_cosine"].as_f64().unwrap();
    let diff = pooled["clear_max_abs_diff"].as_f64().unwrap();
    assert!(cosine > 0.999 && diff < 0.02, "{cosine} {diff}");
    assert_eq!(v["measured"], v["estimated"], "measured = estimate");
    let text = run(&["--prompt-ids", "2,5,3", "--check-plain"]);
    assert!(
        stdout(&text).contains(&format!("output `pooled` [1, {D}]: ["))
            && stdout(&text).contains("against the clear model (f64): largest difference"),
        "{}",
        stdout(&text)
    );
    // what is not supported says so
    let bad = run(&["--prompt-ids", "2,5,3", "--generate", "2"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--generate must be 1"),
        "{}",
        stderr(&bad)
    );
    let vocab = run(&["--prompt-ids", "2,5,300"]);
    assert_eq!(vocab.status.code(), Some(1));
    // the client's error, not the server's "peer disconnected" that follows it
    assert!(
        stderr(&vocab).contains("id 300 is outside the table of 100 rows"),
        "{}",
        stderr(&vocab)
    );
}

/// A BERT-style WordPiece tokenizer (`BertNormalizer`, `BertPreTokenizer`, `[CLS] … [SEP]`
/// added by the post-processor, `##` continuations) trained on `corpus`: its
/// `tokenizer.json` text. Ids: `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3, `[MASK]` 4.
fn train_wordpiece(corpus: &[&str], vocab_size: usize) -> String {
    use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
    use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::bert::BertProcessing;
    use tokenizers::{AddedToken, TokenizerBuilder, TokenizerImpl};
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let mut trainer = WordPieceTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(
            specials
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .build();
    let model = WordPiece::builder()
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok: TokenizerImpl<
        WordPiece,
        BertNormalizer,
        BertPreTokenizer,
        BertProcessing,
        WordPieceDecoder,
    > = TokenizerBuilder::new()
        .with_model(model)
        .with_normalizer(Some(BertNormalizer::default()))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), 3),
            ("[CLS]".into(), 2),
        )))
        .with_decoder(Some(WordPieceDecoder::default()))
        .build()
        .unwrap();
    tok.train(&mut trainer, corpus.iter()).unwrap();
    for (id, t) in specials.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some(id as u32), "{t}");
    }
    tok.to_string(false).unwrap()
}

/// The f64 reference's logits `[seq, vocab]` of an encoder for `prompt` (token types 0).
fn reference_logits(source: &str, dir: &Path, prompt: &[u64]) -> ndarray::ArrayD<f64> {
    let program = comet_compiler::driver::lower_only(source, "m.model").unwrap();
    let weights = comet_runtime::weights::load(dir, &program.info.weights).unwrap();
    let ids = |v: Vec<f64>| ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[prompt.len()]), v);
    let inputs = HashMap::from([
        (
            "tokens".to_string(),
            ids(prompt.iter().map(|&i| i as f64).collect()).unwrap(),
        ),
        (
            "segments".to_string(),
            ids(vec![0.0; prompt.len()]).unwrap(),
        ),
    ]);
    let env = comet_ir::DimEnv {
        seq: prompt.len() as u64,
        past: 0,
    };
    let mut out =
        comet_runtime::plain::eval(&program, &inputs, &weights, env, &mut Default::default())
            .unwrap();
    out.remove("logits").unwrap()
}

/// (argmax, margin to the runner-up) of one row.
fn best_and_margin(row: &[f64]) -> (u64, f64) {
    let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
    let second = (0..row.len())
        .filter(|&i| i != best)
        .map(|i| row[i])
        .fold(f64::NEG_INFINITY, f64::max);
    (best as u64, row[best] - second)
}

/// BERT saved as `BertForMaskedLM` (the masked-LM head, its decoder tied to the word
/// embeddings; 2 shards, f32; a WordPiece `tokenizer.json`): `comet import` → `comet
/// compile` → `comet run --prompt "… [MASK] …"`, in one process and as two processes over
/// TCP: one call over the prompt, a token predicted at each position, the `[MASK]` filled
/// in the text; the predictions are the f64 reference's where its lead is clear; measured
/// = estimated; `--generate` is refused with a clear message.
#[test]
fn a_bert_masked_lm_folder_imports_compiles_and_fills_the_mask() {
    use common::process::{assert_calls_match_estimate, free_port, json as json_of, spawn, wait};
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer_json = train_wordpiece(CORPUS, 120);
    let tokenizer: tokenizers::Tokenizer = tokenizer_json.parse().unwrap();
    let vocab = tokenizer.get_vocab_size(true);
    let dir = folder(tmp.path(), "tiny-bert-mlm", &bert_config(vocab));
    write_checkpoint(&dir, &bert_tensors(vocab, true), Dtype::F32, 2, 21);
    std::fs::write(dir.join("tokenizer.json"), &tokenizer_json).unwrap();
    let text = "the cat [MASK] on the mat";
    let prompt: Vec<u64> = (tokenizer.encode(text, true).unwrap().get_ids().iter())
        .map(|&i| u64::from(i))
        .collect();
    let mask_at = prompt
        .iter()
        .position(|&t| t == 4)
        .expect("[MASK] is one token");
    assert_eq!(
        (prompt[0], *prompt.last().unwrap()),
        (2, 3),
        "[CLS] … [SEP]"
    );

    let (model, plan) = (tmp.path().join("bert.model"), tmp.path().join("bert.plan"));
    let (model_s, plan_s, dir_s) = (
        model.to_str().unwrap(),
        plan.to_str().unwrap(),
        dir.to_str().unwrap(),
    );
    let out = comet(&["import", dir_s, "-o", model_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("names and shapes checked against the checkpoint"));
    let source = std::fs::read_to_string(&model).unwrap();
    assert!(source.contains("\"cls.predictions.transform.dense.weight\" transposed"));
    assert!(
        source.contains("matmul(t, transpose(word_emb)) + mlm_bias"),
        "{source}"
    );
    assert!(!source.contains("pooler"), "{source}");
    let out = comet(&["compile", model_s, "-o", plan_s]);
    assert!(out.status.success(), "{}", stderr(&out));

    // In one process.
    let out = comet(&[
        "run",
        plan_s,
        "--weights",
        dir_s,
        "--prompt",
        text,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let tokens: Vec<u64> = (report["tokens"].as_array().unwrap().iter())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(tokens.len(), prompt.len(), "a token per position: {report}");
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "one call");
    assert_eq!(
        (calls[0]["seq"].as_u64(), calls[0]["past"].as_u64()),
        (Some(prompt.len() as u64), Some(0))
    );
    let (m, e) = (&calls[0]["measured"], &calls[0]["estimated"]);
    assert_eq!(m["online_bits"], e["online_bits"]);
    assert_eq!(m["rounds"], e["rounds"]);
    assert_eq!(m["offline_bits"], e["offline_bits"]);
    // The mask's prediction, and the text: the prompt with the mask filled.
    let masks = report["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 1, "{report}");
    assert_eq!(masks[0]["position"].as_u64(), Some(mask_at as u64));
    let predicted = masks[0]["token"].as_u64().unwrap();
    assert_eq!(predicted, tokens[mask_at]);
    let word = tokenizer.decode(&[predicted as u32], true).unwrap();
    assert_eq!(masks[0]["text"].as_str(), Some(word.as_str()));
    let mut filled: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    filled[mask_at] = predicted as u32;
    assert_eq!(
        report["text"].as_str(),
        Some(tokenizer.decode(&filled, true).unwrap().as_str())
    );
    // Each position's prediction is the f64 reference's where its lead is clear.
    let reference = reference_logits(&source, &dir, &prompt);
    let mut compared = 0;
    for (i, row) in reference.outer_iter().enumerate() {
        let (best, margin) = best_and_margin(&row.iter().copied().collect::<Vec<_>>());
        if margin > 0.05 {
            assert_eq!(tokens[i], best, "position {i}: margin {margin}");
            compared += 1;
        }
    }
    assert!(
        compared >= prompt.len() / 2,
        "only {compared} clear positions"
    );
    // The summary names the mask's prediction.
    let out = comet(&["run", plan_s, "--weights", dir_s, "--prompt", text]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("predicted, one token per position"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("mask at position {mask_at}: ")),
        "{summary}"
    );
    assert!(summary.contains("measured = estimated for every call (online, rounds, dealer): yes"));

    // An encoder does not generate: --generate is refused, by run and by deal.
    let out = comet(&[
        "run",
        plan_s,
        "--weights",
        dir_s,
        "--prompt",
        text,
        "--generate",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--generate 3: `tiny_bert_mlm` has no KV cache (an encoder"),
        "{}",
        stderr(&out)
    );
    let mat = tmp.path().join("material").to_str().unwrap().to_string();
    let len = prompt.len().to_string();
    let out = comet(&[
        "deal",
        plan_s,
        "--out",
        &mat,
        "--prompt-len",
        &len,
        "--generate",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no KV cache"), "{}", stderr(&out));

    // Two processes over TCP with dealt material: one call each.
    let out = comet(&["deal", plan_s, "--out", &mat, "--prompt-len", &len]);
    assert!(out.status.success(), "{}", stderr(&out));
    let addr = free_port();
    let (m0, m1) = (format!("{mat}/party0.mat"), format!("{mat}/party1.mat"));
    let s = spawn(&[
        "run",
        plan_s,
        "--party",
        "0",
        "--listen",
        &addr,
        "--weights",
        dir_s,
        "--material",
        &m0,
        "--json",
    ]);
    let tok = dir.join("tokenizer.json");
    let c = spawn(&[
        "run",
        plan_s,
        "--party",
        "1",
        "--connect",
        &addr,
        "--material",
        &m1,
        "--tokenizer",
        tok.to_str().unwrap(),
        "--prompt",
        text,
        "--json",
    ]);
    let (c, s) = (
        wait(c, Duration::from_secs(300)),
        wait(s, Duration::from_secs(60)),
    );
    assert!(c.status.success(), "client: {}", stderr(&c));
    assert!(s.status.success(), "server: {}", stderr(&s));
    let (cj, sj) = (json_of(&c), json_of(&s));
    assert_eq!(sj["tokens"], json!([]), "the server sees no tokens");
    assert_calls_match_estimate(&cj, &sj, 1);
    let remote: Vec<u64> = (cj["tokens"].as_array().unwrap().iter())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(remote.len(), prompt.len());
    for (i, row) in reference.outer_iter().enumerate() {
        let (best, margin) = best_and_margin(&row.iter().copied().collect::<Vec<_>>());
        if margin > 0.05 {
            assert_eq!(
                remote[i], best,
                "two processes, position {i}: margin {margin}"
            );
        }
    }
    assert_eq!(cj["masks"][0]["token"].as_u64(), Some(remote[mask_at]));
    eprintln!(
        "BERT fill-mask: {} (one process), {} (two processes)",
        report["text"], cj["text"]
    );
}

/// CLI failures: each a message naming the place, exit status 1.
#[test]
fn import_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let fail = |args: &[&str]| {
        let out = comet(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };
    let missing = tmp.path().join("nothing");
    let m = fail(&["import", missing.to_str().unwrap()]);
    assert!(m.contains("is not a folder"), "{m}");

    let dir = folder(tmp.path(), "gemma", &json!({"model_type": "gemma"}));
    let m = fail(&["import", dir.to_str().unwrap()]);
    assert!(
        m.contains("config.json`: field `model_type` is \"gemma\""),
        "{m}"
    );

    let mut config = llama_config("llama", 50, true);
    config["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
    let dir = folder(tmp.path(), "scaled", &config);
    let m = fail(&["import", dir.to_str().unwrap()]);
    assert!(m.contains("field `rope_scaling` is {"), "{m}");

    // A shard the index names is missing.
    let dir = folder(tmp.path(), "sharded", &llama_config("llama", 50, true));
    write_checkpoint(&dir, &llama_tensors(50, true, false), Dtype::F32, 2, 3);
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let m = fail(&["import", dir.to_str().unwrap()]);
    assert!(
        m.contains("shard `") && m.contains("model-00002-of-00002.safetensors` is missing"),
        "{m}"
    );

    // The config says untied, the checkpoint has no head.
    let dir = folder(tmp.path(), "untied", &llama_config("llama", 50, false));
    write_checkpoint(&dir, &llama_tensors(50, true, false), Dtype::F32, 1, 3);
    let m = fail(&["import", dir.to_str().unwrap()]);
    assert!(
        m.contains("the checkpoint has no tensor `lm_head.weight`"),
        "{m}"
    );

    // A tokenizer larger than the model's vocabulary: the prompt is refused before any
    // party starts.
    let dir = folder(tmp.path(), "small-vocab", &llama_config("llama", 50, true));
    write_checkpoint(&dir, &llama_tensors(50, true, false), Dtype::F32, 1, 4);
    std::fs::write(dir.join("tokenizer.json"), train_tokenizer(CORPUS, 300)).unwrap();
    let (model, plan) = (
        tmp.path().join("small.model"),
        tmp.path().join("small.plan"),
    );
    let (model_s, plan_s) = (model.to_str().unwrap(), plan.to_str().unwrap());
    assert!(
        comet(&["import", dir.to_str().unwrap(), "-o", model_s])
            .status
            .success()
    );
    assert!(comet(&["compile", model_s, "-o", plan_s]).status.success());
    let m = fail(&[
        "run",
        plan_s,
        "--weights",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert!(
        m.contains("not below the vocabulary of `small_vocab` (50 tokens) (the tokenizer, of"),
        "{m}"
    );
    assert!(m.contains("does not match the model"), "{m}");

    // The output file is never overwritten.
    let dir = folder(tmp.path(), "ok", &llama_config("llama", 50, true));
    let out = tmp.path().join("ok.model");
    std::fs::write(&out, "keep").unwrap();
    let m = fail(&["import", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(m.contains("exists"), "{m}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep");
}
