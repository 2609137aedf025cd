//! Errors of the importer, each naming its field; the plans of the generated files are
//! compared with `examples/` in `tests/import.rs`.

use super::*;

fn config(json: &str) -> Map<String, Value> {
    match serde_json::from_str(json).unwrap() {
        Value::Object(m) => m,
        _ => panic!("an object"),
    }
}

fn import(json: &str) -> Result<Imported, ImportError> {
    import_config(&config(json), "`config.json`", &Tensors::unknown(), "m")
}

const LLAMA: &str = r#""model_type": "llama", "vocab_size": 64, "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0"#;

fn llama_with(extra: &str) -> Result<Imported, ImportError> {
    import(&format!("{{{LLAMA}{extra}}}"))
}

fn error(r: Result<Imported, ImportError>) -> String {
    match r {
        Ok(i) => panic!("expected an error, got\n{}", i.source),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_plain_llama_imports() {
    let i = llama_with("").unwrap();
    assert_eq!(i.model_type, "llama");
    assert!(!i.checked);
    // 2 top-level weights and the untied head, 9 per layer.
    assert_eq!(i.weights, 3 + 2 * 9);
    assert!(
        i.source.contains("rope = half, rope_base = 10000"),
        "{}",
        i.source
    );
}

#[test]
fn unknown_model_type_names_the_field_and_the_families() {
    let e = error(import(r#"{"model_type": "gemma"}"#));
    assert_eq!(
        e,
        "`config.json`: field `model_type` is \"gemma\": `comet import` supports llama, \
         mistral, qwen2, gpt2, opt, bert"
    );
    let e = error(import(r#"{"hidden_size": 4}"#));
    assert!(e.contains("field `model_type` is missing"), "{e}");
    let e = error(import(r#"{"model_type": 3}"#));
    assert!(e.contains("field `model_type` is 3"), "{e}");
}

#[test]
fn missing_and_malformed_fields_are_named() {
    let e = error(import(r#"{"model_type": "llama", "vocab_size": 64}"#));
    assert!(
        e.contains("field `hidden_size` is missing: expected a positive integer"),
        "{e}"
    );
    let e = error(import(r#"{"model_type": "gpt2", "vocab_size": "many"}"#));
    assert!(e.contains("field `vocab_size` is \"many\""), "{e}");
    let e = error(llama_with(r#", "tie_word_embeddings": "yes""#));
    assert!(
        e.contains("field `tie_word_embeddings` is \"yes\": expected true or false"),
        "{e}"
    );
}

#[test]
fn unsupported_options_are_named() {
    for (extra, field) in [
        (
            r#", "rope_scaling": {"type": "linear", "factor": 2.0}"#,
            "rope_scaling",
        ),
        (r#", "head_dim": 8"#, "head_dim"),
        (r#", "hidden_act": "gelu""#, "hidden_act"),
        (r#", "hidden_act": "tanh""#, "hidden_act"),
        (r#", "mlp_bias": true"#, "mlp_bias"),
        (r#", "num_key_value_heads": 3"#, "num_key_value_heads"),
    ] {
        let e = error(llama_with(extra));
        assert!(e.contains(&format!("field `{field}` is ")), "{extra}: {e}");
    }
    let e = error(import(&format!(
        "{{{}, \"sliding_window\": 4096}}",
        LLAMA.replace("\"llama\"", "\"mistral\"")
    )));
    assert!(
        e.contains("field `sliding_window` is 4096: sliding-window"),
        "{e}"
    );
    let e = error(import(
        r#"{"model_type": "opt", "vocab_size": 64, "hidden_size": 16, "num_attention_heads": 2,
            "ffn_dim": 32, "max_position_embeddings": 32, "num_hidden_layers": 1,
            "do_layer_norm_before": false}"#,
    ));
    assert!(e.contains("field `do_layer_norm_before` is false"), "{e}");
    let e = error(import(
        r#"{"model_type": "bert", "vocab_size": 64, "hidden_size": 16, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 32, "num_hidden_layers": 1,
            "type_vocab_size": 2, "position_embedding_type": "relative_key"}"#,
    ));
    assert!(
        e.contains("field `position_embedding_type` is \"relative_key\""),
        "{e}"
    );
    let e = error(import(
        r#"{"model_type": "gpt2", "vocab_size": 64, "n_embd": 16, "n_head": 3,
            "n_layer": 1, "n_positions": 32}"#,
    ));
    assert!(
        e.contains("field `n_head` is 3: it does not divide the hidden size 16"),
        "{e}"
    );
}

#[test]
fn qwen2_has_qkv_biases_and_llama_attention_bias_adds_all_four() {
    let q = import(&format!("{{{}}}", LLAMA.replace("\"llama\"", "\"qwen2\""))).unwrap();
    assert!(
        q.source.contains("bq = bq, bk = bk, bv = bv, "),
        "{}",
        q.source
    );
    assert!(!q.source.contains("bo = bo"));
    assert_eq!(q.weights, 3 + 2 * 12);
    let l = llama_with(r#", "attention_bias": true, "tie_word_embeddings": true"#).unwrap();
    assert!(
        l.source.contains("bq = bq, bk = bk, bv = bv, bo = bo, "),
        "{}",
        l.source
    );
    assert_eq!(l.weights, 2 + 2 * 13);
}

#[test]
fn names_and_shapes_are_checked_against_the_checkpoint() {
    let json = config(&format!("{{{LLAMA}, \"tie_word_embeddings\": true}}"));
    let mut shapes: Vec<(String, Vec<u64>)> = vec![
        ("model.embed_tokens.weight".into(), vec![64, 16]),
        ("model.norm.weight".into(), vec![16]),
    ];
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        for (t, s) in [
            ("input_layernorm.weight", vec![16]),
            ("post_attention_layernorm.weight", vec![16]),
            ("self_attn.q_proj.weight", vec![16, 16]),
            ("self_attn.k_proj.weight", vec![8, 16]),
            ("self_attn.v_proj.weight", vec![8, 16]),
            ("self_attn.o_proj.weight", vec![16, 16]),
            ("mlp.gate_proj.weight", vec![32, 16]),
            ("mlp.up_proj.weight", vec![32, 16]),
            ("mlp.down_proj.weight", vec![16, 32]),
        ] {
            shapes.push((format!("{p}.{t}"), s));
        }
    }
    let tensors = |v: &[(String, Vec<u64>)]| {
        Tensors::from_shapes(v.iter().map(|(n, s)| (n.as_str(), s.clone())))
    };
    let ok = import_config(&json, "`config.json`", &tensors(&shapes), "m").unwrap();
    assert!(ok.checked);

    let mut wrong = shapes.clone();
    wrong[5].1 = vec![16, 8];
    let e = error(import_config(&json, "`config.json`", &tensors(&wrong), "m"));
    assert!(
        e.contains("tensor `model.layers.0.self_attn.k_proj.weight` in `model.safetensors` has shape [16, 8], but the config implies [8, 16]"),
        "{e}"
    );
    let missing: Vec<_> = shapes
        .iter()
        .filter(|(n, _)| n != "model.norm.weight")
        .cloned()
        .collect();
    let e = error(import_config(
        &json,
        "`config.json`",
        &tensors(&missing),
        "m",
    ));
    assert!(
        e.contains("the checkpoint has no tensor `model.norm.weight`"),
        "{e}"
    );
    // Untied, the head must be in the checkpoint.
    let untied = config(&format!("{{{LLAMA}}}"));
    let e = error(import_config(
        &untied,
        "`config.json`",
        &tensors(&shapes),
        "m",
    ));
    assert!(e.contains("no tensor `lm_head.weight`"), "{e}");
}

#[test]
fn identifiers() {
    assert_eq!(identifier("opt-1.3b"), "opt_1_3b");
    assert_eq!(identifier("SmolLM-135M"), "smollm_135m");
    assert_eq!(identifier("7b"), "m_7b");
    assert_eq!(identifier(""), "m_");
    // a Hugging Face snapshot's folder is often named `model`: a keyword
    assert_eq!(identifier("model"), "model_");
    assert_eq!(identifier("Block"), "block_");
}

#[test]
fn numbers_render_as_source() {
    assert_eq!(number(1e-5), "1e-5");
    assert_eq!(number(1e-12), "1e-12");
    assert_eq!(number(10000.0), "10000");
    assert_eq!(number(500000.0), "500000");
    assert_eq!(number(0.02), "0.02");
}

/// BERT's head follows the checkpoint: the masked-LM head (tied or untied decoder) when it
/// holds `cls.predictions.bias`, the pooler otherwise; a head tensor the checkpoint lacks
/// is an error naming it.
#[test]
fn bert_takes_the_masked_lm_head_when_the_checkpoint_has_it() {
    const BERT: &str = r#""model_type": "bert", "vocab_size": 64, "hidden_size": 16,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
        "num_hidden_layers": 1, "type_vocab_size": 2"#;
    let mut shapes: Vec<(String, Vec<u64>)> = vec![
        (
            "bert.embeddings.word_embeddings.weight".into(),
            vec![64, 16],
        ),
        (
            "bert.embeddings.position_embeddings.weight".into(),
            vec![32, 16],
        ),
        (
            "bert.embeddings.token_type_embeddings.weight".into(),
            vec![2, 16],
        ),
        ("bert.embeddings.LayerNorm.gamma".into(), vec![16]),
        ("bert.embeddings.LayerNorm.beta".into(), vec![16]),
        ("cls.predictions.bias".into(), vec![64]),
        (
            "cls.predictions.transform.dense.weight".into(),
            vec![16, 16],
        ),
        ("cls.predictions.transform.dense.bias".into(), vec![16]),
        ("cls.predictions.transform.LayerNorm.gamma".into(), vec![16]),
        ("cls.predictions.transform.LayerNorm.beta".into(), vec![16]),
    ];
    let l = "bert.encoder.layer.0";
    for (n, s) in [
        ("attention.self.query.weight", vec![16, 16]),
        ("attention.self.query.bias", vec![16]),
        ("attention.self.key.weight", vec![16, 16]),
        ("attention.self.key.bias", vec![16]),
        ("attention.self.value.weight", vec![16, 16]),
        ("attention.self.value.bias", vec![16]),
        ("attention.output.dense.weight", vec![16, 16]),
        ("attention.output.dense.bias", vec![16]),
        ("attention.output.LayerNorm.gamma", vec![16]),
        ("attention.output.LayerNorm.beta", vec![16]),
        ("intermediate.dense.weight", vec![32, 16]),
        ("intermediate.dense.bias", vec![32]),
        ("output.dense.weight", vec![16, 32]),
        ("output.dense.bias", vec![16]),
        ("output.LayerNorm.gamma", vec![16]),
        ("output.LayerNorm.beta", vec![16]),
    ] {
        shapes.push((format!("{l}.{n}"), s));
    }
    let with = |shapes: &[(String, Vec<u64>)], extra: &str| {
        let t = Tensors::from_shapes(shapes.iter().map(|(n, s)| (n.as_str(), s.clone())));
        import_config(
            &config(&format!("{{{BERT}{extra}}}")),
            "`config.json`",
            &t,
            "m",
        )
    };
    let tied = with(&shapes, "").unwrap();
    assert!(tied.checked);
    assert!(
        tied.source.contains("output logits to client"),
        "{}",
        tied.source
    );
    assert!(
        tied.source
            .contains("matmul(t, transpose(word_emb)) + mlm_bias")
    );
    assert!(
        tied.source
            .contains("\"cls.predictions.transform.LayerNorm.gamma\"")
    );
    assert!(!tied.source.contains("pooler"));
    // 5 embedding weights, 5 of the head, 16 per layer
    assert_eq!(tied.weights, 5 + 5 + 16);
    // untied: the decoder's own weight, which must then be in the checkpoint
    let e = error(with(&shapes, r#", "tie_word_embeddings": false"#));
    assert!(
        e.contains("the checkpoint has no tensor `cls.predictions.decoder.weight`"),
        "{e}"
    );
    shapes.push(("cls.predictions.decoder.weight".into(), vec![64, 16]));
    let untied = with(&shapes, r#", "tie_word_embeddings": false"#).unwrap();
    assert!(untied.source.contains("matmul(t, mlm_dec) + mlm_bias"));
    assert_eq!(untied.weights, 5 + 6 + 16);
    // a head without its transform: the missing tensor is named
    shapes.retain(|(n, _)| !n.starts_with("cls.predictions.transform.dense"));
    let e = error(with(&shapes, ""));
    assert!(
        e.contains("no tensor `cls.predictions.transform.dense.weight`"),
        "{e}"
    );
    // no head in the checkpoint: the pooler, whose tensors are then required
    shapes.retain(|(n, _)| !n.starts_with("cls."));
    let e = error(with(&shapes, ""));
    assert!(e.contains("no tensor `bert.pooler.dense.weight`"), "{e}");
}
